"""A TCP relay between porter-lb's processes and the API server, that the bed can cut.

`cut()` closes every relayed connection and refuses new ones (the listening socket stays
bound, connections are accepted and dropped at once, as a dead load balancer in front of an
API server would), so porter-lb sees the API server gone while the test itself still reaches
it directly and changes the cluster meanwhile. `restore()` relays again. TLS passes through
untouched: the API server's certificate names 127.0.0.1, whatever the port.

Loopback only: it listens on 127.0.0.1 and relays to the API server's loopback port.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import threading
from pathlib import Path


class APIProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._cut = False
        self._closed = False
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._run, name="api-proxy", daemon=True)

    def start(self) -> APIProxy:
        self._thread.start()
        return self

    def kubeconfig(self, original: Path, copy: Path) -> Path:
        """A copy of `original` whose server is this relay."""
        text = original.read_text()
        copy.write_text(re.sub(r"server: https://127\.0\.0\.1:\d+", self.url, text))
        copy.chmod(0o600)
        return copy

    @property
    def url(self) -> str:
        return f"server: https://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until restore()."""
        with self._lock:
            self._cut = True
            for sock in list(self._peers):
                self._close(sock)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        with self._lock:
            for sock in list(self._peers):
                self._close(sock)
        self._selector.close()
        self._listener.close()

    def _close(self, sock: socket.socket) -> None:
        """Close `sock` and its peer. Caller holds the lock."""
        peer = self._peers.pop(sock, None)
        for one in (sock, peer):
            if one is None:
                continue
            self._peers.pop(one, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(one)
            with contextlib.suppress(OSError):
                one.close()

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        if self._cut:
            self.refused += 1
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            client.close()  # with linger 0: a reset, as from a host that is gone
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        self.accepted += 1
        for one in (client, upstream):
            one.setblocking(False)
        self._peers[client], self._peers[upstream] = upstream, client
        self._selector.register(client, selectors.EVENT_READ, None)
        self._selector.register(upstream, selectors.EVENT_READ, None)

    def _relay(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionError("closed")
            peer.settimeout(10)  # loopback: blocks only while the reader is busy, and not long
            peer.sendall(data)
            peer.setblocking(False)
        except OSError:
            self._close(sock)

    def _run(self) -> None:
        while not self._closed:
            for key, _ in self._selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                with self._lock:
                    if sock is self._listener:
                        self._accept()
                    else:
                        self._relay(sock)
