"""Which node answered: an HTTP server in a node namespace that answers with the node's name,
and a client in the client namespace that opens one connection per source port to an address
and counts the answers. Used by the demo (`porter-lab demo`) and the data-path tests."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from porter_lab import netns
from porter_lab.processes import Daemon
from porter_lab.topology import Topology

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
    conn = socket.socket()
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

# A node's HTTP server: answers every GET with the node's name, on 0.0.0.0:80.
SERVER = r"""
import http.server, socket, socketserver, sys
name, transparent = sys.argv[1], sys.argv[2] == "transparent"

class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        if transparent:  # may answer from an address that is not local (IP_TRANSPARENT)
            self.socket.setsockopt(socket.SOL_IP, getattr(socket, "IP_TRANSPARENT", 19), 1)
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

Server(("0.0.0.0", 80), Answer).serve_forever()
"""


def serve_node_name(
    node_netns: str, name: str, log_dir: Path, *, transparent: bool = False
) -> Daemon:
    """Start `http-<name>`: HTTP on 0.0.0.0:80 in the node's namespace, answering the node's
    name, logging to `<log_dir>/http-<name>.log`. A reply from an address that is not local
    (an EIP routed to the host, not assigned to it) needs `transparent`, a socket with
    IP_TRANSPARENT as TPROXY-style proxies use."""
    return Daemon(
        f"http-{name}",
        [sys.executable, "-c", SERVER, name, "transparent" if transparent else "plain"],
        log_dir / f"http-{name}.log",
        netns=node_netns,
    ).start()


def count_answers(
    topology: Topology, ip: str, first_port: int, count: int, *, budget: int, timeout: float
) -> Counter[str]:
    """`count` connections to `ip`:80 from the client namespace, from source ports
    `first_port`, `first_port + 1`, ...; each connection times out after 2 s, and those not
    started within `budget` seconds count as "error: deadline". `timeout` bounds the whole
    client process. Returns how many connections got each answer (a node's name or
    "error: ...")."""
    out = netns.run(
        [
            sys.executable,
            "-c",
            CLIENT,
            ip,
            topology.client_address,
            str(first_port),
            str(count),
            str(budget),
        ],
        netns=topology.client_ns,
        timeout=timeout,
    )
    return Counter(json.loads(out))
