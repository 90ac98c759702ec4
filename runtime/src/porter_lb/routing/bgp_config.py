"""What one gobgpd's BGP instance and peers must be, from BgpConf, BgpPeer and their Secrets.

Pure, table-tested: the plain values gobgpd is configured with (`GlobalConfig`, `PeerConfig`,
`GracefulRestart`) and reports back (`PeerStatus`), and the functions that derive them from the
custom resources. The speaker (`porter_lb.routing.speaker`) applies them through the GoBGP
adapter (`porter_lb.routing.gobgp`), which translates them into gRPC messages and decides nothing.

GoBGP 3 renamed fields that Porter/OpenELB CRDs still spell the v2 way (`as` -> `asn`,
`peer_as` -> `peer_asn`): these values carry the explicit numbers, never CR JSON.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from porter_lb.model.resources import (
    ModelError,
    Node,
    Obj,
    as_mapping,
    being_deleted,
    object_name,
)
from porter_lb.routing.routes import LabelSelector, Peer, Route, first_of_family

Mode = Literal["node", "central"]
"""How gobgpd speakers are deployed: one per node (next hop self), or one central."""

DEFAULT_BGPCONF_NAME = "default"
"""The BgpConf porter-lb uses (Porter's name); otherwise the first by name."""

DEFAULT_CENTRAL_SEND_MAX = 255
"""ADD-PATH send_max of a central speaker's peers when the BgpPeer gives none: the protocol's
most. Not the number of nodes: a value that followed the node count would change the peer's
configuration, and so reset its session, every time a node joined."""

DEFAULT_HOLD_TIME = 90
DEFAULT_KEEPALIVE = 30
DEFAULT_CONNECT_RETRY = 5  # GoBGP's own default, 120 s, leaves a peer down long after a restart


@dataclass(frozen=True)
class PeerStatus:
    neighbor_address: str
    peer_asn: int
    session_state: str  # "established", "active", "idle", ...
    received_prefixes: int = 0
    bfd_state: str = ""  # "up", "down", "init", "admin_down"; "" without BFD


class GobgpdClient(Protocol):
    """What a speaker asks of its gobgpd (`routing.gobgp.GoBGP` is the real one, over gRPC;
    `porter_lab.memory.MemoryGobgpd` the in-memory one of the unit tests)."""

    target: str

    def running_global(self) -> GlobalConfig | None: ...
    def running_asn(self) -> int: ...
    def start_global(self, config: GlobalConfig) -> None: ...
    def stop_bgp(self, *, allow_graceful_restart: bool = False) -> None: ...
    def peer_configs(self) -> dict[str, PeerConfig]: ...
    def peers(self) -> list[PeerStatus]: ...
    def add_peer_config(self, config: PeerConfig, *, restarting: bool = False) -> None: ...
    def update_peer(self, config: PeerConfig, previous: PeerConfig | None = None) -> None: ...
    def delete_peer(self, neighbor_address: str) -> None: ...
    def local_routes(self) -> list[Route]: ...
    def add_routes(self, routes: Iterable[Route], batch: int = 1000) -> int: ...
    def withdraw_routes(self, routes: Iterable[Route], batch: int = 1000) -> int: ...
    def set_export_filters(self, filters: tuple[PeerExport, ...] | None) -> None: ...
    def close(self) -> None: ...


DEFAULT_DEFERRAL_TIME = 360
"""gobgpd's own default Selection_Deferral_Timer (RFC 4724 4.1), in seconds."""


@dataclass(frozen=True)
class GracefulRestart:
    """RFC 4724 graceful restart: peers keep our routes `restart_time` s while we restart.

    Give a peer's values in full, as gobgpd reports them back: gobgpd fills a 0 restart time
    (with the hold time) and deferral time (360 s) itself, and a PeerConfig that differs from
    what ListPeer reports makes the speaker call UpdatePeer, which resets the session when the
    graceful-restart settings differ. `deferral_time` bounds how long a restarting gobgpd
    waits for a peer's End-of-RIB before sending its own routes."""

    enabled: bool = False
    restart_time: int = 0  # seconds; 0 lets gobgpd choose (the hold time)
    deferral_time: int = DEFAULT_DEFERRAL_TIME
    helper_only: bool = False  # receive peers' restarts, never announce our own (peers only)
    notification_enabled: bool = False  # RFC 8538: GR also after a NOTIFICATION (peers only)


@dataclass(frozen=True)
class GlobalConfig:
    """The BGP instance: what StartBgp takes. `listen_port=-1` makes gobgpd only connect out."""

    asn: int
    router_id: str
    listen_port: int = 179
    listen_addresses: tuple[str, ...] = ()
    graceful_restart: GracefulRestart = field(default_factory=GracefulRestart)
    use_multiple_paths: bool = False  # ECMP among received paths (porter-lb receives none)


DEFAULT_BFD_INTERVAL_MS = 300
DEFAULT_BFD_MULTIPLIER = 3


@dataclass(frozen=True)
class Bfd:
    """RFC 5880/5881 single-hop BFD with a neighbour (gobgpd's own, UDP port 3784): a session
    down after `receive_interval` times `detect_multiplier` ms without a packet resets the BGP
    session at once. Intervals in milliseconds; all fields at their defaults when disabled, so
    that what gobgpd reports back compares equal."""

    enabled: bool = False
    transmit_interval: int = DEFAULT_BFD_INTERVAL_MS
    receive_interval: int = DEFAULT_BFD_INTERVAL_MS
    detect_multiplier: int = DEFAULT_BFD_MULTIPLIER


@dataclass(frozen=True)
class PeerConfig:
    """One BGP neighbour as gobgpd is told about it (AddPeer/UpdatePeer).

    `families` are IP versions (4, 6) of the unicast families to enable; `ebgp_multihop_ttl` 0
    means directly connected; `add_paths_send_max` 0 means no ADD-PATH send. The password is
    kept out of `repr` so that logging a PeerConfig never shows it.
    """

    neighbor_address: str
    peer_asn: int
    port: int = 179
    local_asn: int = 0  # 0: the instance's ASN
    passive: bool = False
    auth_password: str = field(default="", repr=False)
    ebgp_multihop_ttl: int = 0
    hold_time: int = 90
    keepalive: int = 30
    connect_retry: int = 5
    families: tuple[int, ...] = (4,)
    add_paths_send_max: int = 0
    graceful_restart: GracefulRestart = field(default_factory=GracefulRestart)
    bfd: Bfd = field(default_factory=Bfd)
    admin_down: bool = False  # configured, kept Idle: no session
    description: str = ""
    allow_own_asn: int = 0  # accept this many occurrences of our ASN in AS_PATH
    replace_peer_asn: bool = False
    remove_private: int = 0  # GoBGP's RemovePrivate: 0 none, 1 all, 2 replace
    local_address: str = ""  # source address of the session; "" lets the kernel choose
    tcp_mss: int = 0  # 0: the kernel's


@dataclass(frozen=True)
class PeerExport:
    """What a central speaker may announce to one neighbour: paths whose next hop is one of
    `next_hops` (the addresses of the nodes its BgpPeer selects)."""

    neighbor_address: str
    next_hops: tuple[str, ...]


def choose_bgpconf(bgpconfs: Iterable[Obj]) -> Obj | None:
    """The BgpConf in force: the one named `default`, else the first by name; None if none."""
    usable = sorted((c for c in bgpconfs if not being_deleted(c)), key=object_name)
    for conf in usable:
        if object_name(conf) == DEFAULT_BGPCONF_NAME:
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
    settings = as_mapping(spec.get("gracefulRestart"))
    if settings.get("enabled") is not True:
        return GracefulRestart()
    restart_time = _int_field(
        settings.get("restartTime"), kind, name, f"{field_name}.restartTime", (0, 4095)
    )
    deferral_time = _int_field(
        settings.get("deferralTime"), kind, name, f"{field_name}.deferralTime", (0, 65535)
    )
    peer = kind == "BgpPeer"  # gobgpd takes these two per neighbour only
    return GracefulRestart(
        True,
        restart_time or hold_time,
        deferral_time or DEFAULT_DEFERRAL_TIME,
        helper_only=peer and settings.get("helperOnly") is True,
        notification_enabled=peer and settings.get("notificationEnabled") is True,
    )


REMOVE_PRIVATE = {"": 0, "NONE": 0, "REMOVE_NONE": 0, "ALL": 1, "REMOVE_ALL": 1, "REPLACE": 2}
"""`conf.removePrivateAs` (GoBGP's names, any case) -> GoBGP's RemovePrivate number."""


def _remove_private(conf: Mapping[str, Any], name: str) -> int:
    value = conf.get("removePrivateAs")
    if value is None:
        return 0
    number = REMOVE_PRIVATE.get(str(value).strip().upper()) if isinstance(value, str) else None
    if number is None:
        raise ModelError(
            "BgpPeer", name, "spec.conf.removePrivateAs", value, "must be NONE, ALL or REPLACE"
        )
    return number


def _address_field(value: object, name: str, field_name: str) -> str:
    if value is None or value == "":
        return ""
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ModelError("BgpPeer", name, field_name, value, "must be an IP address") from None


def _bfd(spec: Mapping[str, Any], name: str) -> Bfd:
    """`spec.bfd` (a porter-lb extension): `enabled`, `transmitInterval` and `receiveInterval`
    in ms (10-60000, default 300), `detectMultiplier` (2-255, default 3)."""
    settings = as_mapping(spec.get("bfd"))
    if settings.get("enabled") is not True:
        return Bfd()

    def interval(key: str) -> int:
        value = _int_field(settings.get(key), "BgpPeer", name, f"spec.bfd.{key}", (10, 60000))
        return DEFAULT_BFD_INTERVAL_MS if value is None else value

    multiplier = _int_field(
        settings.get("detectMultiplier"), "BgpPeer", name, "spec.bfd.detectMultiplier", (2, 255)
    )
    return Bfd(
        True,
        interval("transmitInterval"),
        interval("receiveInterval"),
        DEFAULT_BFD_MULTIPLIER if multiplier is None else multiplier,
    )


def _ipv4_address(addresses: Sequence[str]) -> str:
    for text in addresses:
        try:
            if ipaddress.ip_address(text).version == 4:
                return text
        except ValueError:
            continue
    return ""


RACK_LABEL = "openelb.kubesphere.io/rack"
"""The node label naming a node's rack, for BgpConf `spec.asPerRack` (OpenELB's)."""


def global_config_from_bgpconf(
    bgpconf: Mapping[str, Any], node: Node | None = None, default_router_id: str = ""
) -> GlobalConfig:
    """The gobgpd instance a BgpConf asks for.

    The router ID is `spec.routerId`, else the IPv4 InternalIP of `node` (a node speaker),
    else `default_router_id`; with none of them the BgpConf cannot be used. `listenPort`
    absent or 0 means 179; -1 makes gobgpd only connect out.

    `spec.asPerRack` (OpenELB's semantics, node speakers only): a node labelled
    RACK_LABEL=<rack> whose rack is listed uses that AS instead of `spec.as`, and its own
    InternalIP as router ID (a `spec.routerId` would be shared by every rack).
    """
    name = object_name(bgpconf)
    spec = as_mapping(bgpconf.get("spec"))
    asn = _int_field(spec.get("as"), "BgpConf", name, "spec.as", (1, 4294967295))
    if asn is None:
        raise ModelError("BgpConf", name, "spec.as", None, "is required")
    per_rack = spec.get("asPerRack") or {}
    if not isinstance(per_rack, Mapping):
        raise ModelError("BgpConf", name, "spec.asPerRack", per_rack, "must map racks to ASNs")
    rack_asns = {
        str(rack): _int_field(value, "BgpConf", name, f"spec.asPerRack.{rack}", (1, 4294967295))
        for rack, value in per_rack.items()
    }
    rack = node.labels.get(RACK_LABEL, "") if node is not None else ""
    rack_asn = rack_asns.get(rack) if rack else None
    if rack_asn is not None:
        asn = rack_asn
    router_id = "" if rack_asn is not None else str(spec.get("routerId") or "").strip()
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
        use_multiple_paths=spec.get("useMultiplePaths") is True,
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
        config = as_mapping(as_mapping(entry).get("config"))
        if config.get("enabled") is False:
            continue
        afi = as_mapping(config.get("family")).get("afi") or (
            "AFI_IP" if neighbor.version == 4 else "AFI_IP6"
        )
        if afi not in ("AFI_IP", "AFI_IP6"):
            raise ModelError(
                "BgpPeer", name, f"{where}.config.family.afi", afi, "AFI_IP or AFI_IP6"
            )
        version = 4 if afi == "AFI_IP" else 6
        if version not in families:
            families.append(version)
        add_paths = as_mapping(as_mapping(as_mapping(entry).get("addPaths")).get("config"))
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
    ref = as_mapping(ref)
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
    data = as_mapping(secret.get("data"))
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
    string_data = as_mapping(secret.get("stringData"))
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
    name = object_name(bgppeer)
    spec = as_mapping(bgppeer.get("spec"))
    conf = as_mapping(spec.get("conf"))
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
    timers = as_mapping(as_mapping(spec.get("timers")).get("config"))
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
    transport = as_mapping(spec.get("transport"))
    port = _int_field(
        transport.get("remotePort"), "BgpPeer", name, "spec.transport.remotePort", (1, 65535)
    )
    multihop = as_mapping(spec.get("ebgpMultihop"))
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
    selector = LabelSelector.from_dict(as_mapping(spec.get("nodeSelector")), name=name)
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
        bfd=_bfd(spec, name),
        admin_down=conf.get("adminDown") is True,
        description=str(conf.get("description") or ""),
        allow_own_asn=_int_field(
            conf.get("allowOwnAs"), "BgpPeer", name, "spec.conf.allowOwnAs", (0, 10)
        )
        or 0,
        replace_peer_asn=conf.get("replacePeerAs") is True,
        remove_private=_remove_private(conf, name),
        local_address=_address_field(
            transport.get("localAddress"), name, "spec.transport.localAddress"
        ),
        tcp_mss=_int_field(
            transport.get("tcpMss"), "BgpPeer", name, "spec.transport.tcpMss", (0, 65535)
        )
        or 0,
    )
    return PeerSpec(name=name, peer=Peer(name, selector), config=config)


