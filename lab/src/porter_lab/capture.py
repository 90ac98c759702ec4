"""One link's frames, read in a namespace by a thread: the loop the lab's captures share.

An AF_PACKET socket opened inside the namespace (setns on this thread, then back) and bound
to the link; a thread waits on it and hands each frame the link received (never those it
sent) to `handle` with the monotonic time it was read. Subclasses: bgpwire.UpdateCapture (BGP
UPDATEs at a router), l2watch.AnswerCapture (ARP and NDP answers at a client).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import ClassVar, Self

from porter_lb.host.netns import entered

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800


class LinkCapture:
    """The socket and the thread; a subclass (a dataclass with `netns` and `link` fields)
    says which frames (`protocol`), how long one wait lasts (`wait`, the latest a `tick` runs)
    and what to do with a frame (`handle`)."""

    netns: str
    link: str
    protocol: ClassVar[int] = ETH_P_ALL
    wait: ClassVar[float] = 0.05
    thread_name: ClassVar[str] = "capture"

    def start(self) -> Self:
        with entered(self.netns):
            kind = socket.htons(self.protocol)
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, kind)
            self.sock.bind((self.link, self.protocol))
        self.opened()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(OSError):
            self.sock.close()

    def opened(self) -> None:
        """Once the socket is open, before the thread starts (buffer size, own addresses)."""

    def tick(self, now: float) -> None:
        """Before each wait (e.g. to send a probe)."""

    def handle(self, frame: bytes, at: float) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick(time.monotonic())
            readable, _, _ = select.select([self.sock], [], [], self.wait)
            if not readable:
                continue
            try:
                frame, address = self.sock.recvfrom(65536)
            except OSError:
                return  # the link went (the bed is being taken down)
            if address[2] != socket.PACKET_OUTGOING:
                self.handle(frame, time.monotonic())
