"""Watch a namespace's kernel FIB through netlink, to time route changes to the millisecond.

Polling `ip route` costs a process per look (~5 ms); a netlink socket joined to the route
multicast groups hears each change as the kernel makes it. The socket is opened inside the
namespace (setns on this thread, then back) and read by a thread; pyroute2 only parses.
Used by the benchmarks: BIRD-installed routes (RTA_MULTIPATH or RTA_GATEWAY); FRR's nexthop
objects (RTA_NH_ID) are not resolved here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from porter_lab import netns as _netns
from porter_lab.netlink import NetlinkWatcher

_RTMGRP_IPV4_ROUTE = 0x40
_RTMGRP_IPV6_ROUTE = 0x400


def _hops(msg: Any) -> frozenset[str]:
    multipath = msg.get_attr("RTA_MULTIPATH")
    if multipath:
        return frozenset(str(m.get_attr("RTA_GATEWAY")) for m in multipath)
    gateway = msg.get_attr("RTA_GATEWAY")
    return frozenset({str(gateway)}) if gateway else frozenset()


class FibWatcher(NetlinkWatcher):
    """Host routes (/32, /128) of one namespace's main table, kept current from events."""

    def __init__(self, netns: str) -> None:
        super().__init__(netns, _RTMGRP_IPV4_ROUTE | _RTMGRP_IPV6_ROUTE, buffer=64 << 20)
        # Events from now on are buffered by the socket; the current state from `ip route`.
        self.routes: dict[str, frozenset[str]] = self._read()
        self.start()

    def _read(self) -> dict[str, frozenset[str]]:
        return {prefix: frozenset(h) for prefix, h in _netns.host_routes(self.netns).items()}

    def resync(self) -> None:
        fresh = self._read()
        with self.changed:
            self.routes = fresh
            self.changed.notify_all()

    def apply(self, messages: list[Any]) -> None:
        for msg in messages:
            dst = msg.get_attr("RTA_DST")
            if dst is None or msg.get("dst_len") not in (32, 128) or msg.get("table") != 254:
                continue
            prefix = f"{dst}/{msg.get('dst_len')}"
            if msg.get("event") == "RTM_DELROUTE":
                self.routes.pop(prefix, None)
            elif msg.get("event") == "RTM_NEWROUTE":
                self.routes[prefix] = _hops(msg)

    def wait(self, prefix: str, hops: frozenset[str], timeout: float) -> float:
        """Block until `prefix` has exactly `hops` (empty: absent); the monotonic time it did."""
        return super().wait_until(
            lambda: self.routes.get(prefix, frozenset()) == hops,
            timeout,
            f"{prefix} with next hops {sorted(hops)}",
        )

    def wait_until(  # type: ignore[override]
        self, predicate: Callable[[dict[str, frozenset[str]]], bool], timeout: float
    ) -> float:
        """Block until `predicate(routes)` holds; the monotonic time it did (TimeoutError)."""
        return super().wait_until(lambda: predicate(self.routes), timeout, "FIB condition")
