"""Adapter to one gobgpd over its gRPC API (GoBGP 4, the version tools/gobgp/go.mod pins).

Translates porter-lb's plain values into the generated stubs and back; it decides nothing.
The message stubs in `porter_lb.gobgp_api` are generated at build time from that release's
own .proto files (see runtime/build_support/gobgp_stubs.py); the calls go through porter-lb's
own gRPC client (`porter_lb.routing.grpc_client`), not grpcio.

GoBGP renamed fields that Porter/OpenELB CRDs still spell the v2 way (`as` -> `asn`,
`peer_as` -> `peer_asn`): callers pass explicit values (`GlobalConfig`, `PeerConfig`, `Route`),
never CR JSON. GoBGP 4 types what v3 packed into `google.protobuf.Any`: a path's NLRI is an
`NLRI` message (a oneof; unicast is `prefix`) and each path attribute an `Attribute` (a oneof:
`origin`, `next_hop`, `mp_reach` ...). Its enum values carry their type's name
(`TABLE_TYPE_GLOBAL`, `SESSION_STATE_ESTABLISHED`), and `Family` lives in common.proto.

Paths are always named: `withdraw_routes` and `delete_route` send the path itself, because
DeletePath without a path deletes every locally added path. Bulk changes go through
AddPathStream (10,000 routes reach a router's kernel in ~0.8 s, against ~5.6 s unary), which
also carries withdrawals (`Path.is_withdraw`). A change of a few paths (up to
`UNARY_PATHS`, an EndpointSlice change is one or two) goes as unary AddPath calls instead:
a client stream's set-up and half-close cost more than the paths (with grpcio, which fed a
client stream from a thread of its own: 0.6 ms against 0.33 ms for one path on an idle
machine, and 2.3 ms at p50 in bench/peers.py).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf import message_factory

from porter_lb.gobgp_api import attribute_pb2, common_pb2, gobgp_pb2, nlri_pb2
from porter_lb.model.resources import NO_LOCAL_PREF, BgpAttributes
from porter_lb.routing.bgp_config import (
    Bfd,
    GlobalConfig,
    GracefulRestart,
    PeerConfig,
    PeerExport,
    PeerStatus,
)
from porter_lb.routing.grpc_client import Channel, RpcError
from porter_lb.routing.routes import Route

# GoBGP's session state names without their enum prefix, lower case ("established", "idle"
# ...), as porter-lb reports them; SESSION_STATE_UNSPECIFIED (0) is "unknown", as GoBGP 3's 0
# was.
_SESSION_STATES = {
    value.number: value.name.removeprefix("SESSION_STATE_").lower()
    for value in gobgp_pb2.PeerState.DESCRIPTOR.enum_types_by_name["SessionState"].values
    if value.number
}

# BFD session states without their enum prefix, lower case ("up", "down", "init",
# "admin_down"); UNSPECIFIED (no BFD packet yet) is "".
_BFD_STATES = {
    value.number: value.name.removeprefix("BFD_SESSION_STATE_").lower()
    for value in gobgp_pb2.BfdSessionState.DESCRIPTOR.values
    if value.number
}


EXPORT_POLICY = "porter-lb-export"
"""The global export policy holding the per-peer filters of a central speaker."""


ExportDigest = tuple[tuple[Any, ...], ...]


def export_policy_messages(
    filters: tuple[PeerExport, ...] | None,
) -> tuple[list[gobgp_pb2.DefinedSet], list[gobgp_pb2.Policy], list[gobgp_pb2.PolicyAssignment]]:
    """The neighbour sets, the policy and the global export assignment that carry per-peer
    export: for each peer, accept paths whose next hop is one of its nodes, reject the rest;
    other peers' paths fall through to the default (accept). None (or no peer): nothing."""
    sets, statements = [], []
    for index, peer in enumerate(filters or ()):
        neighbor = f"porter-lb-peer-{index}"
        bits = 32 if ":" not in peer.neighbor_address else 128
        sets.append(
            gobgp_pb2.DefinedSet(
                defined_type=gobgp_pb2.DEFINED_TYPE_NEIGHBOR,
                name=neighbor,
                list=[f"{peer.neighbor_address}/{bits}"],
            )
        )
        to_peer = gobgp_pb2.MatchSet(type=gobgp_pb2.MatchSet.TYPE_ANY, name=neighbor)
        if peer.next_hops:  # an empty list would match every next hop
            statements.append(
                gobgp_pb2.Statement(
                    name=f"{neighbor}-accept",
                    conditions=gobgp_pb2.Conditions(
                        neighbor_set=to_peer, next_hop_in_list=list(peer.next_hops)
                    ),
                    actions=gobgp_pb2.Actions(route_action=gobgp_pb2.ROUTE_ACTION_ACCEPT),
                )
            )
        statements.append(
            gobgp_pb2.Statement(
                name=f"{neighbor}-reject",
                conditions=gobgp_pb2.Conditions(neighbor_set=to_peer),
                actions=gobgp_pb2.Actions(route_action=gobgp_pb2.ROUTE_ACTION_REJECT),
            )
        )
    if not statements:
        return [], [], []
    policy = gobgp_pb2.Policy(name=EXPORT_POLICY, statements=statements)
    assignment = gobgp_pb2.PolicyAssignment(
        name="global",
        direction=gobgp_pb2.POLICY_DIRECTION_EXPORT,
        policies=[policy],
        default_action=gobgp_pb2.ROUTE_ACTION_ACCEPT,
    )
    return sets, [policy], [assignment]


