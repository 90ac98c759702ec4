"""Adapter to one gobgpd over its gRPC API (GoBGP 3.x).

Translates porter-lb's plain values into the generated stubs and back; it decides nothing.
The stubs in `porter_lb.gobgp_api` are generated at build time from the gobgpd release's own
.proto files (see runtime/build_support/gobgp_stubs.py).

GoBGP 3 renamed fields that Porter/OpenELB CRDs still spell the v2 way (`as` -> `asn`,
`peer_as` -> `peer_asn`): callers pass explicit values, never CR JSON.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import grpc

from porter_lb.gobgp_api import attribute_pb2, gobgp_pb2, gobgp_pb2_grpc

_SESSION_STATES = {
    value.number: value.name.lower()
    for value in gobgp_pb2.PeerState.DESCRIPTOR.enum_types_by_name["SessionState"].values
}


@dataclass(frozen=True)
class PeerStatus:
    neighbor_address: str
    peer_asn: int
    session_state: str  # "established", "active", "idle", ...
    received_prefixes: int = 0


@dataclass(frozen=True)
class Route:
    prefix: str  # "203.0.113.10/32"
    next_hop: str  # "0.0.0.0" means next-hop self
    identifier: int = 0  # ADD-PATH path identifier; distinct values keep distinct paths


class GoBGPError(RuntimeError):
    """A gobgpd call failed; the message names the call and the gRPC status."""


def _family(prefix: str) -> gobgp_pb2.Family:
    version = ipaddress.ip_network(prefix, strict=False).version
    afi = gobgp_pb2.Family.AFI_IP if version == 4 else gobgp_pb2.Family.AFI_IP6
    return gobgp_pb2.Family(afi=afi, safi=gobgp_pb2.Family.SAFI_UNICAST)


def _pack(message: Any) -> Any:
    from google.protobuf import any_pb2

    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _path(route: Route) -> gobgp_pb2.Path:
    network = ipaddress.ip_network(route.prefix, strict=True)
    nlri = attribute_pb2.IPAddressPrefix(
        prefix=str(network.network_address), prefix_len=network.prefixlen
    )
    origin = attribute_pb2.OriginAttribute(origin=0)  # IGP
    next_hop = attribute_pb2.NextHopAttribute(next_hop=route.next_hop)
    return gobgp_pb2.Path(
        family=_family(route.prefix),
        nlri=_pack(nlri),
        pattrs=[_pack(origin), _pack(next_hop)],
        identifier=route.identifier,
    )


class GoBGP:
    """One gobgpd, reached at a gRPC target such as `unix:///run/porter-lb/gobgp.sock`."""

    def __init__(self, target: str, timeout: float = 5.0) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target)
        self._stub = gobgp_pb2_grpc.GobgpApiStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GoBGP:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, name: str, request: Any, stream: bool = False) -> Any:
        try:
            result = getattr(self._stub, name)(request, timeout=self.timeout)
            return list(result) if stream else result
        except grpc.RpcError as error:
            code = error.code().name if hasattr(error, "code") else "UNKNOWN"
            details = error.details() if hasattr(error, "details") else str(error)
            raise GoBGPError(f"gobgpd {self.target}: {name} failed: {code}: {details}") from error

    def wait_ready(self, timeout: float) -> None:
        """Block until the gRPC server answers, or raise GoBGPError after `timeout` seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError as error:
            raise GoBGPError(f"gobgpd {self.target}: not reachable within {timeout}s") from error

    def start(self, asn: int, router_id: str, listen_port: int = 179) -> None:
        """Start the BGP instance (StartBgp); `listen_port=-1` makes gobgpd only connect out."""
        config = gobgp_pb2.Global(asn=asn, router_id=router_id, listen_port=listen_port)
        self._call("StartBgp", gobgp_pb2.StartBgpRequest(**{"global": config}))

    def running_asn(self) -> int:
        """The ASN of the running BGP instance, or 0 when StartBgp has not been called."""
        reply = self._call("GetBgp", gobgp_pb2.GetBgpRequest())
        return int(getattr(reply, "global").asn)

    def add_peer(
        self,
        neighbor_address: str,
        peer_asn: int,
        *,
        hold_time: int = 9,
        keepalive: int = 3,
        connect_retry: int = 1,
        add_paths_send_max: int = 0,
        passive: bool = False,
    ) -> None:
        family = _family(neighbor_address + ("/32" if ":" not in neighbor_address else "/128"))
        afi_safi = gobgp_pb2.AfiSafi(config=gobgp_pb2.AfiSafiConfig(family=family, enabled=True))
        if add_paths_send_max:
            afi_safi.add_paths.config.send_max = add_paths_send_max
        peer = gobgp_pb2.Peer(
            conf=gobgp_pb2.PeerConf(neighbor_address=neighbor_address, peer_asn=peer_asn),
            timers=gobgp_pb2.Timers(
                config=gobgp_pb2.TimersConfig(
                    hold_time=hold_time, keepalive_interval=keepalive, connect_retry=connect_retry
                )
            ),
            transport=gobgp_pb2.Transport(passive_mode=passive),
            afi_safis=[afi_safi],
        )
        self._call("AddPeer", gobgp_pb2.AddPeerRequest(peer=peer))

    def peers(self) -> list[PeerStatus]:
        replies = self._call("ListPeer", gobgp_pb2.ListPeerRequest(), stream=True)
        result = []
        for reply in replies:
            state = reply.peer.state
            received = sum(a.state.received for a in reply.peer.afi_safis)
            result.append(
                PeerStatus(
                    neighbor_address=state.neighbor_address or reply.peer.conf.neighbor_address,
                    peer_asn=state.peer_asn,
                    session_state=_SESSION_STATES.get(state.session_state, "unknown"),
                    received_prefixes=received,
                )
            )
        return result

    def add_route(self, route: Route) -> None:
        self._call("AddPath", gobgp_pb2.AddPathRequest(path=_path(route)))

    def delete_route(self, route: Route) -> None:
        # Always name the path: DeletePath without one deletes every locally added path.
        self._call(
            "DeletePath",
            gobgp_pb2.DeletePathRequest(family=_family(route.prefix), path=_path(route)),
        )

    def routes(self, family_of: str = "0.0.0.0/0") -> list[Route]:
        """Locally originated paths in the global RIB (ListPath), as Routes."""
        request = gobgp_pb2.ListPathRequest(table_type=gobgp_pb2.GLOBAL, family=_family(family_of))
        result = []
        for reply in self._call("ListPath", request, stream=True):
            for path in reply.destination.paths:
                if path.is_from_external or path.neighbor_ip not in ("", "<nil>"):
                    continue
                next_hop = ""
                for attr in path.pattrs:
                    if attr.Is(attribute_pb2.NextHopAttribute.DESCRIPTOR):
                        unpacked = attribute_pb2.NextHopAttribute()
                        attr.Unpack(unpacked)
                        next_hop = unpacked.next_hop
                result.append(Route(reply.destination.prefix, next_hop, path.identifier))
        return sorted(result, key=lambda r: (r.prefix, r.next_hop, r.identifier))