def plain_text_password_peers(bgppeers: Iterable[Obj]) -> list[str]:
    """Names of the BgpPeers whose password is Porter's plain-text `spec.conf.authPassword`
    (no Secret reference): still honoured, for Porter's manifests, but warned about."""
    return sorted(
        object_name(obj)
        for obj in bgppeers
        if not being_deleted(obj)
        and as_mapping(as_mapping(obj.get("spec")).get("conf")).get("authPassword")
        and as_mapping(as_mapping(obj.get("spec")).get("conf")).get("authPasswordSecretRef") is None
    )


def usable_peer_specs(
    bgppeers: Iterable[Obj],
    secrets: Mapping[str, Obj],
    *,
    mode: Mode = "node",
    secret_namespace: str = "porter-lb-system",
    node: Node | None = None,
) -> tuple[list[PeerSpec], list[tuple[Obj, str, str]]]:
    """The BgpPeers a speaker uses, by name, one per neighbour address; and the rejected ones
    as (BgpPeer, Event reason, message). BgpPeers being deleted are neither.

    A node speaker (`node`) uses only the BgpPeers whose node selector picks its node, so
    BgpPeers with one neighbour address and disjoint selectors give each node its own (a
    `localAs` per node or rack); two that pick the same node clash there. Without `node`
    (mode "node": every node's view at once, as the route audit reads it) such BgpPeers are
    all kept. A central speaker has one session per neighbour address.

    Reasons: `InvalidBgpPeer` (unreadable, or its Secret is missing), `DuplicateNeighbor`
    (an earlier BgpPeer by name already peers with that address, for that node).
    """
    specs: list[PeerSpec] = []
    rejected: list[tuple[Obj, str, str]] = []
    by_address: dict[str, str] = {}
    for obj in sorted(bgppeers, key=object_name):
        name = object_name(obj)
        if being_deleted(obj):
            continue
        try:
            spec = peer_spec_from_bgppeer(
                obj, secrets, mode=mode, secret_namespace=secret_namespace
            )
        except ModelError as error:
            rejected.append((obj, "InvalidBgpPeer", str(error)))
            continue
        address = spec.config.neighbor_address
        if node is not None and not spec.peer.node_selector.matches(node.labels):
            continue  # not this node's: another node may peer with the address through it
        if address in by_address and (mode == "central" or node is not None):
            where = f" from node {node.name}" if node is not None else ""
            rejected.append(
                (
                    obj,
                    "DuplicateNeighbor",
                    f"BgpPeer '{name}': spec.conf.neighborAddress '{address}': "
                    f"BgpPeer '{by_address[address]}' already peers with it{where}; ignored",
                )
            )
            continue
        by_address[address] = name
        specs.append(spec)
    return specs, rejected


