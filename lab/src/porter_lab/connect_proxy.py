"""An HTTP CONNECT proxy on loopback that sends Service names to local ports.

The bed has no kube-proxy, cluster DNS or pod network, so a kube-apiserver cannot reach a
webhook through its Service reference. Started with ``HTTPS_PROXY`` pointing here (and
``NO_PROXY`` covering loopback), it asks this proxy to ``CONNECT
porter-lb-webhook.NS.svc:443``; the proxy tunnels that to the local port the test mapped the
name to, and TLS runs end to end: the API server checks the webhook's certificate against the
configuration's caBundle for the Service's name, as in a cluster. Unmapped names, and mapped
ports nobody listens on, get ``502``: the API server sees a failed call (failurePolicy).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import socketserver
import threading
from dataclasses import dataclass, field

TUNNEL_SECONDS = 30.0  # a webhook call lasts at most its timeoutSeconds


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(4096).decode("latin-1").split()
        while self.rfile.readline(4096) not in (b"\r\n", b"\n", b""):
            pass  # the request's headers
        if len(line) < 2 or line[0] != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        self.server.tunnels.append(line[1])
        port = self.server.routes.get(line[1])
        try:
            if port is None:
                raise OSError(f"no route for {line[1]}")
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            return
        with upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _pipe(self.connection, upstream)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while True:
            ready = selector.select(TUNNEL_SECONDS)
            if not ready:
                return
            for key, _ in ready:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    routes: dict[str, int]
    tunnels: list[str]


@dataclass
class ConnectProxy:
    """`routes` maps "host:port" (as CONNECT names it) to a loopback port; `tunnels` records
    each CONNECT asked for, by name, whether or not it could be opened."""

    routes: dict[str, int] = field(default_factory=dict)
    tunnels: list[str] = field(default_factory=list)
    _server: _Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ConnectProxy:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.routes = self.routes
        self._server.tunnels = self.tunnels
        threading.Thread(
            target=self._server.serve_forever, name="connect-proxy", daemon=True
        ).start()
        return self

    def environment(self) -> dict[str, str]:
        """What a process needs in its environment to call Services through this proxy."""
        return {
            "HTTPS_PROXY": self.url,
            "https_proxy": self.url,
            "NO_PROXY": "127.0.0.1,localhost,::1",
            "no_proxy": "127.0.0.1,localhost,::1",
        }

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown()
                self._server.server_close()
