"""The layer-2 bed: a client and N nodes on one bridge, each in its own network namespace.

    switch netns: br0 ─┬─ client (198.51.100.10/24, 2001:db8:100::10/64)
                       ├─ node1  (198.51.100.11/24, 2001:db8:100::11/64)
                       ├─ node2  ...
                       └─ node3

Layer-2 EIPs come from the nodes' own subnet (198.51.100.200-198.51.100.220,
2001:db8:100::200-2001:db8:100::220), as on a real LAN: the client resolves them by ARP/NDP.
The nodes do not accept traffic for the EIPs by themselves: the agents' host rules make the node
that wins an EIP accept it. arp_ignore=1 and arp_announce=2 keep the kernel from answering ARP
for an address it holds on another interface (or by a local route): only porter-lb's announcer
answers. All addresses are documentation ranges inside namespaces made
here; nothing leaves them.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from porter_lab import netns
from porter_lab.processes import Daemon
from porter_lab.topology import PREFIX_ROOT
from porter_lb.host.netns import entered

NET = "198.51.100"
NET6 = "2001:db8:100:"
EIP_RANGE = f"{NET}.200-{NET}.220"
EIP6_RANGE = f"{NET6}:200-{NET6}:220"
HTTP_PORT = 80

# A one-file HTTP server that names its node (argv[1]) and the address it was reached on.
_HTTP_SERVER = """
import http.server, socket, sys
node = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{node} {self.connection.getsockname()[0]}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
Server(("::", int(sys.argv[2])), Handler).serve_forever()
"""


@dataclass(frozen=True)
class L2Node:
    name: str  # "node1"
    netns: str
    address: str
    address6: str
    port: str  # its bridge port in the switch namespace


def http_get(name: str, ip: str, port: int = HTTP_PORT, timeout: float = 2.0) -> str:
    """GET / on ip:port from inside namespace `name`; the body (raises OSError on failure)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with entered(name):
        sock = socket.socket(family, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(timeout)
        sock.connect((ip, port))
        sock.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    response = b"".join(chunks).decode(errors="replace")
    head, _, body = response.partition("\r\n\r\n")
    if not head.startswith("HTTP/1.0 200"):
        raise OSError(f"unexpected answer from {ip}: {head[:80]!r}")
    return body.strip()


@dataclass
class L2Topology:
    run: str
    node_count: int = 3
    switch_ns: str = field(init=False)
    client_ns: str = field(init=False)
    nodes: list[L2Node] = field(init=False)
    client_address: str = f"{NET}.10"
    client_address6: str = f"{NET6}:10"
    created: list[str] = field(default_factory=list)
    servers: list[Daemon] = field(default_factory=list)

    def __post_init__(self) -> None:
        prefix = f"{PREFIX_ROOT}{self.run}-l2"
        self.switch_ns = f"{prefix}sw"
        self.client_ns = f"{prefix}client"
        self.nodes = [
            L2Node(
                f"node{i}",
                f"{prefix}node{i}",
                f"{NET}.{10 + i}",
                f"{NET6}:{10 + i}",
                f"p-node{i}",
            )
            for i in range(1, self.node_count + 1)
        ]

    def create(self) -> L2Topology:
        for name in [self.switch_ns, self.client_ns, *(n.netns for n in self.nodes)]:
            netns.add(name)
            self.created.append(name)
        netns.bridge(self.switch_ns, "br0")
        self._port(self.client_ns, "p-client", self.client_address, self.client_address6)
        for node in self.nodes:
            self._port(node.netns, node.port, node.address, node.address6)
            for scope in ("all", "eth0"):
                netns.sysctl(node.netns, f"net.ipv4.conf.{scope}.arp_ignore", 1)
                netns.sysctl(node.netns, f"net.ipv4.conf.{scope}.arp_announce", 2)
        return self

    def _port(self, name: str, port: str, address: str, address6: str) -> None:
        netns.veth(self.switch_ns, port, name, "eth0")
        netns.enslave(self.switch_ns, port, "br0")
        netns.address(name, "eth0", f"{address}/24")
        netns.ip("-6", "address", "add", f"{address6}/64", "dev", "eth0", "nodad", netns=name)

    def node(self, name: str) -> L2Node:
        return next(n for n in self.nodes if n.name == name)

    def mac(self, namespace: str, link: str = "eth0") -> str:
        return str(netns.ip_json("link", "show", link, netns=namespace)[0]["address"])

    def serve_http(self, workdir: Path) -> None:
        """In every node: an HTTP server on port 80 answering '<node> <local address>'."""
        for node in self.nodes:
            daemon = Daemon(
                f"http-{node.name}",
                [sys.executable, "-c", _HTTP_SERVER, node.name, str(HTTP_PORT)],
                workdir / f"http-{node.name}.log",
                netns=node.netns,
            )
            self.servers.append(daemon.start())

    def cut(self, node: str) -> None:
        """Pull the node's cable: its bridge port goes down, its eth0 loses carrier."""
        netns.ip("link", "set", self.node(node).port, "down", netns=self.switch_ns)

    def mend(self, node: str) -> None:
        netns.ip("link", "set", self.node(node).port, "up", netns=self.switch_ns)

    def forget(self, ip: str) -> None:
        """The client forgets its neighbour entry for `ip`: the next packet asks again."""
        netns.ip("neigh", "flush", "to", ip, "dev", "eth0", netns=self.client_ns)

    def client_neighbor(self, ip: str) -> str | None:
        """The MAC the client's neighbour table has for `ip` (None: no usable entry)."""
        for entry in netns.ip_json("neigh", "show", ip, "dev", "eth0", netns=self.client_ns):
            if entry.get("lladdr") and "FAILED" not in entry.get("state", []):
                return str(entry["lladdr"])
        return None

    def destroy(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()
        for name in reversed(self.created):
            netns.delete(name)
        self.created.clear()