def _network(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))


def _export_digest(
    sets: Iterable[gobgp_pb2.DefinedSet],
    policies: Iterable[gobgp_pb2.Policy],
    assignments: Iterable[gobgp_pb2.PolicyAssignment],
) -> ExportDigest:
    """porter-lb's export policy as plain values, the same whether built here or read back
    from gobgpd (which spells addresses its own way): the global export assignment's
    policies and default action, the policy's statements, and the neighbour sets they name.
    No policy assigned reads as an empty digest."""
    assigned = [
        (tuple(p.name for p in a.policies), a.default_action) for a in assignments if a.policies
    ]
    statements = [
        (
            s.name,
            s.conditions.neighbor_set.name,
            s.conditions.neighbor_set.type,
            tuple(sorted(_network(n) for n in s.conditions.next_hop_in_list)),
            s.actions.route_action,
        )
        for p in policies
        if p.name == EXPORT_POLICY
        for s in p.statements
    ]
    named = {s[1] for s in statements}
    neighbors = sorted(
        (d.name, tuple(sorted(_network(n) for n in d.list))) for d in sets if d.name in named
    )
    if not assigned:
        return ()
    return (tuple(assigned), tuple(statements), tuple(neighbors))


class GoBGPError(RuntimeError):
    """A gobgpd call failed; the message names the call and the gRPC status."""


UNARY_PATHS = 8
"""At most this many paths go as unary AddPath calls; more as one AddPathStream."""

SERVICE = gobgp_pb2.DESCRIPTOR.services_by_name["GoBgpService"]


@functools.lru_cache(maxsize=64)
def _method(name: str) -> tuple[str, Any]:
    """The HTTP/2 path of a GoBgpService method and the class of its replies."""
    method = SERVICE.methods_by_name[name]
    return f"/{SERVICE.full_name}/{name}", message_factory.GetMessageClass(method.output_type)


@functools.lru_cache(maxsize=4)
def _family_of_version(version: int) -> common_pb2.Family:
    afi = common_pb2.Family.AFI_IP if version == 4 else common_pb2.Family.AFI_IP6
    return common_pb2.Family(afi=afi, safi=common_pb2.Family.SAFI_UNICAST)


def family_message(prefix: str) -> common_pb2.Family:
    """The gobgpd unicast Family of `prefix` (IPv4 or IPv6)."""
    return _family_of_version(6 if ":" in prefix else 4)


# Building a Path is the speaker's hot loop (tens of thousands per full reconcile): parse each
# prefix and next hop once. Protobuf copies a message assigned into another, so the cached
# parts are never shared mutably.
@functools.lru_cache(maxsize=1 << 17)
def _nlri(prefix: str) -> nlri_pb2.NLRI:
    network = ipaddress.ip_network(prefix, strict=True)
    return nlri_pb2.NLRI(
        prefix=nlri_pb2.IPAddressPrefix(
            prefix=str(network.network_address), prefix_len=network.prefixlen
        )
    )


@functools.lru_cache(maxsize=1 << 12)
def _next_hop_attribute(next_hop: str) -> attribute_pb2.Attribute:
    # IPv4 or IPv6 alike: for an IPv6 (or any non-IPv4-unicast) path gobgpd turns the next hop
    # into MP_REACH_NLRI itself.
    return attribute_pb2.Attribute(next_hop=attribute_pb2.NextHopAttribute(next_hop=next_hop))


