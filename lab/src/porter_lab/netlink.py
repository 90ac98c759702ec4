"""A netlink event reader for one network namespace, shared by the bed's watchers.

The socket is opened inside the namespace (this thread enters it and comes back) and read by
a thread of its own; subclasses apply each batch of parsed messages under `changed` and get
`resync()` called when events were lost. Waiters block on the condition, never on the
socket: pyroute2 only parses here.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from porter_lb.host.netns import entered

_NETLINK_ROUTE = 0
_SO_RCVBUFFORCE = 33


class NetlinkWatcher:
    """Subclasses implement `apply(messages)` (called with `changed` held) and may override
    `resync()`; they fill their state before calling `start()`."""

    def __init__(self, netns: str, groups: int, buffer: int = 1 << 20) -> None:
        self.netns = netns
        self.overruns = 0
        with entered(netns):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE)
            # Root may exceed net.core.rmem_max: bursts of thousands of changes arrive at once.
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, buffer)
            self.sock.bind((0, groups))
        self.sock.settimeout(0.2)
        self.changed = threading.Condition()
        self._marshal = MarshalRtnl()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"netlink-{netns}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        with contextlib.suppress(OSError):
            self.sock.close()

    def apply(self, messages: list[Any]) -> None:
        raise NotImplementedError

    def resync(self) -> None:
        """Events were lost: read the state afresh (default: nothing to do)."""

    def _run(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(1 << 20)
                messages = list(self._marshal.parse(data))
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - lost events (ENOBUFS) or an unparsable burst
                if self._closed:
                    return
                with self.changed:
                    self.overruns += 1
                self.resync()
                continue
            with self.changed:
                self.apply(messages)
                self.changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """Block until `predicate()` (called with `changed` held) holds; the monotonic time it
        did. Quiet for 2 s yet not there: resync, in case an event was missed."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.netns}: {what} not seen within {timeout}s")
                if not self.changed.wait(min(remaining, 2.0)):
                    self.changed.release()
                    try:
                        self.resync()
                    finally:
                        self.changed.acquire()
            return time.monotonic()
