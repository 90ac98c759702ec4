"""A leaf-spine fabric for the bed: two racks, each behind its own leaf (top-of-rack) router,
both leaves under one spine, a client behind the spine.

    client 192.0.2.10 ── spine (BIRD, AS 65100) ─┬─ leaf1 (BIRD, AS 65101) ── br0 198.51.100.1/26
                          192.0.2.1               │     198.18.1.1/31           ├─ node1 .11 ┐ rack1
                                                  │                             └─ node2 .12 ┘
                                                  └─ leaf2 (FRR, AS 65102) ─── br0 198.51.100.65/26
                                                        198.18.2.1/31           ├─ node3 .75 ┐ rack2
                                                                                └─ node4 .76 ┘

Each leaf imports the EIP /32s its rack announces (or the central speaker's paths through
its rack's nodes), installs them in its kernel FIB with ECMP and announces each once to the
spine with itself as next hop; the spine spreads over the leaves whose rack serves. Every
router runs in its own namespace; addresses are from the documentation and benchmarking
ranges and never leave the namespaces created here.

Node mode: every node peers with its own leaf (node labels `openelb.kubesphere.io/rack`,
BgpConf asPerRack: rack1 AS 65011, rack2 AS 65012). Central mode: the speaker on node1 (AS
65001) peers with leaf1 directly and with leaf2 over eBGP multihop (leaf2's br0 address,
reached through the spine), each BgpPeer selecting its rack.

With `ipv6` the fabric is dual-stack: rack i's br0 also has 2001:db8:198:i::1/64 (nodes ::11,
::12 in rack1, ::75, ::76 in rack2), each uplink 2001:db8:18:i::a (spine) / ::b (leaf), the
client 2001:db8:192:1::10 behind the spine's ::1, with IPv6 default routes towards the spine.
IPv6 rides the IPv4 sessions (MP-BGP): every session also carries IPv6 unicast, the nodes'
paths with their own IPv6 address as next hop, a leaf's to the spine with its uplink's.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from porter_lab import netns
from porter_lab.processes import Daemon
from porter_lab.routers import FRR_RUN_ROOT, Frr, RouterSpec
from porter_lab.topology import PREFIX_ROOT, Node
from porter_lab.waiting import wait_for

Mode = Literal["node", "central"]

SPINE_ASN = 65100
LEAF_ASNS = (65101, 65102)
RACKS = ("rack1", "rack2")
RACK_ASNS = {"rack1": 65011, "rack2": 65012}
CENTRAL_ASN = 65001
RACK_LABEL = "openelb.kubesphere.io/rack"
GATEWAYS = ("198.51.100.1", "198.51.100.65")
UPLINKS = (("198.18.1.0", "198.18.1.1"), ("198.18.2.0", "198.18.2.1"))  # (spine, leaf)
NODE_ADDRESSES = (("198.51.100.11", "198.51.100.12"), ("198.51.100.75", "198.51.100.76"))
CLIENT_NET = "192.0.2"
GATEWAYS6 = ("2001:db8:198:1::1", "2001:db8:198:2::1")
NODE_ADDRESSES6 = (
    ("2001:db8:198:1::11", "2001:db8:198:1::12"),
    ("2001:db8:198:2::75", "2001:db8:198:2::76"),
)
UPLINKS6 = (("2001:db8:18:1::a", "2001:db8:18:1::b"), ("2001:db8:18:2::a", "2001:db8:18:2::b"))
CLIENT_NET6 = "2001:db8:192:1"


@dataclass(frozen=True)
class RackNode:
    node: Node
    rack: str

    @property
    def leaf(self) -> int:
        return RACKS.index(self.rack)


@dataclass
class Fabric:
    run: str
    ipv6: bool = False  # IPv6 beside IPv4 on every link (see the module docstring)
    spine_ns: str = field(init=False)
    leaf_ns: tuple[str, str] = field(init=False)
    client_ns: str = field(init=False)
    nodes: list[RackNode] = field(init=False)
    client_address: str = f"{CLIENT_NET}.10"
    client_address6: str = f"{CLIENT_NET6}::10"
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        prefix = f"{PREFIX_ROOT}{self.run}"
        self.spine_ns = f"{prefix}-spine"
        self.leaf_ns = (f"{prefix}-leaf1", f"{prefix}-leaf2")
        self.client_ns = f"{prefix}-client"
        self.nodes = [
            RackNode(
                Node(
                    f"node{2 * r + i + 1}",
                    f"{prefix}-node{2 * r + i + 1}",
                    address,
                    NODE_ADDRESSES6[r][i] if self.ipv6 else "",
                ),
                rack,
            )
            for r, rack in enumerate(RACKS)
            for i, address in enumerate(NODE_ADDRESSES[r])
        ]

    def rack_nodes(self, rack: str) -> list[Node]:
        return [n.node for n in self.nodes if n.rack == rack]

    def create(self) -> Fabric:
        names = [self.spine_ns, *self.leaf_ns, self.client_ns, *(n.node.netns for n in self.nodes)]
        for name in names:
            netns.add(name)
            self.created.append(name)
        spine = self.spine_ns
        for router in (spine, *self.leaf_ns):
            netns.sysctl(router, "net.ipv4.ip_forward", 1)
            netns.sysctl(router, "net.ipv4.fib_multipath_hash_policy", 1)
        for index, leaf in enumerate(self.leaf_ns):
            spine_side, leaf_side = UPLINKS[index]
            netns.veth(spine, f"to-leaf{index + 1}", leaf, "to-spine")
            netns.address(spine, f"to-leaf{index + 1}", f"{spine_side}/31")
            netns.address(leaf, "to-spine", f"{leaf_side}/31")
            netns.ip("route", "add", "default", "via", spine_side, netns=leaf)
            netns.bridge(leaf, "br0")
            netns.address(leaf, "br0", f"{GATEWAYS[index]}/26")
            # The spine reaches each rack's network through its leaf (the central speaker's
            # multihop session to leaf2 crosses it).
            rack_net = "198.51.100.0/26" if index == 0 else "198.51.100.64/26"
            netns.ip("route", "add", rack_net, "via", leaf_side, netns=spine)
        for racked in self.nodes:
            node, leaf = racked.node, self.leaf_ns[racked.leaf]
            netns.veth(leaf, f"to-{node.name}", node.netns, "eth0")
            netns.enslave(leaf, f"to-{node.name}", "br0")
            netns.address(node.netns, "eth0", f"{node.address}/26")
            netns.ip("route", "add", "default", "via", GATEWAYS[racked.leaf], netns=node.netns)
        netns.veth(spine, "to-client", self.client_ns, "eth0")
        netns.address(spine, "to-client", f"{CLIENT_NET}.1/24")
        netns.address(self.client_ns, "eth0", f"{self.client_address}/24")
        netns.ip("route", "add", "default", "via", f"{CLIENT_NET}.1", netns=self.client_ns)
        if self.ipv6:
            self._add_ipv6()
        return self

    def _add_ipv6(self) -> None:
        """IPv6 beside IPv4 on the links `create` made; `nodad`: usable at once."""
        spine = self.spine_ns
        for router in (spine, *self.leaf_ns):
            netns.sysctl(router, "net.ipv6.conf.all.forwarding", 1)
            netns.sysctl(router, "net.ipv6.fib_multipath_hash_policy", 1)
        for index, leaf in enumerate(self.leaf_ns):
            spine_side, leaf_side = UPLINKS6[index]
            netns.address6(spine, f"to-leaf{index + 1}", f"{spine_side}/64")
            netns.address6(leaf, "to-spine", f"{leaf_side}/64")
            netns.ip("-6", "route", "add", "default", "via", spine_side, netns=leaf)
            netns.address6(leaf, "br0", f"{GATEWAYS6[index]}/64")
        for racked in self.nodes:
            node = racked.node
            netns.address6(node.netns, "eth0", f"{node.address6}/64")
            gateway = GATEWAYS6[racked.leaf]
            netns.ip("-6", "route", "add", "default", "via", gateway, netns=node.netns)
        netns.address6(spine, "to-client", f"{CLIENT_NET6}::1/64")
        netns.address6(self.client_ns, "eth0", f"{self.client_address6}/64")
        netns.ip("-6", "route", "add", "default", "via", f"{CLIENT_NET6}::1", netns=self.client_ns)

    def destroy(self) -> None:
        for name in reversed(self.created):
            netns.delete(name)
        self.created.clear()


# --- router configurations ----------------------------------------------------------------


_TIMERS = "hold time 9; keepalive time 3; connect delay time 1; connect retry time 1; "
_KERNEL = (
    "protocol kernel { ipv4 { import none; export filter { if source = RTS_BGP then accept; "
    "reject; }; }; merge paths on limit 16; netlink rx buffer 16777216; }"
)
_KERNEL6 = _KERNEL.replace("ipv4 {", "ipv6 {")


def _eip_filter(pool: str) -> str:
    return f"filter eip {{ if net ~ [ {pool}{{32,32}} ] then accept; reject; }}"


def _eip6_filter(pool6: str) -> str:
    return f"filter eip6 {{ if net ~ [ {pool6}{{128,128}} ] then accept; reject; }}"


def _ipv6_lines(pool6: str) -> list[str]:
    return [_KERNEL6, _eip6_filter(pool6)] if pool6 else []


def spine_bird_config(pool: str, log: Path, *, pool6: str = "") -> str:
    """`pool6`: the IPv6 pool, when the fabric is dual-stack (MP-BGP on the IPv4 sessions)."""
    lines = [
        f'log "{log}" all;',
        f"router id {CLIENT_NET}.1;",
        "protocol device { scan time 10; }",
        _KERNEL,
        _eip_filter(pool),
        *_ipv6_lines(pool6),
    ]
    ipv6 = "ipv6 { import filter eip6; export none; }; " if pool6 else ""
    for index, (spine_side, leaf_side) in enumerate(UPLINKS):
        lines.append(
            f"protocol bgp leaf{index + 1} {{ local {spine_side} as {SPINE_ASN}; "
            f"neighbor {leaf_side} as {LEAF_ASNS[index]}; {_TIMERS}"
            f"ipv4 {{ import filter eip; export none; }}; {ipv6}}}"
        )
    return "\n".join(lines) + "\n"


def leaf1_bird_config(pool: str, log: Path, mode: Mode, nodes: list[Node], pool6: str = "") -> str:
    spine_side, leaf_side = UPLINKS[0]
    add_paths = " add paths rx;" if mode == "central" else ""
    # IPv6 to the spine over the IPv4 session: next hop self is the uplink's IPv6 address.
    up6 = (
        f"ipv6 {{ import none; export filter eip6; next hop address {UPLINKS6[0][1]}; }}; "
        if pool6
        else ""
    )
    down6 = f"ipv6 {{ import filter eip6; export none;{add_paths} }}; " if pool6 else ""
    lines = [
        f'log "{log}" all;',
        f"router id {leaf_side};",
        "protocol device { scan time 10; }",
        _KERNEL,
        _eip_filter(pool),
        *_ipv6_lines(pool6),
        f"protocol bgp spine {{ local {leaf_side} as {LEAF_ASNS[0]}; "
        f"neighbor {spine_side} as {SPINE_ASN}; {_TIMERS}"
        f"ipv4 {{ import none; export filter eip; next hop self; }}; {up6}}}",
    ]
    peers = [nodes[0]] if mode == "central" else nodes
    asn = CENTRAL_ASN if mode == "central" else RACK_ASNS["rack1"]
    for node in peers:
        lines.append(
            f"protocol bgp {node.name} {{ local {GATEWAYS[0]} as {LEAF_ASNS[0]}; "
            f"neighbor {node.address} as {asn}; {_TIMERS}"
            f"ipv4 {{ import filter eip; export none;{add_paths} }}; {down6}}}"
        )
    return "\n".join(lines) + "\n"


def leaf2_frr_config(
    pool: str, log: Path, mode: Mode, rack: list[Node], central: Node, *, pool6: str = ""
) -> str:
    spine_side, leaf_side = UPLINKS[1]
    lines = [
        "frr defaults traditional",
        f"log file {log}",
        f"ip prefix-list EIP seq 5 permit {pool} ge 32",
        "route-map EIP permit 10",
        " match ip address prefix-list EIP",
        "route-map NOTHING deny 10",
    ]
    if pool6:
        lines += [
            f"ipv6 prefix-list EIP6 seq 5 permit {pool6} ge 128",
            "route-map EIP6 permit 10",
            " match ipv6 address prefix-list EIP6",
            # next-hop-self over the IPv4 uplink session: the uplink's own IPv6 address
            "route-map SPINE6 permit 10",
            " match ipv6 address prefix-list EIP6",
            f" set ipv6 next-hop global {UPLINKS6[1][1]}",
        ]
    lines += [
        "!",
        f"router bgp {LEAF_ASNS[1]}",
        f" bgp router-id {leaf_side}",
        " bgp bestpath as-path multipath-relax",
        " timers bgp 3 9",
        f" neighbor {spine_side} remote-as {SPINE_ASN}",
        f" neighbor {spine_side} timers connect 1",
    ]
    if mode == "central":
        peers = [(central.address, CENTRAL_ASN)]
        lines += [
            f" neighbor {central.address} remote-as {CENTRAL_ASN}",
            f" neighbor {central.address} timers connect 1",
            f" neighbor {central.address} ebgp-multihop 4",
            f" neighbor {central.address} update-source {GATEWAYS[1]}",
        ]
    else:
        peers = [(n.address, RACK_ASNS["rack2"]) for n in rack]
        for address, asn in peers:
            lines += [
                f" neighbor {address} remote-as {asn}",
                f" neighbor {address} timers connect 1",
            ]
    lines += [" address-family ipv4 unicast", "  maximum-paths 16"]
    lines += [
        f"  neighbor {spine_side} route-map NOTHING in",
        f"  neighbor {spine_side} route-map EIP out",
        f"  neighbor {spine_side} next-hop-self",
    ]
    for address, _asn in peers:
        lines += [
            f"  neighbor {address} route-map EIP in",
            f"  neighbor {address} route-map NOTHING out",
        ]
        if mode == "central":
            lines.append(f"  neighbor {address} addpath-rx-paths-limit 16")
    lines.append(" exit-address-family")
    if pool6:
        lines += [
            " address-family ipv6 unicast",
            "  maximum-paths 16",
            f"  neighbor {spine_side} activate",
            f"  neighbor {spine_side} route-map NOTHING in",
            f"  neighbor {spine_side} route-map SPINE6 out",
        ]
        for address, _asn in peers:
            lines += [
                f"  neighbor {address} activate",
                f"  neighbor {address} route-map EIP6 in",
                f"  neighbor {address} route-map NOTHING out",
            ]
            if mode == "central":
                lines.append(f"  neighbor {address} addpath-rx-paths-limit 16")
        lines.append(" exit-address-family")
    lines.append("!")
    return "\n".join(lines) + "\n"


@dataclass
class FabricRouters:
    """The spine's and leaf1's BIRD and leaf2's FRR, started for `mode`."""

    fabric: Fabric
    mode: Mode
    pool: str
    workdir: Path
    pool6: str = ""  # the IPv6 pool: the fabric is dual-stack, every session carries IPv6 too
    daemons: list[Daemon] = field(default_factory=list)
    leaf2: Frr | None = None

    def socket(self, name: str) -> Path:
        return self.workdir / f"{name}.ctl"

    def _bird(self, name: str, namespace: str, config: str) -> None:
        path = self.workdir / f"{name}.conf"
        path.write_text(config)
        check = subprocess.run(
            ["bird", "-p", "-c", str(path)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"BIRD rejected {path}: {check.stderr.strip()}")
        argv = ["bird", "-f", "-c", str(path), "-s", str(self.socket(name))]
        argv += ["-P", str(self.workdir / f"{name}.pid")]
        daemon = Daemon(name, argv, self.workdir / f"{name}.stdout", netns=namespace).start()
        self.daemons.append(daemon)
        wait_for(
            lambda: daemon.check_running() and "BIRD" in self.birdc(name, "show status"),
            10,
            f"{name}'s BIRD",
        )

    def start(self) -> FabricRouters:
        self.workdir.mkdir(parents=True, exist_ok=True)
        fabric = self.fabric
        self._bird(
            "spine",
            fabric.spine_ns,
            spine_bird_config(self.pool, self.workdir / "spine.log", pool6=self.pool6),
        )
        self._bird(
            "leaf1",
            fabric.leaf_ns[0],
            leaf1_bird_config(
                self.pool,
                self.workdir / "leaf1.log",
                self.mode,
                fabric.rack_nodes("rack1"),
                pool6=self.pool6,
            ),
        )
        central = fabric.nodes[0].node
        spec = RouterSpec(asn=LEAF_ASNS[1], router_id=UPLINKS[1][1], neighbors=(), pools=())
        leaf2 = Frr(fabric.leaf_ns[1], spec, kernel_nexthop_groups=False)
        leaf2.bgpd_config = leaf2_frr_config(
            self.pool,
            FRR_RUN_ROOT / fabric.leaf_ns[1] / "frr" / "bgpd.log",
            self.mode,
            fabric.rack_nodes("rack2"),
            central,
            pool6=self.pool6,
        )
        self.leaf2 = leaf2.start()
        return self

    def birdc(self, name: str, command: str) -> str:
        return netns.run(["birdc", "-s", str(self.socket(name)), command], timeout=10)

    def bird_sessions(self, name: str) -> dict[str, str]:
        """BGP protocol name -> its state info ("Established", ...) in BIRD `name`."""
        found = {}
        for line in self.birdc(name, "show protocols").splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[1] == "BGP":
                found[fields[0]] = fields[5]
        return found

    def leaf2_sessions(self) -> dict[str, str]:
        assert self.leaf2 is not None
        summary = self.leaf2.vtysh_json("show bgp ipv4 unicast summary")
        return {a: p.get("state", "") for a, p in summary.get("peers", {}).items()}

    def all_established(self) -> bool:
        sessions = [
            *self.bird_sessions("spine").values(),
            *self.bird_sessions("leaf1").values(),
            *self.leaf2_sessions().values(),
        ]
        # spine: 2 leaves; each leaf: the spine and its rack's nodes (central: the speaker)
        expected = 6 if self.mode == "central" else 8
        return len(sessions) == expected and all(s == "Established" for s in sessions)

    def stop(self) -> None:
        if self.leaf2 is not None:
            self.leaf2.stop()
        for daemon in reversed(self.daemons):
            daemon.stop()
        shutil.rmtree(FRR_RUN_ROOT / self.fabric.leaf_ns[1], ignore_errors=True)


def kernel_next_hops(namespace: str, prefix: str) -> set[str]:
    """The next hops of `prefix` in `namespace`'s kernel FIB."""
    return netns.next_hops(namespace, prefix)
