"""The BGP speaker driver: Kubernetes objects in, one gobgpd's peers and RIB out.

A `Speaker` follows the informers' caches (Service, EndpointSlice, Node, Eip, BgpConf,
BgpPeer, Secret) and keeps one gobgpd in step with them, level-triggered:

* **what to announce** comes from `porter_lb.routing.routes`: for each Service porter-lb implements,
  the IPs in `status.loadBalancer.ingress` (written by the controller; the speaker never
  allocates) that lie in an Eip announced over BGP (`protocol: bgp`, not being deleted), and
  the nodes eligible for it (externalTrafficPolicy, ready endpoints, Ready and not excluded
  nodes, the BgpPeers' node selectors);
* **mode `node`** (MetalLB's model, the default): one speaker per node announces, with next
  hop self, the prefixes its node is eligible for, to the BgpPeers whose nodeSelector matches
  the node; the router spreads traffic over the nodes by ECMP;
* **mode `central`** (Porter's model): one speaker announces one path per (prefix, eligible
  node) with the node's InternalIP as third-party next hop and `routes.path_identifier` as
  ADD-PATH path identifier, so the router learns every next hop from one session.

Recomputing is incremental: an EndpointSlice or Service change recomputes that Service only
(`RouteTable.set_service`), and only its prefixes are diffed against what gobgpd holds; a Node,
Eip, BgpConf or BgpPeer change recomputes everything. Either way the change reaching gobgpd
is a diff of the desired RIB against the held one (`rib_delta`), pushed with AddPathStream;
a route that stays is never withdrawn and re-added. The held RIB is read from gobgpd
(ListPath) at start, after gobgpd restarts and at every resync, so it cannot drift.

Decision logic (everything above `class Speaker`) is pure and table-tested; side effects go
only through the GoBGP adapter (`porter_lb.routing.gobgp`) and the Kubernetes adapter (`KubeAPI`,
`EventRecorder`). See docs/speaker.md for the design, the status fields and the metrics.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from porter_lb.kube.api import KubeAPI, KubeError, Obj
from porter_lb.kube.events import API_VERSIONS, EventRecorder, Warnings
from porter_lb.kube.informers import Informers
from porter_lb.kube.watch_cache import object_key
from porter_lb.model.addresses import AddressPool
from porter_lb.model.resources import (
    GROUP_PATH,
    LOAD_BALANCER_CLASS,
    Endpoint,
    ModelError,
    Node,
    ServiceTraffic,
    endpoints_from_slice,
    node_from_object,
    pool_from_eip,
    selects_porter,
    slice_service_key,
    traffic_from_service,
)
from porter_lb.model.validation import effective_pools
from porter_lb.routing.gobgp import (
    DEFAULT_DEFERRAL_TIME,
    GlobalConfig,
    GoBGP,
    GoBGPError,
    GracefulRestart,
    PeerConfig,
    PeerStatus,
    Route,
)
from porter_lb.routing.routes import (
    LabelSelector,
    Peer,
    central_paths,
    eligible_nodes,
    host_prefix,
)
from porter_lb.telemetry import metrics
from porter_lb.telemetry.health import Heartbeat

log = logging.getLogger(__name__)

__all__ = [
    "CENTRAL_STATUS_KEY",
    "DEFAULT_BGPCONF_NAME",
    "DEFAULT_CENTRAL_SEND_MAX",
    "SPEAKER_KINDS",
    "Mode",
    "PeerSpec",
    "RouteTable",
    "Speaker",
    "announced_ips",
    "bgp_pools",
    "central_rib",
    "choose_bgpconf",
    "global_config_from_bgpconf",
    "node_rib",
    "peer_delta",
    "peer_spec_from_bgppeer",
    "peer_status_entry",
    "rib_delta",
    "service_next_hops",
    "service_share",
    "usable_peer_specs",
]

SPEAKER_KINDS = ("Service", "EndpointSlice", "Node", "Eip", "BgpConf", "BgpPeer", "Secret")
"""The kinds a Speaker needs its Informers to watch."""

Mode = Literal["node", "central"]

CENTRAL_STATUS_KEY = "central"
"""The key of a central speaker's entry in BgpPeer `status.nodesPeerStatus`."""

DEFAULT_BGPCONF_NAME = "default"
"""The BgpConf porter-lb uses (Porter's name); otherwise the first by name."""

DEFAULT_CENTRAL_SEND_MAX = 255
"""ADD-PATH send_max of a central speaker's peers when the BgpPeer gives none: the protocol's
most. Not the number of nodes: a value that followed the node count would change the peer's
configuration, and so reset its session, every time a node joined."""

GOBGP_RETRY_MAX = 0.5
"""Longest wait (s) between attempts while gobgpd does not answer. gobgpd is local: a failed
call costs nothing, and a gobgpd back from a crash must be re-programmed at once (its whole
RIB within 2 s of it answering again), so its back-off stays short whatever the outage."""

OTHER_RETRY_MAX = 5.0
"""Longest wait (s) after any other reconcile failure (a bug, the node's host rules)."""

DEFAULT_HOLD_TIME = 90
DEFAULT_KEEPALIVE = 30
DEFAULT_CONNECT_RETRY = 5  # GoBGP's own default, 120 s, leaves a peer down long after a restart

_NEXT_HOP_SELF = {4: "0.0.0.0", 6: "::"}


# --- pure: configuration -----------------------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_mapping(obj.get("metadata")).get("name", ""))


def _being_deleted(obj: Mapping[str, Any]) -> bool:
    return bool(_mapping(obj.get("metadata")).get("deletionTimestamp"))


def choose_bgpconf(bgpconfs: Iterable[Obj]) -> Obj | None:
    """The BgpConf in force: the one named `default`, else the first by name; None if none."""
    usable = sorted((c for c in bgpconfs if not _being_deleted(c)), key=_name)
    for conf in usable:
        if _name(conf) == DEFAULT_BGPCONF_NAME:
            return conf
    return usable[0] if usable else None