def families_without_next_hop(config: PeerConfig, addresses: Sequence[str]) -> tuple[int, ...]:
    """The IP versions `config` carries across families (IPv6 over an IPv4 session, MP-BGP,
    or the other way) for which the node has no address (`addresses`, `Node.addresses`) to be
    their next hop: a node speaker leaves them off the session (`routes.node_next_hops`)."""
    session = ipaddress.ip_address(config.neighbor_address).version
    return tuple(
        version
        for version in config.families
        if version != session and first_of_family(addresses, version) is None
    )


def peer_delta(
    wanted: Mapping[str, PeerConfig],
    configured: Mapping[str, PeerConfig],
    sent: Mapping[str, PeerConfig] | None = None,
) -> tuple[list[PeerConfig], list[PeerConfig], list[str]]:
    """(to add, to update, addresses to delete) turning gobgpd's peers into the wanted ones.

    Both are keyed by neighbour address. A peer whose configuration is unchanged is left
    alone: UpdatePeer can reset a session, and a soft reset re-sends every path.

    `configured` is what gobgpd reports (ListPeer), where GoBGP puts a connected session's
    own source address in place of the configured `local_address` (none: the kernel's
    choice). So the configured one is taken from `sent`, what this process last gave gobgpd
    for that peer; when it gave nothing yet (it just started beside a running gobgpd), a
    wanted "" matches whatever source address is reported. (The one thing this misses: a
    localAddress removed from a BgpPeer while no speaker ran beside that gobgpd applies at
    the session's next reset.)
    """
    sent = sent or {}

    def held(address: str) -> PeerConfig:
        running = configured[address]
        if address in sent:
            return replace(running, local_address=sent[address].local_address)
        if not wanted[address].local_address:
            return replace(running, local_address="")
        return running

    add = [wanted[a] for a in sorted(wanted.keys() - configured.keys())]
    update = [wanted[a] for a in sorted(wanted.keys() & configured.keys()) if wanted[a] != held(a)]
    delete = sorted(configured.keys() - wanted.keys())
    return add, update, delete


