"""Watch a namespace's kernel FIB through netlink, to time route changes to the millisecond.

Polling `ip route` costs a process per look (~5 ms); a netlink socket joined to the route
multicast groups hears each change as the kernel makes it. The socket is opened inside the
namespace (setns on this thread, then back) and read by a thread; pyroute2 only parses.
Used by the benchmarks: BIRD-installed routes (RTA_MULTIPATH or RTA_GATEWAY); FRR's nexthop
objects (RTA_NH_ID) are not resolved here: start FRR with `Frr(kernel_nexthop_groups=False)`.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any

from porter_lab import netns as _netns
from porter_lab.netlink import NetlinkWatcher

_RTMGRP_IPV4_ROUTE = 0x40
_RTMGRP_IPV6_ROUTE = 0x400


def _host_prefix(msg: Any) -> str | None:
    """The host prefix (/32 of IPv4, /128 of IPv6) a route message is about; None for others."""
    dst = msg.get_attr("RTA_DST")
    if dst is None or msg.get("dst_len") != ipaddress.ip_address(dst).max_prefixlen:
        return None
    return f"{dst}/{msg.get('dst_len')}"


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
            prefix = _host_prefix(msg)
            if prefix is None or msg.get("table") != 254:
                continue
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


Change = tuple[float, str, frozenset[str], frozenset[str]]  # (monotonic time, prefix, old, new)


class FibLog(FibWatcher):
    """The host routes of one namespace, plus a log of every change to a prefix in `pool` (or
    in one of `more_pools`, of either IP version): "no next hop lost" becomes a count of
    events, not a sample."""

    def __init__(self, netns: str, pool: str, *more_pools: str) -> None:
        self.pools = tuple(ipaddress.ip_network(p) for p in (pool, *more_pools))
        self.changes: list[Change] = []
        super().__init__(netns)

    def in_pools(self, prefix: str) -> bool:
        """Whether host prefix `prefix` ("10.201.0.1/32", "2001:db8::1/128") is in a pool."""
        address = ipaddress.ip_address(prefix.split("/", 1)[0])
        return any(address in pool for pool in self.pools)

    def apply(self, messages: list[Any]) -> None:
        before = {p: self.routes.get(p, frozenset()) for p in self._prefixes(messages)}
        super().apply(messages)
        now = time.monotonic()
        for prefix, old in before.items():
            new = self.routes.get(prefix, frozenset())
            if new != old:
                self.changes.append((now, prefix, old, new))

    def _prefixes(self, messages: list[Any]) -> set[str]:
        found = set()
        for msg in messages:
            prefix = _host_prefix(msg)
            if prefix is not None and self.in_pools(prefix):
                found.add(prefix)
        return found

    def since(self, started: float) -> list[Change]:
        with self.changed:
            return [c for c in self.changes if c[0] >= started]

    def lost_next_hops(self, started: float, until: float | None = None) -> dict[str, set[str]]:
        """Prefix -> the next hops it lost (or had when it vanished) at some change in
        [started, until]."""
        lost: dict[str, set[str]] = {}
        for when, prefix, old, new in self.since(started):
            if (until is None or when <= until) and old - new:
                lost.setdefault(prefix, set()).update(old - new)
        return lost

    def snapshot(self) -> dict[str, frozenset[str]]:
        """The routes of the pools' prefixes now."""
        with self.changed:
            return {p: h for p, h in self.routes.items() if self.in_pools(p)}
