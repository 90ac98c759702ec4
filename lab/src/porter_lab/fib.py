"""Watch a namespace's kernel FIB through netlink, to time route changes to the millisecond.

Polling `ip route` costs a process per look (~5 ms); a netlink socket joined to the route
multicast groups hears each change as the kernel makes it. The socket is opened inside the
namespace (setns on this thread, then back) and read by a thread; pyroute2 only parses.
Used by the benchmarks: BIRD-installed routes (RTA_MULTIPATH or RTA_GATEWAY); FRR's nexthop
objects (RTA_NH_ID) are not resolved here.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from porter_lab import netns as _netns
from porter_lb.layer2 import entered

_RTMGRP_IPV4_ROUTE = 0x40
_RTMGRP_IPV6_ROUTE = 0x400
_NETLINK_ROUTE = 0
_SO_RCVBUFFORCE = 33


def _hops(msg: Any) -> frozenset[str]:
    multipath = msg.get_attr("RTA_MULTIPATH")
    if multipath:
        return frozenset(str(m.get_attr("RTA_GATEWAY")) for m in multipath)
    gateway = msg.get_attr("RTA_GATEWAY")
    return frozenset({str(gateway)}) if gateway else frozenset()


def _socket_in(name: str) -> socket.socket:
    """A route-event netlink socket living in network namespace `name`."""
    with entered(name):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE)
        # Root may exceed net.core.rmem_max: 10,000 route changes arrive in one burst.
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 64 << 20)
        sock.bind((0, _RTMGRP_IPV4_ROUTE | _RTMGRP_IPV6_ROUTE))
    return sock


class FibWatcher:
    """Host routes of one namespace's main table, kept current from netlink events.

    A thread blocks on the socket and applies each event as it comes (pyroute2 may read
    several messages at once and keep some in its own backlog, so select() on its file
    descriptor can miss them: never wait on the descriptor, wait on this condition).
    """

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.overruns = 0
        self.sock = _socket_in(netns)
        self.sock.settimeout(0.2)
        self._marshal = MarshalRtnl()
        self._changed = threading.Condition()
        self._closed = False
        # Events from now on are buffered by the socket; the current state from `ip route`.
        self.routes: dict[str, frozenset[str]] = {
            prefix: frozenset(hops) for prefix, hops in _netns.host_routes(netns).items()
        }
        self._thread = threading.Thread(target=self._run, name=f"fib-{netns}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        with contextlib.suppress(OSError):
            self.sock.close()

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
                self._resync()
                continue
            with self._changed:
                for msg in messages:
                    self._apply(str(msg.get("event")), msg)
                self._changed.notify_all()

    def _resync(self) -> None:
        """Read the whole table again: what the events would have said is lost."""
        fresh = {p: frozenset(h) for p, h in _netns.host_routes(self.netns).items()}
        with self._changed:
            self.routes = fresh
            self.overruns += 1
            self._changed.notify_all()

    def _apply(self, event: str, msg: Any) -> None:
        dst = msg.get_attr("RTA_DST")
        if dst is None or msg.get("dst_len") not in (32, 128) or msg.get("table") != 254:
            return
        prefix = f"{dst}/{msg.get('dst_len')}"
        if event == "RTM_DELROUTE":
            self.routes.pop(prefix, None)
        elif event == "RTM_NEWROUTE":
            self.routes[prefix] = _hops(msg)

    def wait(self, prefix: str, hops: frozenset[str], timeout: float) -> float:
        """Block until `prefix` has exactly `hops` (empty: absent); the monotonic time it did.

        Raises TimeoutError naming what was seen instead.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.routes.get(prefix, frozenset()) != hops:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{prefix}: wanted next hops {sorted(hops)}, kernel has "
                        f"{sorted(self.routes.get(prefix, ()))}"
                    )
                self._changed.wait(remaining)
            return time.monotonic()

    def wait_until(
        self, predicate: Callable[[dict[str, frozenset[str]]], bool], timeout: float
    ) -> float:
        """Block until `predicate(routes)` holds; the monotonic time it did (TimeoutError)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.routes):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"FIB of {self.netns}: condition not met in {timeout}s")
                if not self._changed.wait(min(remaining, 2.0)):
                    # Quiet for 2 s yet not there: make sure no event was missed.
                    self._changed.release()
                    try:
                        self._resync()
                    finally:
                        self._changed.acquire()
            return time.monotonic()