@functools.lru_cache(maxsize=1)
def _origin_igp() -> attribute_pb2.Attribute:
    return attribute_pb2.Attribute(origin=attribute_pb2.OriginAttribute(origin=0))


def _attribute_messages(attributes: BgpAttributes) -> list[attribute_pb2.Attribute]:
    found = []
    if attributes.local_pref >= 0:
        found.append(
            attribute_pb2.Attribute(
                local_pref=attribute_pb2.LocalPrefAttribute(local_pref=attributes.local_pref)
            )
        )
    if attributes.communities:
        found.append(
            attribute_pb2.Attribute(
                communities=attribute_pb2.CommunitiesAttribute(communities=attributes.communities)
            )
        )
    if attributes.large_communities:
        large = [
            attribute_pb2.LargeCommunity(global_admin=a, local_data1=b, local_data2=c)
            for a, b, c in attributes.large_communities
        ]
        found.append(
            attribute_pb2.Attribute(
                large_communities=attribute_pb2.LargeCommunitiesAttribute(communities=large)
            )
        )
    return found


def path_message(route: Route, withdraw: bool = False) -> gobgp_pb2.Path:
    """The gobgpd Path of `route`: origin IGP, its next hop, its ADD-PATH identifier, and its
    pool's attributes (LOCAL_PREF, communities, large communities)."""
    pattrs = [_origin_igp(), _next_hop_attribute(route.next_hop)]
    if route.attributes:
        pattrs.extend(_attribute_messages(route.attributes))
    return gobgp_pb2.Path(
        family=family_message(route.prefix),
        nlri=_nlri(route.prefix),
        pattrs=pattrs,
        identifier=route.identifier,
        is_withdraw=withdraw,
    )


def peer_message(config: PeerConfig) -> gobgp_pb2.Peer:
    """The gobgpd Peer message of `config` (the inverse of `peer_config_from_message`)."""
    afi_safis = []
    for version in config.families:
        afi_safi = gobgp_pb2.AfiSafi(
            config=gobgp_pb2.AfiSafiConfig(family=_family_of_version(version), enabled=True)
        )
        if config.add_paths_send_max:
            afi_safi.add_paths.config.send_max = config.add_paths_send_max
        if config.graceful_restart.enabled:
            afi_safi.mp_graceful_restart.config.enabled = True
        afi_safis.append(afi_safi)
    peer = gobgp_pb2.Peer(
        conf=gobgp_pb2.PeerConf(
            neighbor_address=config.neighbor_address,
            peer_asn=config.peer_asn,
            local_asn=config.local_asn,
            auth_password=config.auth_password,
            admin_down=config.admin_down,
            description=config.description,
            allow_own_asn=config.allow_own_asn,
            replace_peer_asn=config.replace_peer_asn,
            remove_private=config.remove_private,  # type: ignore[arg-type]
        ),
        timers=gobgp_pb2.Timers(
            config=gobgp_pb2.TimersConfig(
                hold_time=config.hold_time,
                keepalive_interval=config.keepalive,
                connect_retry=config.connect_retry,
                # After a reset gobgpd sent itself (BFD's, when the router still had the
                # session), it waits this long before it connects again: 30 s by default.
                # With BFD, a node whose link is back should be back after connectRetry.
                idle_hold_time_after_reset=config.connect_retry if config.bfd.enabled else 0,
            )
        ),
        transport=gobgp_pb2.Transport(
            passive_mode=config.passive,
            remote_port=config.port,
            local_address=config.local_address,
            tcp_mss=config.tcp_mss,
        ),
        afi_safis=afi_safis,
    )
    if config.ebgp_multihop_ttl:
        peer.ebgp_multihop.enabled = True
        peer.ebgp_multihop.multihop_ttl = config.ebgp_multihop_ttl
    if config.graceful_restart.enabled:
        peer.graceful_restart.enabled = True
        peer.graceful_restart.restart_time = config.graceful_restart.restart_time
        peer.graceful_restart.deferral_time = config.graceful_restart.deferral_time
        peer.graceful_restart.helper_only = config.graceful_restart.helper_only
        peer.graceful_restart.notification_enabled = config.graceful_restart.notification_enabled
    if config.bfd.enabled:
        peer.bfd.enabled = True
        peer.bfd.desired_minimum_tx_interval = config.bfd.transmit_interval * 1000  # µs
        peer.bfd.required_minimum_receive = config.bfd.receive_interval * 1000
        peer.bfd.detection_multiplier = config.bfd.detect_multiplier
    return peer