def peer_status_entry(status: PeerStatus | None, config: PeerConfig) -> dict[str, Any]:
    """One `status.nodesPeerStatus` value (Porter's shape, the fields that change rarely).

    `sessionState` uses GoBGP's names (ESTABLISHED, ACTIVE, IDLE, ...); UNKNOWN while gobgpd
    does not list the peer. Counters and timestamps are left out on purpose: a status write
    per UPDATE message would load the API server for nothing (see the metrics instead).
    """
    state = status.session_state.upper() if status else "UNKNOWN"
    entry: dict[str, Any] = {
        "peerState": {
            "neighborAddress": config.neighbor_address,
            "peerAs": config.peer_asn,
            "sessionState": state,
        }
    }
    if config.bfd.enabled:
        # RFC 5880's state names: UP, DOWN, INIT, ADMIN_DOWN; UNKNOWN while not reported.
        bfd = status.bfd_state.upper() if status and status.bfd_state else "UNKNOWN"
        entry["bfdState"] = {"sessionState": bfd}
    return entry


def plain_text_password_message(name: str, secret_namespace: str) -> str:
    """The Warning for BgpPeer `name`, whose password is in the object itself."""
    return (
        f"BgpPeer '{name}': spec.conf.authPassword holds the BGP password in plain "
        "text, readable by anyone who may read BgpPeers: put it in a Secret in "
        f"{secret_namespace!r} and name it in "
        "spec.conf.authPasswordSecretRef"
    )


