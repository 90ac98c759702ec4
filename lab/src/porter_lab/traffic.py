"""Which node answered: an HTTP server in a node namespace that answers with the node's name,
and a client in the client namespace that opens one connection per source port to an address
and counts the answers. Used by the demo (`porter-lab demo`) and the data-path tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Protocol

from porter_lab import netns
from porter_lab.processes import Daemon
from porter_lab.waiting import wait_for


class HasClient(Protocol):
    """A bed with a client namespace (porter_lab.topology.Topology, porter_lab.fabric.Fabric)."""

    @property
    def client_ns(self) -> str: ...

    @property
    def client_address(self) -> str: ...


# One connection per source port, bounded in count (argv) and in time (a deadline and a 2 s
# per-connection timeout); prints {answer: count}.
CLIENT = r"""
import json, socket, sys, time
eip, source, first, count, budget = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
deadline = time.monotonic() + budget
answers = {}
for port in range(first, first + count):
    if time.monotonic() > deadline:
        answers["error: deadline"] = answers.get("error: deadline", 0) + 1
        continue
    conn = socket.socket(socket.AF_INET6 if ":" in eip else socket.AF_INET)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    conn.settimeout(2)
    try:
        conn.bind((source, port))
        conn.connect((eip, 80))
        conn.sendall(b"GET / HTTP/1.0\r\nHost: eip\r\n\r\n")
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
        answer = reply.partition(b"\r\n\r\n")[2].decode().strip() or "error: empty"
    except OSError as error:
        answer = f"error: {type(error).__name__}"
    finally:
        conn.close()
    answers[answer] = answers.get(answer, 0) + 1
print(json.dumps(answers))
"""

# A node's HTTP server: answers every GET with the node's name, on 0.0.0.0:80 (dual-stack:
# on [::]:80, IPv4 too).
SERVER = r"""
import http.server, socket, socketserver, sys
name, transparent, dual = sys.argv[1], sys.argv[2] == "transparent", sys.argv[3] == "dual"

class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if dual else socket.AF_INET

    def server_bind(self):
        if transparent:  # may answer from an address that is not local (IP_TRANSPARENT)
            self.socket.setsockopt(socket.SOL_IP, getattr(socket, "IP_TRANSPARENT", 19), 1)
        if dual:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)  # no reverse DNS of 0.0.0.0
        self.server_name, self.server_port = name, 80

class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

Server(("::" if dual else "0.0.0.0", 80), Answer).serve_forever()
"""


# Connections one after the other for `seconds`, each bounded by a 0.5 s timeout, started
# `interval` apart; prints [[start, answered], ...] (monotonic seconds in the client process).
PROBE = r"""
import json, signal, socket, sys, time
eip, source, seconds, interval = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
end = time.monotonic() + seconds
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
tries = []
while time.monotonic() < end and not stop:
    start = time.monotonic()
    conn = socket.socket()
    conn.settimeout(0.5)
    try:
        conn.bind((source, 0))
        conn.connect((eip, 80))
        conn.sendall(b"GET / HTTP/1.0\r\nHost: eip\r\n\r\n")
        answered = bool(conn.recv(64))
    except OSError:
        answered = False
    finally:
        conn.close()
    tries.append([round(start, 3), answered])
    time.sleep(max(0.0, interval - (time.monotonic() - start)))
print(json.dumps(tries))
"""


def start_probe(
    topology: HasClient, ip: str, seconds: float, interval: float = 0.05
) -> subprocess.Popen[str]:
    """Probe `ip`:80 from the client namespace in the background for `seconds` at most (SIGTERM
    ends it sooner); `probe_outages(process)` reads the result."""
    argv = [sys.executable, "-c", PROBE, ip, topology.client_address, str(seconds), str(interval)]
    return subprocess.Popen(
        ["ip", "netns", "exec", topology.client_ns, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def probe_outages(process: subprocess.Popen[str], timeout: float) -> tuple[int, int, float]:
    """(tries, failed, longest run of failed tries in seconds, from the first failure of the
    run to the next answered try) of a finished probe."""
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"probe failed: {err}")
    tries = json.loads(out)
    failed = sum(1 for _, answered in tries if not answered)
    longest, since = 0.0, None
    for when, answered in tries:
        if not answered and since is None:
            since = when
        elif answered and since is not None:
            longest, since = max(longest, when - since), None
    if since is not None:
        longest = max(longest, tries[-1][0] - since)
    return len(tries), failed, longest


def wait_answered(topology: HasClient, ip: str, timeout: float = 60, *, source: str = "") -> None:
    """Until 10 connections in a row to `ip`:80 from the client (from `source`, see
    count_answers) are answered. A new EIP may be in the router's FIB a moment before
    kube-proxy on the node has its rules (kube-proxy syncs at most once a second): meanwhile
    the node refuses connections."""
    ports = iter(range(40000, 60000, 10))

    def answered() -> bool:
        got = count_answers(topology, ip, next(ports), 10, budget=10, timeout=30, source=source)
        return not [answer for answer in got if answer.startswith("error")]

    wait_for(answered, timeout, f"TCP to {ip}:80 answered", interval=0.2)


def serve_node_name(
    node_netns: str,
    name: str,
    log_dir: Path,
    *,
    transparent: bool = False,
    dual_stack: bool = False,
) -> Daemon:
    """Start `http-<name>`: HTTP on 0.0.0.0:80 in the node's namespace (`dual_stack`: on
    [::]:80, for IPv4 and IPv6), answering the node's name, logging to
    `<log_dir>/http-<name>.log`. A reply from an IPv4 address that is not local (an EIP routed
    to the host, not assigned to it) needs `transparent`, a socket with IP_TRANSPARENT as
    TPROXY-style proxies use."""
    return Daemon(
        f"http-{name}",
        [
            sys.executable,
            "-c",
            SERVER,
            name,
            "transparent" if transparent else "plain",
            "dual" if dual_stack else "ipv4",
        ],
        log_dir / f"http-{name}.log",
        netns=node_netns,
    ).start()


def count_answers(
    topology: HasClient,
    ip: str,
    first_port: int,
    count: int,
    *,
    budget: int,
    timeout: float,
    source: str = "",
) -> Counter[str]:
    """`count` connections to `ip`:80 from the client namespace, from source ports
    `first_port`, `first_port + 1`, ... of `source` (default: the client's IPv4 address; an
    IPv6 `ip` needs the client's IPv6 one); each connection times out after 2 s, and those not
    started within `budget` seconds count as "error: deadline". `timeout` bounds the whole
    client process. Returns how many connections got each answer (a node's name or
    "error: ...")."""
    out = netns.run(
        [
            sys.executable,
            "-c",
            CLIENT,
            ip,
            source or topology.client_address,
            str(first_port),
            str(count),
            str(budget),
        ],
        netns=topology.client_ns,
        timeout=timeout,
    )
    return Counter(json.loads(out))