def peer_config_from_message(peer: gobgp_pb2.Peer) -> PeerConfig:
    """The PeerConfig a gobgpd Peer (from ListPeer) was configured with, as far as porter-lb
    sets it: comparing it with the wanted PeerConfig tells whether UpdatePeer is needed."""
    families = []
    send_max = 0
    for afi_safi in peer.afi_safis:
        if not afi_safi.config.enabled:
            continue
        families.append(4 if afi_safi.config.family.afi == common_pb2.Family.AFI_IP else 6)
        send_max = max(send_max, afi_safi.add_paths.config.send_max)
    timers = peer.timers.config
    return PeerConfig(
        neighbor_address=peer.conf.neighbor_address,
        peer_asn=peer.conf.peer_asn,
        port=peer.transport.remote_port or 179,
        local_asn=peer.conf.local_asn,
        passive=peer.transport.passive_mode,
        auth_password=peer.conf.auth_password,
        ebgp_multihop_ttl=(peer.ebgp_multihop.multihop_ttl if peer.ebgp_multihop.enabled else 0),
        hold_time=timers.hold_time,
        keepalive=timers.keepalive_interval,
        connect_retry=timers.connect_retry,
        families=tuple(families),
        add_paths_send_max=send_max,
        graceful_restart=(
            GracefulRestart(
                True,
                peer.graceful_restart.restart_time,
                peer.graceful_restart.deferral_time,
                helper_only=peer.graceful_restart.helper_only,
                notification_enabled=peer.graceful_restart.notification_enabled,
            )
            if peer.graceful_restart.enabled
            else GracefulRestart()
        ),
        bfd=(
            Bfd(
                True,
                peer.bfd.desired_minimum_tx_interval // 1000,
                peer.bfd.required_minimum_receive // 1000,
                peer.bfd.detection_multiplier,
            )
            if peer.bfd.enabled
            else Bfd()
        ),
        admin_down=peer.conf.admin_down,
        description=peer.conf.description,
        allow_own_asn=peer.conf.allow_own_asn,
        replace_peer_asn=peer.conf.replace_peer_asn,
        remove_private=int(peer.conf.remove_private),
        # gobgpd reports the wildcard when no source address was given.
        local_address=(
            ""
            if peer.transport.local_address in ("", "0.0.0.0", "::")
            else peer.transport.local_address
        ),
        tcp_mss=peer.transport.tcp_mss,
    )


def _route(prefix: str, path: gobgp_pb2.Path) -> Route:
    next_hop = ""
    communities: tuple[int, ...] = ()
    large: tuple[tuple[int, int, int], ...] = ()
    local_pref = NO_LOCAL_PREF
    for attr in path.pattrs:
        kind = attr.WhichOneof("attr")
        if kind == "next_hop":
            next_hop = attr.next_hop.next_hop
        elif kind == "mp_reach":
            next_hop = attr.mp_reach.next_hops[0] if attr.mp_reach.next_hops else ""
        elif kind == "communities":
            communities = tuple(sorted(attr.communities.communities))
        elif kind == "large_communities":
            large = tuple(
                sorted(
                    (c.global_admin, c.local_data1, c.local_data2)
                    for c in attr.large_communities.communities
                )
            )
        elif kind == "local_pref":
            local_pref = attr.local_pref.local_pref
    return Route(prefix, next_hop, path.identifier, BgpAttributes(communities, large, local_pref))