def peer_fingerprint(bgppeer: Obj | None) -> object:
    """What of a BgpPeer matters to a speaker: not its status, which the speakers write."""
    if bgppeer is None:
        return None
    metadata = as_mapping(bgppeer.get("metadata"))
    return (bgppeer.get("spec"), metadata.get("deletionTimestamp"), metadata.get("uid"))


def export_filters(
    peers: Sequence[PeerSpec], nodes: Mapping[str, Node]
) -> tuple[PeerExport, ...] | None:
    """Per-peer export for a central speaker: each neighbour gets only the paths through the
    nodes its BgpPeer's nodeSelector picks (each node's first IPv4 and first IPv6 address),
    sorted by neighbour address. None when every peer picks the same nodes: all of them may
    then get every path, and gobgpd needs no policy."""
    chosen = [
        (
            spec.config.neighbor_address,
            frozenset(
                name for name, node in nodes.items() if spec.peer.node_selector.matches(node.labels)
            ),
        )
        for spec in peers
    ]
    if len({names for _, names in chosen}) <= 1:
        return None
    filters = []
    for address, names in sorted(chosen):
        hops: set[str] = set()
        for name in names:
            for version in (4, 6):
                hop = first_of_family(nodes[name].addresses, version)
                if hop is not None:
                    hops.add(hop)
        filters.append(PeerExport(address, tuple(sorted(hops))))
    return tuple(filters)