def _int_field(
    value: object, kind: str, name: str, field_name: str, bounds: tuple[int, int]
) -> int | None:
    """An integer field given as a number or a decimal string (Porter's timers are strings)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ModelError(kind, name, field_name, value, "must be an integer")
    try:
        number = int(value.strip(), 10) if isinstance(value, str) else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ModelError(kind, name, field_name, value, "must be an integer") from None
    low, high = bounds
    if not low <= number <= high:
        raise ModelError(kind, name, field_name, value, f"must be between {low} and {high}")
    return number


def _graceful_restart(
    spec: Mapping[str, Any], kind: str, name: str, field_name: str, hold_time: int = 0
) -> GracefulRestart:
    """`spec.gracefulRestart`: `restartTime` (default `hold_time`, as gobgpd itself chooses
    for a peer) and `deferralTime` (default gobgpd's 360 s)."""
    settings = _mapping(spec.get("gracefulRestart"))
    if settings.get("enabled") is not True:
        return GracefulRestart()
    restart_time = _int_field(
        settings.get("restartTime"), kind, name, f"{field_name}.restartTime", (0, 4095)
    )
    deferral_time = _int_field(
        settings.get("deferralTime"), kind, name, f"{field_name}.deferralTime", (0, 65535)
    )
    return GracefulRestart(True, restart_time or hold_time, deferral_time or DEFAULT_DEFERRAL_TIME)


def _ipv4_address(addresses: Sequence[str]) -> str:
    for text in addresses:
        try:
            if ipaddress.ip_address(text).version == 4:
                return text
        except ValueError:
            continue
    return ""


def global_config_from_bgpconf(
    bgpconf: Mapping[str, Any], node: Node | None = None, default_router_id: str = ""
) -> GlobalConfig:
    """The gobgpd instance a BgpConf asks for.

    The router ID is `spec.routerId`, else the IPv4 InternalIP of `node` (a node speaker),
    else `default_router_id`; with none of them the BgpConf cannot be used. `listenPort`
    absent or 0 means 179; -1 makes gobgpd only connect out.
    """
    name = _name(bgpconf)
    spec = _mapping(bgpconf.get("spec"))
    asn = _int_field(spec.get("as"), "BgpConf", name, "spec.as", (1, 4294967295))
    if asn is None:
        raise ModelError("BgpConf", name, "spec.as", None, "is required")
    router_id = str(spec.get("routerId") or "").strip()
    if router_id:
        try:
            ipaddress.IPv4Address(router_id)
        except ValueError:
            raise ModelError(
                "BgpConf", name, "spec.routerId", router_id, "must be an IPv4 address"
            ) from None
    else:
        router_id = (_ipv4_address(node.addresses) if node else "") or default_router_id
        if not router_id:
            where = f"node {node.name!r} has no IPv4 InternalIP" if node else "no node address"
            raise ModelError(
                "BgpConf", name, "spec.routerId", None, f"is needed: {where} to use instead"
            )
    port = _int_field(spec.get("listenPort"), "BgpConf", name, "spec.listenPort", (-1, 65535))
    listen_addresses = spec.get("listenAddresses") or []
    if not isinstance(listen_addresses, list):
        raise ModelError(
            "BgpConf", name, "spec.listenAddresses", listen_addresses, "must be a list"
        )
    for address in listen_addresses:
        try:
            ipaddress.ip_address(str(address))
        except ValueError:
            raise ModelError(
                "BgpConf", name, "spec.listenAddresses", address, "not an IP address"
            ) from None
    return GlobalConfig(
        asn=asn,
        router_id=router_id,
        listen_port=port or 179,
        listen_addresses=tuple(str(a) for a in listen_addresses),
        graceful_restart=_graceful_restart(spec, "BgpConf", name, "spec.gracefulRestart"),
    )


def global_differs(running: GlobalConfig, wanted: GlobalConfig) -> bool:
    """True if gobgpd's running instance (as GetBgp reports it) is not the wanted one.

    GetBgp reports neither graceful restart nor, when none were given, the listen addresses
    gobgpd chose itself, so those are compared only when wanted explicitly.
    """
    if (running.asn, running.router_id, running.listen_port) != (
        wanted.asn,
        wanted.router_id,
        wanted.listen_port,
    ):
        return True
    return bool(wanted.listen_addresses) and set(running.listen_addresses) != set(
        wanted.listen_addresses
    )


@dataclass(frozen=True)
class PeerSpec:
    """A BgpPeer made usable: whom its selector picks (`peer`) and what gobgpd is told."""

    name: str
    peer: Peer
    config: PeerConfig


def _families(
    spec: Mapping[str, Any], name: str, neighbor: ipaddress._BaseAddress
) -> tuple[tuple[int, ...], int]:
    families: list[int] = []
    send_max = 0
    afi_safis = spec.get("afiSafis") or []
    if not isinstance(afi_safis, list):
        raise ModelError("BgpPeer", name, "spec.afiSafis", afi_safis, "must be a list")
    for index, entry in enumerate(afi_safis):
        where = f"spec.afiSafis[{index}]"
        config = _mapping(_mapping(entry).get("config"))
        if config.get("enabled") is False:
            continue
        afi = _mapping(config.get("family")).get("afi") or (
            "AFI_IP" if neighbor.version == 4 else "AFI_IP6"
        )
        if afi not in ("AFI_IP", "AFI_IP6"):
            raise ModelError(
                "BgpPeer", name, f"{where}.config.family.afi", afi, "AFI_IP or AFI_IP6"
            )
        version = 4 if afi == "AFI_IP" else 6
        if version not in families:
            families.append(version)
        add_paths = _mapping(_mapping(_mapping(entry).get("addPaths")).get("config"))
        send = _int_field(
            add_paths.get("sendMax"), "BgpPeer", name, f"{where}.addPaths.config.sendMax", (0, 255)
        )
        send_max = max(send_max, send or 0)
    return tuple(families) or (neighbor.version,), send_max


def _password(
    conf: Mapping[str, Any], name: str, secrets: Mapping[str, Obj], secret_namespace: str
) -> str:
    """The MD5 password: from the referenced Secret, else the plain `authPassword`.

    Errors name the Secret and the key, never the password.
    """
    ref = conf.get("authPasswordSecretRef")
    if ref is None:
        plain = conf.get("authPassword") or ""
        return str(plain)
    where = "spec.conf.authPasswordSecretRef"
    ref = _mapping(ref)
    secret_name = str(ref.get("name") or "")
    if not secret_name:
        raise ModelError("BgpPeer", name, f"{where}.name", None, "is required")
    namespace = str(ref.get("namespace") or secret_namespace)
    if namespace != secret_namespace:
        raise ModelError(
            "BgpPeer",
            name,
            f"{where}.namespace",
            namespace,
            f"porter-lb reads Secrets only in its own namespace {secret_namespace!r}",
        )
    key = str(ref.get("key") or "password")
    secret = secrets.get(secret_name)
    if secret is None:
        raise ModelError("BgpPeer", name, where, f"{namespace}/{secret_name}", "Secret not found")
    data = _mapping(secret.get("data"))
    if key in data:
        try:
            return base64.b64decode(str(data[key]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ModelError(
                "BgpPeer",
                name,
                f"{where}.key",
                key,
                f"Secret {namespace}/{secret_name}: the value is not base64 text",
            ) from None
    string_data = _mapping(secret.get("stringData"))
    if key in string_data:
        return str(string_data[key])
    raise ModelError(
        "BgpPeer", name, f"{where}.key", key, f"Secret {namespace}/{secret_name} has no such key"
    )


def peer_spec_from_bgppeer(
    bgppeer: Mapping[str, Any],
    secrets: Mapping[str, Obj],
    *,
    mode: Mode = "node",
    secret_namespace: str = "porter-lb-system",
) -> PeerSpec:
    """Map a BgpPeer (v1alpha2, GoBGP v2 field names) to a PeerSpec; ModelError if unusable.

    `secrets` are the Secrets of porter-lb's namespace by name. Timers are whole seconds
    (numbers or decimal strings); absent ones default to hold 90 s, keepalive 30 s, connect
    retry 5 s. Families come from the enabled `afiSafis` (default: the neighbour address's
    family). ADD-PATH send_max is the largest `addPaths.config.sendMax`; a central speaker
    without one uses DEFAULT_CENTRAL_SEND_MAX.
    """
    name = _name(bgppeer)
    spec = _mapping(bgppeer.get("spec"))
    conf = _mapping(spec.get("conf"))
    address_text = conf.get("neighborAddress")
    try:
        neighbor = ipaddress.ip_address(str(address_text or "").strip())
    except ValueError:
        raise ModelError(
            "BgpPeer", name, "spec.conf.neighborAddress", address_text, "must be an IP address"
        ) from None
    peer_asn = _int_field(conf.get("peerAs"), "BgpPeer", name, "spec.conf.peerAs", (1, 4294967295))
    if peer_asn is None:
        raise ModelError("BgpPeer", name, "spec.conf.peerAs", None, "is required")
    local_asn = _int_field(
        conf.get("localAs"), "BgpPeer", name, "spec.conf.localAs", (0, 4294967295)
    )
    families, send_max = _families(spec, name, neighbor)
    if mode == "central" and not send_max:
        send_max = DEFAULT_CENTRAL_SEND_MAX
    timers = _mapping(_mapping(spec.get("timers")).get("config"))
    hold = _int_field(
        timers.get("holdTime"), "BgpPeer", name, "spec.timers.config.holdTime", (3, 65535)
    )
    keepalive = _int_field(
        timers.get("keepaliveInterval"),
        "BgpPeer",
        name,
        "spec.timers.config.keepaliveInterval",
        (1, 21845),
    )
    connect_retry = _int_field(
        timers.get("connectRetry"), "BgpPeer", name, "spec.timers.config.connectRetry", (1, 65535)
    )
    transport = _mapping(spec.get("transport"))
    port = _int_field(
        transport.get("remotePort"), "BgpPeer", name, "spec.transport.remotePort", (1, 65535)
    )
    multihop = _mapping(spec.get("ebgpMultihop"))
    ttl = 0
    if multihop.get("enabled") is True:
        ttl = (
            _int_field(
                multihop.get("multihopTtl"),
                "BgpPeer",
                name,
                "spec.ebgpMultihop.multihopTtl",
                (1, 255),
            )
            or 255
        )
    selector = LabelSelector.from_dict(_mapping(spec.get("nodeSelector")), name=name)
    config = PeerConfig(
        neighbor_address=str(neighbor),
        peer_asn=peer_asn,
        port=port or 179,
        local_asn=local_asn or 0,
        passive=transport.get("passiveMode") is True,
        auth_password=_password(conf, name, secrets, secret_namespace),
        ebgp_multihop_ttl=ttl,
        hold_time=hold or DEFAULT_HOLD_TIME,
        keepalive=keepalive or (hold // 3 if hold else DEFAULT_KEEPALIVE),
        connect_retry=connect_retry or DEFAULT_CONNECT_RETRY,
        families=families,
        add_paths_send_max=send_max,
        graceful_restart=_graceful_restart(
            spec, "BgpPeer", name, "spec.gracefulRestart", hold or DEFAULT_HOLD_TIME
        ),
    )
    return PeerSpec(name=name, peer=Peer(name, selector), config=config)


def plain_text_password_peers(bgppeers: Iterable[Obj]) -> list[str]:
    """Names of the BgpPeers whose password is Porter's plain-text `spec.conf.authPassword`
    (no Secret reference): still honoured, for Porter's manifests, but warned about."""
    return sorted(
        _name(obj)
        for obj in bgppeers
        if not _being_deleted(obj)
        and _mapping(_mapping(obj.get("spec")).get("conf")).get("authPassword")
        and _mapping(_mapping(obj.get("spec")).get("conf")).get("authPasswordSecretRef") is None
    )


def usable_peer_specs(
    bgppeers: Iterable[Obj],
    secrets: Mapping[str, Obj],
    *,
    mode: Mode = "node",
    secret_namespace: str = "porter-lb-system",
) -> tuple[list[PeerSpec], list[tuple[Obj, str, str]]]:
    """The BgpPeers a speaker uses, by name, one per neighbour address; and the rejected ones
    as (BgpPeer, Event reason, message). BgpPeers being deleted are neither.

    Reasons: `InvalidBgpPeer` (unreadable, or its Secret is missing), `DuplicateNeighbor`
    (an earlier BgpPeer by name already peers with that address).
    """
    specs: list[PeerSpec] = []
    rejected: list[tuple[Obj, str, str]] = []
    by_address: dict[str, str] = {}
    for obj in sorted(bgppeers, key=_name):
        name = _name(obj)
        if _being_deleted(obj):
            continue
        try:
            spec = peer_spec_from_bgppeer(
                obj, secrets, mode=mode, secret_namespace=secret_namespace
            )
        except ModelError as error:
            rejected.append((obj, "InvalidBgpPeer", str(error)))
            continue
        address = spec.config.neighbor_address
        if address in by_address:
            rejected.append(
                (
                    obj,
                    "DuplicateNeighbor",
                    f"BgpPeer '{name}': spec.conf.neighborAddress '{address}': "
                    f"BgpPeer '{by_address[address]}' already peers with it; ignored",
                )
            )
            continue
        by_address[address] = name
        specs.append(spec)
    return specs, rejected


def peer_delta(
    wanted: Mapping[str, PeerConfig], configured: Mapping[str, PeerConfig]
) -> tuple[list[PeerConfig], list[PeerConfig], list[str]]:
    """(to add, to update, addresses to delete) turning gobgpd's peers into the wanted ones.

    Both are keyed by neighbour address. A peer whose configuration is unchanged is left
    alone: UpdatePeer can reset a session.
    """
    add = [wanted[a] for a in sorted(wanted.keys() - configured.keys())]
    update = [
        wanted[a] for a in sorted(wanted.keys() & configured.keys()) if wanted[a] != configured[a]
    ]
    delete = sorted(configured.keys() - wanted.keys())
    return add, update, delete


def peer_status_entry(status: PeerStatus | None, config: PeerConfig) -> dict[str, Any]:
    """One `status.nodesPeerStatus` value (Porter's shape, the fields that change rarely).

    `sessionState` uses GoBGP's names (ESTABLISHED, ACTIVE, IDLE, ...); UNKNOWN while gobgpd
    does not list the peer. Counters and timestamps are left out on purpose: a status write
    per UPDATE message would load the API server for nothing (see the metrics instead).
    """
    state = status.session_state.upper() if status else "UNKNOWN"
    return {
        "peerState": {
            "neighborAddress": config.neighbor_address,
            "peerAs": config.peer_asn,
            "sessionState": state,
        }
    }


# --- pure: routes -------------------------------------------------------------------------------


def bgp_pools(eips: Iterable[Obj]) -> tuple[list[AddressPool], list[tuple[Obj, ModelError]]]:
    """Address blocks of the Eips announced over BGP: those with protocol bgp that own their
    addresses (`validation.effective_pools`: not being deleted, readable, not the loser of a
    conflict with an older Eip). A disabled Eip gives no new IPs but the ones given out stay,
    so it is still announced. Returns the blocks and the Eips that could not be read, with why.
    """
    listed = list(eips)
    owners = effective_pools(listed).pools
    errors: list[tuple[Obj, ModelError]] = []
    for eip in listed:
        if _being_deleted(eip):
            continue
        try:
            pool_from_eip(eip)
        except ModelError as error:
            errors.append((eip, error))
    return [p.addresses for p in owners.values() if p.protocol == "bgp"], errors


def announced_ips(ips: Iterable[str], pools: Sequence[AddressPool]) -> tuple[str, ...]:
    """The IPs that lie inside one of `pools` (the others are not porter-lb's to announce)."""
    return tuple(ip for ip in ips if any(ip in pool for pool in pools))


def service_next_hops(
    traffic: ServiceTraffic,
    endpoints: Iterable[Endpoint],
    nodes: Mapping[str, Node],
    selected: frozenset[str],
) -> dict[str, frozenset[str]]:
    """One Service's share of the desired routes: host prefix -> next-hop node names.

    The nodes are the Service's eligible nodes (`routes.eligible_nodes`) among `selected`,
    the nodes some BgpPeer's nodeSelector picks (a node speaker: its own node, if picked).
    `traffic.ips` must already be reduced to announced IPs. No node: no entry.
    """
    hops = eligible_nodes(traffic, endpoints, nodes) & selected
    if not hops:
        return {}
    return {host_prefix(ip, traffic.key): hops for ip in traffic.ips}


def service_share(
    service: Obj,
    endpoint_slices: Callable[[], Iterable[Obj]],
    *,
    nodes: Mapping[str, Node],
    pools: Sequence[AddressPool],
    selected: frozenset[str],
    class_name: str = LOAD_BALANCER_CLASS,
) -> dict[str, frozenset[str]]:
    """One Service object's share of the desired routes (`service_next_hops`), from the objects.

    Only a Service porter-lb implements (`selects_porter`) has a share; only its IPs inside
    `pools` (the BGP Eips, `bgp_pools`) are announced. `endpoint_slices` is called only for
    `externalTrafficPolicy: Local`, to give the Service's EndpointSlices. Raises ModelError
    for an unreadable Service.
    """
    if not selects_porter(service, class_name) or not selected:
        return {}
    traffic = traffic_from_service(service)
    ips = announced_ips(traffic.ips, pools)
    if not ips:
        return {}
    traffic = ServiceTraffic(traffic.key, traffic.external_traffic_policy, ips)
    endpoints: list[Endpoint] = []
    if traffic.external_traffic_policy == "Local":
        for endpoint_slice in endpoint_slices():
            endpoints.extend(endpoints_from_slice(endpoint_slice))
    return service_next_hops(traffic, endpoints, nodes, selected)


@dataclass
class RouteTable:
    """The desired next-hop nodes of every prefix, kept per Service so that one Service can
    be recomputed alone; Services sharing an IP contribute the union of their nodes."""

    by_service: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    by_prefix: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)

    def set_service(self, key: str, next_hops: Mapping[str, frozenset[str]]) -> set[str]:
        """Replace Service `key`'s share; return the prefixes whose node set may have changed."""
        old = self.by_service.pop(key, {})
        changed = set()
        for prefix, nodes in old.items():
            if next_hops.get(prefix) != nodes:
                contributors = self.by_prefix[prefix]
                del contributors[key]
                if not contributors:
                    del self.by_prefix[prefix]
                changed.add(prefix)
        for prefix, nodes in next_hops.items():
            if old.get(prefix) != nodes:
                self.by_prefix.setdefault(prefix, {})[key] = nodes
                changed.add(prefix)
        if next_hops:
            self.by_service[key] = dict(next_hops)
        return changed

    def nodes(self, prefix: str) -> frozenset[str]:
        contributors = self.by_prefix.get(prefix)
        if not contributors:
            return frozenset()
        if len(contributors) == 1:
            return next(iter(contributors.values()))
        return frozenset().union(*contributors.values())

    def prefixes(self) -> set[str]:
        return set(self.by_prefix)

    def as_dict(self) -> dict[str, frozenset[str]]:
        return {prefix: self.nodes(prefix) for prefix in sorted(self.by_prefix)}


def node_rib(table: RouteTable, prefixes: Iterable[str], node_name: str) -> dict[str, set[Route]]:
    """A node speaker's desired paths for `prefixes`: next hop self where the node is a hop."""
    rib: dict[str, set[Route]] = {}
    for prefix in prefixes:
        if node_name in table.nodes(prefix):
            version = ipaddress.ip_network(prefix).version
            rib[prefix] = {Route(prefix, _NEXT_HOP_SELF[version])}
    return rib


def central_rib(
    table: RouteTable, prefixes: Iterable[str], node_addresses: Mapping[str, Sequence[str]]
) -> dict[str, set[Route]]:
    """A central speaker's desired paths for `prefixes`: one per next-hop node, with the
    node's address as next hop and its ADD-PATH path identifier (`routes.central_paths`)."""
    desired = {p: nodes for p in prefixes if (nodes := table.nodes(p))}
    rib: dict[str, set[Route]] = {}
    for path in central_paths(desired, node_addresses):
        rib.setdefault(path.prefix, set()).add(Route(path.prefix, path.next_hop, path.identifier))
    return rib


def rib_delta(
    held: Mapping[str, set[Route]],
    desired: Mapping[str, set[Route]],
    prefixes: Iterable[str] | None = None,
) -> tuple[list[Route], list[Route]]:
    """(paths to add, paths to withdraw) turning `held` into `desired` for `prefixes` (all if
    None). Paths in both are left alone: a route that stays is never withdrawn.

    gobgpd tells paths apart by prefix and path identifier, not by next hop: a path whose next
    hop changes under the same identifier is replaced by adding it, and its old version must
    NOT be withdrawn (that would withdraw the new one). Add before withdrawing, so a prefix
    moving between nodes is never absent.
    """
    keys = set(held) | set(desired) if prefixes is None else set(prefixes)
    add: list[Route] = []
    withdraw: list[Route] = []
    for prefix in keys:
        have = held.get(prefix, set())
        want = desired.get(prefix, set())
        if have == want:
            continue
        add.extend(want - have)
        kept_ids = {route.identifier for route in want}
        withdraw.extend(route for route in have - want if route.identifier not in kept_ids)
    order = lambda r: (r.prefix, r.identifier, r.next_hop)  # noqa: E731
    return sorted(add, key=order), sorted(withdraw, key=order)


def retry_delay(previous: float, ceiling: float) -> float:
    """The next wait of an exponential back-off: 0.2 s first, then doubling, at most
    `ceiling` (GOBGP_RETRY_MAX while gobgpd fails, OTHER_RETRY_MAX otherwise)."""
    return min(max(previous * 2, 0.2), ceiling)


# --- shell ----------------------------------------------------------------------------------


def _node_model(obj: Obj | None) -> Node | None:
    if obj is None:
        return None
    try:
        return node_from_object(obj)
    except ModelError:
        return None


def _peer_fingerprint(obj: Obj | None) -> object:
    """What of a BgpPeer matters to a speaker: not its status, which the speaker writes."""
    if obj is None:
        return None
    metadata = _mapping(obj.get("metadata"))
    return (obj.get("spec"), metadata.get("deletionTimestamp"), metadata.get("uid"))


class Speaker:
    """Keeps one gobgpd in step with the cluster (see the module docstring).

    Create it before the informers start, or at least before `run`: it subscribes to them in
    `__init__`. `run(stop)` blocks until `stop` is set; it waits for the caches to sync, then
    reconciles on every change. It never stops or empties gobgpd on the way out, unless
    `withdraw_on_stop` is set: the routes stay announced until gobgpd itself goes away.

    `accept_prefixes` (node mode; the agent's host rules) is called with the prefixes the
    node must accept: before paths are added, with the ones announced and about to be; after
    paths are withdrawn, with the ones still announced. What it raises fails the reconcile,
    which is retried, so nothing is announced that the node does not accept.
    """

    def __init__(
        self,
        informers: Informers,
        gobgp: GoBGP,
        api: KubeAPI,
        recorder: EventRecorder | None = None,
        *,
        mode: Mode = "node",
        node_name: str = "",
        status_key: str = "",
        default_router_id: str = "",
        secret_namespace: str = "porter-lb-system",
        poll_interval: float = 1.0,
        resync_interval: float = 300.0,
        withdraw_on_stop: bool = False,
        class_name: str = LOAD_BALANCER_CLASS,
        accept_prefixes: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        if mode == "node" and not node_name:
            raise ValueError("a node speaker needs its node's name")
        self.informers = informers
        self.gobgp = gobgp
        self.api = api
        self.recorder = recorder
        self.mode: Mode = mode
        self.node_name = node_name
        self.status_key = status_key or (node_name if mode == "node" else CENTRAL_STATUS_KEY)
        self.default_router_id = default_router_id
        self.secret_namespace = secret_namespace
        self.poll_interval = poll_interval
        self.resync_interval = resync_interval
        self.withdraw_on_stop = withdraw_on_stop
        self.class_name = class_name
        self.accept_prefixes = accept_prefixes

        self._cond = threading.Condition()
        self._full = True
        self._services: set[str] = set()
        self._slices: dict[str, set[str]] = {}  # Service key -> its EndpointSlice keys
        self._slice_owner: dict[str, str] = {}  # EndpointSlice key -> Service key

        # Worker state, rebuilt by every full reconcile.
        self._table = RouteTable()
        self._nodes: dict[str, Node] = {}
        self._pools: list[AddressPool] = []
        self._selected: frozenset[str] = frozenset()
        self._peers: list[PeerSpec] = []  # the valid BgpPeers that apply to this speaker
        self._global: GlobalConfig | None = None  # what this process started gobgpd with
        self._held: dict[str, set[Route]] | None = None  # None: read it from gobgpd first
        self._fresh_instance = False  # started by us, its peers not yet configured
        self._warnings = Warnings(recorder, log)
        self._plain_warned: set[str] = set()  # BgpPeers warned about a plain-text password
        self.reconciles = 0  # full + incremental, for tests and logs
        # For the process's health checks (porter_lb.telemetry.health): the loop beats each time
        # round;
        # `problem` says why the last pass failed (None once one succeeded, and since).
        self.heartbeat: Heartbeat | None = None
        self.problem: str | None = "not reconciled yet"

        for kind, handler in (
            ("Service", self._on_service),
            ("EndpointSlice", self._on_slice),
            ("Node", self._on_node),
            ("Eip", self._on_full),
            ("BgpConf", self._on_full),
            ("BgpPeer", self._on_bgppeer),
            ("Secret", self._on_full),
        ):
            informers.subscribe(kind, handler)

    # Handlers run on watch threads: look at the change, mark work, return.

    def _wake(self) -> None:
        self._cond.notify()

    def _on_full(self, _key: str, _old: Obj | None, _new: Obj | None) -> None:
        with self._cond:
            self._full = True
            self._wake()

    def _on_bgppeer(self, key: str, old: Obj | None, new: Obj | None) -> None:
        if _peer_fingerprint(old) != _peer_fingerprint(new):
            self._on_full(key, old, new)

    def _on_node(self, key: str, old: Obj | None, new: Obj | None) -> None:
        before, after = _node_model(old), _node_model(new)
        if (
            before is not None
            and after is not None
            and (before.ready, dict(before.labels), before.addresses)
            == (after.ready, dict(after.labels), after.addresses)
        ):
            return  # a heartbeat or a condition porter-lb does not read
        self._on_full(key, old, new)

    def _on_service(self, key: str, old: Obj | None, new: Obj | None) -> None:
        if not (old is not None and selects_porter(old, self.class_name)) and not (
            new is not None and selects_porter(new, self.class_name)
        ):
            return
        with self._cond:
            self._services.add(key)
            self._wake()

    def _on_slice(self, key: str, old: Obj | None, new: Obj | None) -> None:
        service = slice_service_key(new) if new is not None else ""
        with self._cond:
            previous = self._slice_owner.pop(key, "")
            if previous:
                self._slices.get(previous, set()).discard(key)
                self._services.add(previous)
            if service:
                self._slice_owner[key] = service
                self._slices.setdefault(service, set()).add(key)
                self._services.add(service)
            self._wake()

    # The worker.

    def run(self, stop: threading.Event) -> None:
        """Reconcile until `stop` is set (see the class docstring)."""
        while not self.informers.wait_synced(1.0):
            if stop.is_set():
                return
        log.info(
            "speaker started",
            extra={"mode": self.mode, "node": self.node_name, "gobgp": self.gobgp.target},
        )
        backoff = 0.0
        next_poll = 0.0
        next_resync = time.monotonic() + self.resync_interval
        while not stop.is_set():
            if self.heartbeat is not None:
                self.heartbeat.beat()
            with self._cond:
                if not (self._full or self._services):
                    self._cond.wait(max(0.0, min(next_poll - time.monotonic(), 1.0)))
                full, services = self._full, self._services
                self._full, self._services = False, set()
            try:
                if full:
                    self.reconcile_all()
                elif services:
                    self.reconcile_services(services)
                if time.monotonic() >= next_poll:
                    self.poll()
                    next_poll = time.monotonic() + self.poll_interval
                if time.monotonic() >= next_resync:
                    self.resync()
                    next_resync = time.monotonic() + self.resync_interval
                backoff = 0.0
                self.problem = None
            except GoBGPError as error:
                self.problem = f"gobgpd at {self.gobgp.target}: {error}"
                backoff = retry_delay(backoff, GOBGP_RETRY_MAX)
                log.warning("gobgpd: %s; retrying in %.1fs", error, backoff)
                with self._cond:
                    self._full = True
                self._held = None
                stop.wait(backoff)
            except Exception as error:
                self.problem = f"reconcile failed: {error}"
                backoff = retry_delay(backoff, OTHER_RETRY_MAX)
                log.exception("speaker reconcile failed; retrying in %.1fs", backoff)
                with self._cond:
                    self._full = True
                stop.wait(backoff)
        self._stopped()

    def _stopped(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.withdraw_on_stop:
            self.withdraw_all()
        log.info("speaker stopped")

    def resync(self) -> None:
        """Forget what gobgpd is believed to hold: the next reconcile reads it (ListPath)."""
        self._held = None
        with self._cond:
            self._full = True
            self._wake()

    def withdraw_all(self) -> None:
        """Withdraw every path porter-lb added (named, one by one in one stream)."""
        try:
            held = self.gobgp.local_routes()
            if held:
                self.gobgp.withdraw_routes(held)
            log.info("withdrew %d paths", len(held))
        except GoBGPError as error:
            log.warning("could not withdraw paths: %s", error)
            return
        if self.accept_prefixes is not None:
            self.accept_prefixes(frozenset())

    # Reconciling.

    def _warn(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        self._warnings.warn(obj, kind, reason, message)

    def _clear_warning(self, kind: str, name: str) -> None:
        self._warnings.clear(kind, name)

    def _read_nodes(self) -> dict[str, Node]:
        nodes = {}
        for obj in self.informers.items("Node"):
            try:
                node = node_from_object(obj)
            except ModelError as error:
                self._warn(obj, "Node", "InvalidNode", str(error))
                continue
            nodes[node.name] = node
        return nodes

    def _read_peers(self) -> list[PeerSpec]:
        """The valid BgpPeers (Warning Events for the others), one per neighbour address."""
        specs, rejected = usable_peer_specs(
            self.informers.items("BgpPeer"),
            {_name(s): s for s in self.informers.items("Secret")},
            mode=self.mode,
            secret_namespace=self.secret_namespace,
        )
        for obj, reason, message in rejected:
            self._warn(obj, "BgpPeer", reason, message)
        for spec in specs:
            self._clear_warning("BgpPeer", spec.name)
        plain = set(plain_text_password_peers(self.informers.items("BgpPeer")))
        for name in sorted(plain - self._plain_warned):
            peer = self.informers.get("BgpPeer", name)
            if peer is not None and self.recorder is not None:
                message = (
                    f"BgpPeer '{name}': spec.conf.authPassword holds the BGP password in plain "
                    "text, readable by anyone who may read BgpPeers: put it in a Secret in "
                    f"{self.secret_namespace!r} and name it in "
                    "spec.conf.authPasswordSecretRef"
                )
                log.warning("%s", message, extra={"kind": "BgpPeer"})
                self.recorder.warning(
                    {**peer, "kind": "BgpPeer", "apiVersion": API_VERSIONS["BgpPeer"]},
                    "PlainTextPassword",
                    message,
                )
        self._plain_warned = plain
        return specs

    def _applies(self, spec: PeerSpec, nodes: Mapping[str, Node]) -> bool:
        if self.mode == "central":
            return True
        node = nodes.get(self.node_name)
        return node is not None and spec.peer.node_selector.matches(node.labels)

    def _wanted_global(self, nodes: Mapping[str, Node]) -> GlobalConfig | None:
        conf = choose_bgpconf(self.informers.items("BgpConf"))
        if conf is None:
            return None
        node = nodes.get(self.node_name) if self.mode == "node" else None
        try:
            wanted = global_config_from_bgpconf(conf, node, self.default_router_id)
        except ModelError as error:
            self._warn(conf, "BgpConf", "InvalidBgpConf", str(error))
            raise
        self._clear_warning("BgpConf", _name(conf))
        return wanted

    def _ensure_instance(self, wanted: GlobalConfig | None) -> bool:
        """Make gobgpd run the wanted instance; True when it does.

        No BgpConf: the instance is stopped (nothing is to be announced). A changed ASN,
        router ID or listen setting restarts it, which drops its sessions and RIB; the
        caller then re-programs everything.
        """
        running = self.gobgp.running_global()
        if wanted is None:
            if running is not None:
                log.info("no BgpConf: stopping the BGP instance")
                self.gobgp.stop_bgp()
            self._global = None
            self._held = {}
            return False
        if running is not None and (
            global_differs(running, wanted) or (self._global is not None and self._global != wanted)
        ):
            log.info(
                "BGP instance changed: restarting it",
                extra={"asn": wanted.asn, "router_id": wanted.router_id},
            )
            self.gobgp.stop_bgp()
            running = None
        if running is None:
            self.gobgp.start_global(wanted)
            log.info(
                "BGP instance started", extra={"asn": wanted.asn, "router_id": wanted.router_id}
            )
            self._held = {}
            self._fresh_instance = True
        self._global = wanted
        if self._held is None:
            self._held = self._read_held()
        return True

    def _read_held(self) -> dict[str, set[Route]]:
        held: dict[str, set[Route]] = {}
        for route in self.gobgp.local_routes():
            held.setdefault(route.prefix, set()).add(route)
        return held

    def _reconcile_peers(self, specs: Sequence[PeerSpec], *, restarting: bool = False) -> None:
        """Bring gobgpd's peers to the BgpPeers that apply here; `restarting`: peers are added
        as to a restarting speaker's (graceful restart, see GoBGP.add_peer_config)."""
        if self._global is None:
            return
        # gobgpd reports an unset local ASN as the instance's: compare (and send) it that way.
        asn = self._global.asn
        wanted = {
            s.config.neighbor_address: (
                s.config if s.config.local_asn else dataclasses.replace(s.config, local_asn=asn)
            )
            for s in specs
            if self._applies(s, self._nodes)
        }
        by_address = {s.config.neighbor_address: s for s in specs}
        add, update, delete = peer_delta(wanted, self.gobgp.peer_configs())
        for address in delete:
            log.info("deleting peer", extra={"neighbor": address})
            self.gobgp.delete_peer(address)
        for config, adding in [(c, False) for c in update] + [(c, True) for c in add]:
            spec = by_address[config.neighbor_address]
            log.info(
                "adding peer" if adding else "updating peer",
                extra={"bgppeer": spec.name, "neighbor": config.neighbor_address},
            )
            try:
                if adding:
                    self.gobgp.add_peer_config(config, restarting=restarting)
                else:
                    self.gobgp.update_peer(config)
            except GoBGPError as error:
                # Rejected (or gobgpd went away: then the next call fails and says so).
                obj = self.informers.get("BgpPeer", spec.name) or {"metadata": {"name": spec.name}}
                self._warn(obj, "BgpPeer", "PeerRejected", f"BgpPeer '{spec.name}': {error}")
                wanted.pop(config.neighbor_address)
        self._peers = [s for s in specs if s.config.neighbor_address in wanted]

    def _service_share(self, key: str) -> dict[str, frozenset[str]]:
        obj = self.informers.get("Service", key)
        if obj is None or not selects_porter(obj, self.class_name) or not self._selected:
            return {}

        def endpoint_slices() -> list[Obj]:
            with self._cond:
                slice_keys = list(self._slices.get(key, ()))
            found = (self.informers.get("EndpointSlice", k) for k in slice_keys)
            return [s for s in found if s is not None]

        try:
            return service_share(
                obj,
                endpoint_slices,
                nodes=self._nodes,
                pools=self._pools,
                selected=self._selected,
                class_name=self.class_name,
            )
        except ModelError as error:
            self._warn(obj, "Service", "InvalidService", str(error))
            return {}

    def _desired_rib(self, prefixes: Iterable[str]) -> dict[str, set[Route]]:
        if self.mode == "node":
            return node_rib(self._table, prefixes, self.node_name)
        return central_rib(
            self._table, prefixes, {name: node.addresses for name, node in self._nodes.items()}
        )

    def _apply(self, desired: Mapping[str, set[Route]], prefixes: Iterable[str] | None) -> None:
        assert self._held is not None
        add, withdraw = rib_delta(self._held, desired, prefixes)
        if add and self.accept_prefixes is not None:
            self.accept_prefixes(frozenset(self._held) | {route.prefix for route in add})
        if add:
            self.gobgp.add_routes(add)
        if withdraw:
            self.gobgp.withdraw_routes(withdraw)
        keys = set(self._held) | set(desired) if prefixes is None else set(prefixes)
        for prefix in keys:
            if desired.get(prefix):
                self._held[prefix] = set(desired[prefix])
            else:
                self._held.pop(prefix, None)
        if add or withdraw:
            log.debug("RIB updated", extra={"added": len(add), "withdrawn": len(withdraw)})
        if self.accept_prefixes is not None:
            self.accept_prefixes(frozenset(self._held))

    def _rebuild_table(self) -> None:
        """The nodes `self._peers` select, the EndpointSlice index and the whole RouteTable,
        from the caches."""
        nodes = self._nodes
        if self.mode == "node":
            self._selected = (
                frozenset({self.node_name})
                if self._peers and self.node_name in nodes
                else frozenset()
            )
        else:
            self._selected = frozenset(
                name
                for name, node in nodes.items()
                if any(s.peer.node_selector.matches(node.labels) for s in self._peers)
            )
        with self._cond:
            # Rebuild the EndpointSlice index from the cache too: handlers subscribed after
            # the informers started have missed the first objects.
            self._slices, self._slice_owner = {}, {}
            for obj in self.informers.items("EndpointSlice"):
                service = slice_service_key(obj)
                if service:
                    key = object_key(obj)
                    self._slice_owner[key] = service
                    self._slices.setdefault(service, set()).add(key)
        table = RouteTable()
        for obj in self.informers.items("Service"):
            if selects_porter(obj, self.class_name):
                key = object_key(obj)
                share = self._service_share(key)
                if share:
                    table.set_service(key, share)
        self._table = table

    def reconcile_all(self) -> None:
        """Recompute everything from the caches and bring gobgpd to it."""
        started = time.monotonic()
        nodes = self._read_nodes()
        self._nodes = nodes
        pools, errors = bgp_pools(self.informers.items("Eip"))
        for eip, error in errors:
            self._warn(eip, "Eip", "InvalidEip", str(error))
        self._pools = pools
        try:
            wanted = self._wanted_global(nodes)
        except ModelError:
            return  # keep whatever runs; the Warning says why
        specs = self._read_peers()
        if not self._ensure_instance(wanted):
            self._peers = []
            self._table = RouteTable()
            if self.accept_prefixes is not None:
                self.accept_prefixes(frozenset())  # the stopped instance announces nothing
            return
        fresh = self._fresh_instance
        if fresh:
            # A new instance (gobgpd restarted, or its first start) gets its paths before any
            # peer: a session's first UPDATEs, and the End-of-RIB after them, then carry the
            # whole RIB. A graceful-restart helper drops every stale route that End-of-RIB
            # did not refresh, so a partial first RIB would take next hops away.
            self._peers = [s for s in specs if self._applies(s, nodes)]
        else:
            self._reconcile_peers(specs)
        self._rebuild_table()
        self._apply(self._desired_rib(self._table.prefixes()), None)
        if fresh:
            intended = {s.name for s in self._peers}
            self._reconcile_peers(specs, restarting=True)
            self._fresh_instance = False
            if {s.name for s in self._peers} != intended:
                with self._cond:
                    self._full = True  # gobgpd refused a peer: recompute without it
        self.reconciles += 1
        metrics.RECONCILE_SECONDS.labels("speaker").observe(time.monotonic() - started)
        log.info(
            "full reconcile",
            extra={
                "prefixes": len(self._held or {}),
                "peers": len(self._peers),
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def reconcile_services(self, keys: Iterable[str]) -> None:
        """Recompute the given Services only and apply the delta of their prefixes."""
        if self._global is None or self._held is None:
            return
        started = time.monotonic()
        changed: set[str] = set()
        for key in keys:
            changed |= self._table.set_service(key, self._service_share(key))
        if changed:
            self._apply(self._desired_rib(changed), changed)
        self.reconciles += 1
        metrics.RECONCILE_SECONDS.labels("speaker").observe(time.monotonic() - started)

    def poll(self) -> None:
        """Notice a restarted gobgpd; report sessions in BgpPeer status and the gauges."""
        if self._global is not None and self.gobgp.running_asn() == 0:
            log.warning("gobgpd lost its BGP instance (restarted?): re-programming it")
            self.resync()
            return
        statuses = {p.neighbor_address: p for p in self.gobgp.peers()} if self._global else {}
        advertised = sum(len(routes) for routes in (self._held or {}).values())
        mine = set()
        for spec in self._peers:
            mine.add(spec.name)
            status = statuses.get(spec.config.neighbor_address)
            labels = (spec.name, self.status_key)
            up = status is not None and status.session_state == "established"
            metrics.BGP_SESSION_UP.labels(*labels).set(1 if up else 0)
            metrics.ADVERTISED_PREFIXES.labels(*labels).set(advertised if up else 0)
            self._write_status(spec.name, peer_status_entry(status, spec.config))
        for obj in self.informers.items("BgpPeer"):
            name = _name(obj)
            if name in mine:
                continue
            for gauge in (metrics.BGP_SESSION_UP, metrics.ADVERTISED_PREFIXES):
                with contextlib.suppress(KeyError):
                    gauge.remove(name, self.status_key)
            self._write_status(name, None)

    def _write_status(self, name: str, entry: dict[str, Any] | None) -> None:
        """Merge-patch this speaker's entry of `status.nodesPeerStatus`, only if it changed."""
        obj = self.informers.get("BgpPeer", name)
        if obj is None or _being_deleted(obj):
            return
        current = _mapping(_mapping(obj.get("status")).get("nodesPeerStatus")).get(self.status_key)
        if current == entry:
            return
        try:
            self.api.merge_patch(
                f"{GROUP_PATH}/bgppeers/{name}/status",
                {"status": {"nodesPeerStatus": {self.status_key: entry}}},
            )
        except KubeError as error:
            if error.status != 404:
                log.warning("could not write BgpPeer %s status: %s", name, error)