class GoBGP:
    """One gobgpd, reached at a gRPC target such as `unix:///run/porter-lb/gobgp.sock`."""

    def __init__(self, target: str, timeout: float = 5.0) -> None:
        self.target = target
        self.timeout = timeout
        # No connection yet: the first call opens it (and every call after gobgpd restarts).
        self._channel = Channel(target, connect_timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GoBGP:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(
        self, name: str, request: Any, stream: bool = False, timeout: float | None = None
    ) -> Any:
        """Call `name` with one request (or an iterable of them, for a client stream): its
        reply, or the list of them with `stream`."""
        path, reply = _method(name)
        requests = [request] if hasattr(request, "SerializeToString") else request
        try:
            replies = self._channel.call(
                path, (r.SerializeToString() for r in requests), timeout or self.timeout
            )
        except RpcError as error:
            raise GoBGPError(
                f"gobgpd {self.target}: {name} failed: {error.code}: {error.details}"
            ) from None
        decoded = [reply.FromString(data) for data in replies]
        if stream:
            return decoded
        if len(decoded) != 1:
            raise GoBGPError(f"gobgpd {self.target}: {name} answered {len(decoded)} replies")
        return decoded[0]

    def wait_ready(self, timeout: float) -> None:
        """Block until the gRPC server answers, or raise GoBGPError after `timeout` seconds."""
        if not self._channel.wait_ready(timeout):
            raise GoBGPError(f"gobgpd {self.target}: not reachable within {timeout}s")

    def start(
        self,
        asn: int,
        router_id: str,
        listen_port: int = 179,
        listen_addresses: Iterable[str] = (),
        graceful_restart: GracefulRestart | None = None,
        *,
        use_multiple_paths: bool = False,
    ) -> None:
        """Start the BGP instance (StartBgp); `listen_port=-1` makes gobgpd only connect out."""
        config = gobgp_pb2.Global(
            asn=asn,
            router_id=router_id,
            listen_port=listen_port,
            listen_addresses=list(listen_addresses),
            use_multiple_paths=use_multiple_paths,
        )
        if graceful_restart is not None and graceful_restart.enabled:
            config.graceful_restart.enabled = True
            config.graceful_restart.restart_time = graceful_restart.restart_time
        self._call("StartBgp", gobgp_pb2.StartBgpRequest(**{"global": config}))

    def start_global(self, config: GlobalConfig) -> None:
        """StartBgp with a GlobalConfig."""
        self.start(
            config.asn,
            config.router_id,
            config.listen_port,
            config.listen_addresses,
            config.graceful_restart,
            use_multiple_paths=config.use_multiple_paths,
        )

    def stop_bgp(self, *, allow_graceful_restart: bool = False) -> None:
        """StopBgp: every session closes and the RIB is dropped. Each peer gets a Cease
        NOTIFICATION, except, with `allow_graceful_restart`, those that negotiated graceful
        restart: their sessions just close, so they keep our routes as stale (RFC 4724).

        GoBGP 4 also ends the BGP server's own loop: every later call, StartBgp included,
        fails ("server stopped") until the gobgpd process is restarted
        (`routing.gobgpd_process`). GoBGP 3 accepted a new StartBgp after StopBgp."""
        self._call(
            "StopBgp", gobgp_pb2.StopBgpRequest(allow_graceful_restart=allow_graceful_restart)
        )

    def running_global(self) -> GlobalConfig | None:
        """The running instance's ASN, router ID, listen port and addresses (GetBgp), or None
        before StartBgp. Graceful restart is not reported by GetBgp and comes back unset."""
        running = getattr(self._call("GetBgp", gobgp_pb2.GetBgpRequest()), "global")
        if not running.asn:
            return None
        return GlobalConfig(
            asn=running.asn,
            router_id=running.router_id,
            listen_port=running.listen_port,
            listen_addresses=tuple(running.listen_addresses),
        )

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
        """AddPeer with lab-friendly short timers; the family is the neighbour address's."""
        self.add_peer_config(
            PeerConfig(
                neighbor_address=neighbor_address,
                peer_asn=peer_asn,
                hold_time=hold_time,
                keepalive=keepalive,
                connect_retry=connect_retry,
                add_paths_send_max=add_paths_send_max,
                passive=passive,
                families=(ipaddress.ip_address(neighbor_address).version,),
            )
        )

    def add_peer_config(self, config: PeerConfig, *, restarting: bool = False) -> None:
        """AddPeer. `restarting` (graceful restart enabled) makes gobgpd open the session as a
        restarting speaker (RFC 4724 4.1): the Restart State bit set, and the Forwarding State
        bit of each family, which tells a helper to keep the routes it holds from us until our
        End-of-RIB. gobgpd then holds its updates until the peer's End-of-RIB (or its deferral
        time, 360 s unless set) and sends the whole RIB followed by End-of-RIB."""
        peer = peer_message(config)
        if restarting and config.graceful_restart.enabled:
            peer.graceful_restart.local_restarting = True
        self._call("AddPeer", gobgp_pb2.AddPeerRequest(peer=peer))

    def update_peer(self, config: PeerConfig, previous: PeerConfig | None = None) -> None:
        """UpdatePeer: gobgpd resets the session when the change needs it (ASN, password,
        families, transport); the RIB is untouched. A new hold time or keepalive interval,
        which gobgpd only stores (they are negotiated in the OPEN), resets the session here, so
        that the edit takes effect now and not at the next session by chance."""
        self._call("UpdatePeer", gobgp_pb2.UpdatePeerRequest(peer=peer_message(config)))
        if previous is not None and (previous.hold_time, previous.keepalive) != (
            config.hold_time,
            config.keepalive,
        ):
            self._call(
                "ResetPeer",
                gobgp_pb2.ResetPeerRequest(
                    address=config.neighbor_address,
                    communication="porter-lb: BGP timers changed",
                ),
            )

    def delete_peer(self, neighbor_address: str) -> None:
        self._call("DeletePeer", gobgp_pb2.DeletePeerRequest(address=neighbor_address))

    def peer_configs(self) -> dict[str, PeerConfig]:
        """Every configured neighbour (ListPeer), by address, as PeerConfigs."""
        replies = self._call("ListPeer", gobgp_pb2.ListPeerRequest(), stream=True)
        return {
            reply.peer.conf.neighbor_address: peer_config_from_message(reply.peer)
            for reply in replies
        }

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
                    bfd_state=(
                        _BFD_STATES.get(state.bfd_state.session_state, "")
                        if reply.peer.bfd.enabled
                        else ""
                    ),
                )
            )
        return result

    def set_export_filters(self, filters: tuple[PeerExport, ...] | None) -> None:
        """Per-peer export (`bgp_config.export_filters`) as gobgpd's global export policy;
        None removes it. gobgpd's SetPolicies replaces the definitions (policies, neighbour
        sets) and ignores assignments, so the policy is assigned (SetPolicyAssignment) after
        it is defined, and unassigned before it is removed. Every established peer is then
        soft-reset out, so paths a peer may no longer get are withdrawn from it and the ones
        it may now get are sent. A policy gobgpd already holds, read back and compared, is
        left alone: a restarted controller or agent must not re-send every path to every
        peer for nothing."""
        sets, policies, assignments = export_policy_messages(filters)
        if _export_digest(sets, policies, assignments) == self._held_export_digest():
            return
        if not assignments:  # unassign, then drop the definitions
            self._call(
                "SetPolicyAssignment",
                gobgp_pb2.SetPolicyAssignmentRequest(
                    assignment=gobgp_pb2.PolicyAssignment(
                        name="global",
                        direction=gobgp_pb2.POLICY_DIRECTION_EXPORT,
                        default_action=gobgp_pb2.ROUTE_ACTION_ACCEPT,
                    )
                ),
            )
        self._call(
            "SetPolicies", gobgp_pb2.SetPoliciesRequest(defined_sets=sets, policies=policies)
        )
        for assignment in assignments:
            self._call(
                "SetPolicyAssignment", gobgp_pb2.SetPolicyAssignmentRequest(assignment=assignment)
            )
        self._call(
            "ResetPeer",
            gobgp_pb2.ResetPeerRequest(
                address="all", soft=True, direction=gobgp_pb2.ResetPeerRequest.DIRECTION_OUT
            ),
        )

    def _held_export_digest(self) -> ExportDigest:
        """What gobgpd holds of porter-lb's export policy (ListPolicyAssignment; ListPolicy
        and ListDefinedSet only when the policy is assigned), in `_export_digest`'s form."""
        replies = self._call(
            "ListPolicyAssignment",
            gobgp_pb2.ListPolicyAssignmentRequest(
                name="global", direction=gobgp_pb2.POLICY_DIRECTION_EXPORT
            ),
            stream=True,
        )
        assignments = [reply.assignment for reply in replies]
        if not any(p.name == EXPORT_POLICY for a in assignments for p in a.policies):
            return ()  # none of porter-lb's: nothing to remove
        policies = [
            reply.policy
            for reply in self._call("ListPolicy", gobgp_pb2.ListPolicyRequest(), stream=True)
        ]
        sets = [
            reply.defined_set
            for reply in self._call(
                "ListDefinedSet",
                gobgp_pb2.ListDefinedSetRequest(defined_type=gobgp_pb2.DEFINED_TYPE_NEIGHBOR),
                stream=True,
            )
        ]
        return _export_digest(sets, policies, assignments)

    def add_route(self, route: Route) -> None:
        request = gobgp_pb2.AddPathRequest(
            table_type=gobgp_pb2.TABLE_TYPE_GLOBAL, path=path_message(route)
        )
        self._call("AddPath", request)

    def delete_route(self, route: Route) -> None:
        # Always name the path: DeletePath without one deletes every locally added path.
        self._call(
            "DeletePath",
            gobgp_pb2.DeletePathRequest(
                table_type=gobgp_pb2.TABLE_TYPE_GLOBAL,
                family=family_message(route.prefix),
                path=path_message(route),
            ),
        )

    def routes(self, family_of: str = "0.0.0.0/0") -> list[Route]:
        """Locally originated paths of one family in the global RIB (ListPath), as Routes."""
        request = gobgp_pb2.ListPathRequest(
            table_type=gobgp_pb2.TABLE_TYPE_GLOBAL, family=family_message(family_of)
        )
        result = []
        for reply in self._call("ListPath", request, stream=True):
            for path in reply.destination.paths:
                # A received path names its neighbour; a locally added one has none.
                if path.is_from_external or path.neighbor_ip:
                    continue
                result.append(_route(reply.destination.prefix, path))
        return sorted(result, key=lambda r: (r.prefix, r.next_hop, r.identifier))

    def rib_routes(self, family_of: str = "0.0.0.0/0") -> list[Route]:
        """Every path of one family in the global RIB (ListPath), received or locally added,
        as Routes. For reading a gobgpd as a router (porter-lb audit); the speaker uses
        `routes`, its own paths only."""
        request = gobgp_pb2.ListPathRequest(
            table_type=gobgp_pb2.TABLE_TYPE_GLOBAL, family=family_message(family_of)
        )
        result = [
            _route(reply.destination.prefix, path)
            for reply in self._call("ListPath", request, stream=True)
            for path in reply.destination.paths
        ]
        return sorted(result, key=lambda r: (r.prefix, r.next_hop, r.identifier))

    def local_routes(self) -> list[Route]:
        """Locally originated paths of both IPv4 and IPv6 unicast."""
        return self.routes("0.0.0.0/0") + self.routes("::/0")

    def _send_paths(self, routes: Iterable[Route], withdraw: bool, batch: int) -> int:
        """Add (or withdraw) `routes`: unary calls for a few, one stream for more."""
        routes = list(routes)
        if len(routes) > UNARY_PATHS:
            return self._stream_paths(routes, withdraw, batch)
        for route in routes:
            self._call(
                "AddPath",
                gobgp_pb2.AddPathRequest(
                    table_type=gobgp_pb2.TABLE_TYPE_GLOBAL, path=path_message(route, withdraw)
                ),
            )
        return len(routes)

    def _stream_paths(self, routes: Iterable[Route], withdraw: bool, batch: int) -> int:
        count = 0

        def requests() -> Iterator[gobgp_pb2.AddPathStreamRequest]:
            nonlocal count
            chunk: list[gobgp_pb2.Path] = []
            for route in routes:
                chunk.append(path_message(route, withdraw))
                if len(chunk) >= batch:
                    count += len(chunk)
                    yield gobgp_pb2.AddPathStreamRequest(
                        table_type=gobgp_pb2.TABLE_TYPE_GLOBAL, paths=chunk
                    )
                    chunk = []
            if chunk:
                count += len(chunk)
                yield gobgp_pb2.AddPathStreamRequest(
                    table_type=gobgp_pb2.TABLE_TYPE_GLOBAL, paths=chunk
                )

        self._call("AddPathStream", requests(), timeout=max(self.timeout, 60.0))
        return count

    def add_routes(self, routes: Iterable[Route], batch: int = 1000) -> int:
        """Add paths (many in one AddPathStream call); returns how many were sent."""
        return self._send_paths(routes, withdraw=False, batch=batch)

    def withdraw_routes(self, routes: Iterable[Route], batch: int = 1000) -> int:
        """Withdraw the named paths (prefix + path identifier), many in one AddPathStream call.

        Each path is sent with `is_withdraw`, so only those paths go; returns how many."""
        return self._send_paths(routes, withdraw=True, batch=batch)
