"""The bed's network: one router, N nodes on a bridge behind it, one client.

    client (192.0.2.10) ── router ── br0 (198.51.100.1/24) ─┬─ node1 (198.51.100.11)
                             │                              ├─ node2 (198.51.100.12)
                       BIRD or FRR, AS 65000                └─ node3 ...

With `ipv6` the same network is dual-stack: br0 also has 2001:db8:198::1/64, node i
2001:db8:198::(10+i)/64, the client 2001:db8:192::10/64 (behind the router's 2001:db8:192::1),
IPv6 default routes, and the router forwards IPv6 with the same 5-tuple ECMP hash.

Addresses are from the documentation ranges and live only inside the namespaces created here;
nothing is connected to the host's own network. EIPs come from 203.0.113.0/24.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from porter_lab import netns

ROUTER_ASN = 65000
NODE_ASN = 65001
NODE_NET = "198.51.100"
CLIENT_NET = "192.0.2"
NODE_NET6 = "2001:db8:198:"
CLIENT_NET6 = "2001:db8:192:"
EIP_POOL = "203.0.113.0/24"
PREFIX_ROOT = "plb"


def run_id() -> str:
    return secrets.token_hex(2)


@dataclass(frozen=True)
class Node:
    name: str  # "node1"
    netns: str
    address: str  # on the node network
    address6: str = ""  # on the node network, when the topology has IPv6

    @property
    def index(self) -> int:
        return int(self.name.removeprefix("node"))

    @property
    def addresses(self) -> tuple[str, ...]:
        """Its InternalIPs, IPv4 first (as a dual-stack kubelet lists them)."""
        return (self.address, self.address6) if self.address6 else (self.address,)


@dataclass
class Topology:
    run: str
    node_count: int = 3
    ipv6: bool = False  # IPv6 beside IPv4 on every link (see the module docstring)
    router_ns: str = field(init=False)
    client_ns: str = field(init=False)
    nodes: list[Node] = field(init=False)
    router_address: str = f"{NODE_NET}.1"
    client_address: str = f"{CLIENT_NET}.10"
    router_address6: str = f"{NODE_NET6}:1"
    client_address6: str = f"{CLIENT_NET6}:10"
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        prefix = f"{PREFIX_ROOT}{self.run}"
        self.router_ns = f"{prefix}-router"
        self.client_ns = f"{prefix}-client"
        self.nodes = [
            Node(
                f"node{i}",
                f"{prefix}-node{i}",
                f"{NODE_NET}.{10 + i}",
                f"{NODE_NET6}:{10 + i}" if self.ipv6 else "",
            )
            for i in range(1, self.node_count + 1)
        ]

    @property
    def prefix(self) -> str:
        return f"{PREFIX_ROOT}{self.run}-"

    def create(self) -> Topology:
        for name in [self.router_ns, self.client_ns, *(n.netns for n in self.nodes)]:
            netns.add(name)
            self.created.append(name)
        r = self.router_ns
        netns.sysctl(r, "net.ipv4.ip_forward", 1)
        # Hash on the 5-tuple so distinct client source ports spread over the ECMP next hops.
        netns.sysctl(r, "net.ipv4.fib_multipath_hash_policy", 1)
        netns.bridge(r, "br0")
        netns.address(r, "br0", f"{self.router_address}/24")
        for node in self.nodes:
            netns.veth(r, f"to-{node.name}", node.netns, "eth0")
            netns.enslave(r, f"to-{node.name}", "br0")
            netns.address(node.netns, "eth0", f"{node.address}/24")
            netns.ip("route", "add", "default", "via", self.router_address, netns=node.netns)
        netns.veth(r, "to-client", self.client_ns, "eth0")
        netns.address(r, "to-client", f"{CLIENT_NET}.1/24")
        netns.address(self.client_ns, "eth0", f"{self.client_address}/24")
        netns.ip("route", "add", "default", "via", f"{CLIENT_NET}.1", netns=self.client_ns)
        if self.ipv6:
            self._add_ipv6()
        return self

    def _add_ipv6(self) -> None:
        """IPv6 beside IPv4 on the links `create` made; `nodad`: usable at once, no DAD wait."""
        r = self.router_ns
        netns.sysctl(r, "net.ipv6.conf.all.forwarding", 1)
        netns.sysctl(r, "net.ipv6.fib_multipath_hash_policy", 1)
        netns.address6(r, "br0", f"{self.router_address6}/64")
        for node in self.nodes:
            netns.address6(node.netns, "eth0", f"{node.address6}/64")
            netns.ip("-6", "route", "add", "default", "via", self.router_address6, netns=node.netns)
        netns.address6(r, "to-client", f"{CLIENT_NET6}:1/64")
        netns.address6(self.client_ns, "eth0", f"{self.client_address6}/64")
        netns.ip("-6", "route", "add", "default", "via", f"{CLIENT_NET6}:1", netns=self.client_ns)

    def destroy(self) -> None:
        for name in reversed(self.created):
            netns.delete(name)
        self.created.clear()
