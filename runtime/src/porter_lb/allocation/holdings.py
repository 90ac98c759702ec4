"""What the allocator remembers: which Service holds which address of which Eip (`Allocations`),
and an Eip's status (`pool_status`); `porter_lb.allocation.allocator` rebuilds it after a restart
from what was stored (`rebuild`).

Pure. `porter_lb.allocation.allocator` decides; this module only records, fast: the lowest free
address of a pool is found through a per-pool cursor (everything below it is held or waiting in
a min-heap of freed addresses), so handing out every address of a /16 one by one is linear, not
quadratic, and still deterministic.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

from porter_lb.model.addresses import AddressPool
from porter_lb.model.resources import (
    Pool,
    ServicePort,
    ServiceRequest,
)


@dataclass(frozen=True)
class Holding:
    """What the allocator remembers of one Service: its IPs and what sharing needs to know."""

    ips: tuple[str, ...] = ()
    sharing_key: str = ""
    ports: frozenset[ServicePort] = frozenset()
    backend_key: str = ""


class PoolStatus(TypedDict):
    """An Eip's `status`, as Porter and OpenELB write it."""

    poolSize: int
    usage: int
    used: dict[str, str]
    firstIP: str
    lastIP: str
    v4: bool
    occupied: bool
    ready: bool


_NO_HOLDERS: frozenset[str] = frozenset()


def family_of(ip: str) -> int:
    return 6 if ":" in ip else 4


def _ipv4_text(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _ipv6_text(value: int) -> str:
    return str(ipaddress.IPv6Address(value))


def family_name(family: int) -> str:
    return f"IPv{family}"


class _Cursor:
    """Finds the lowest free address of one address block without rescanning it.

    Invariant: every free address below `_next` is in the `_freed` min-heap. Entries of the
    heap may have been taken since (an explicit ask); they are dropped when met.
    """

    __slots__ = ("_first", "_freed", "_next", "_size", "_text", "version")

    def __init__(self, block: AddressPool) -> None:
        self._first = int(block.first)
        self._size = block.size
        self.version = block.version
        self._text = _ipv4_text if block.version == 4 else _ipv6_text
        self._next = 0
        self._freed: list[int] = []

    def lowest_free(self, held: Mapping[str, frozenset[str]]) -> str | None:
        freed = self._freed
        while freed:
            ip = self._text(self._first + freed[0])
            if ip not in held:
                return ip
            heapq.heappop(freed)
        while self._next < self._size:
            ip = self._text(self._first + self._next)
            if ip not in held:
                return ip
            self._next += 1
        return None

    def note_free(self, version: int, address: int) -> None:
        index = address - self._first
        if version == self.version and 0 <= index < self._next:
            heapq.heappush(self._freed, index)


class Allocations:
    """Which Services hold which IPs; changed only by `allocate`, `release` and `rebuild`.

    Read it through the methods below. It is mutated in place (copying the whole table on
    every allocation would make allocating a /16 quadratic); `copy()` gives an independent
    table to try things on. Two tables are equal when they hold the same IPs for the same
    Services from the same pools.
    """

    def __init__(self) -> None:
        self._holders: dict[str, frozenset[str]] = {}
        self._pool_of: dict[str, str] = {}
        self._ips_by_pool: dict[str, set[str]] = {}
        self._holdings: dict[str, Holding] = {}
        self._sharing_groups: dict[str, set[str]] = {}
        self._cursors: dict[AddressPool, _Cursor] = {}
        self._cursor_by_id: dict[int, tuple[AddressPool, _Cursor]] = {}
        self._last_pool_index: PoolIndex | None = None

    def holders(self, ip: str) -> frozenset[str]:
        """The keys of the Services holding `ip` (empty when it is free)."""
        return self._holders.get(ip, _NO_HOLDERS)

    def holding(self, key: str) -> Holding | None:
        return self._holdings.get(key)

    def ips_of(self, key: str) -> tuple[str, ...]:
        holding = self._holdings.get(key)
        return holding.ips if holding else ()

    def pool_of(self, ip: str) -> str | None:
        """The name of the pool `ip` was given out from, or None when it is free."""
        return self._pool_of.get(ip)

    def used(self) -> dict[str, frozenset[str]]:
        """Every held IP and its holders."""
        return dict(self._holders)

    def keys(self) -> list[str]:
        """The Services holding at least one IP, sorted."""
        return sorted(self._holdings)

    def copy(self) -> Allocations:
        other = Allocations()
        other._holders = dict(self._holders)
        other._pool_of = dict(self._pool_of)
        other._ips_by_pool = {name: set(ips) for name, ips in self._ips_by_pool.items()}
        other._holdings = dict(self._holdings)
        other._sharing_groups = {k: set(keys) for k, keys in self._sharing_groups.items()}
        return other

    def lowest_free(self, block: AddressPool) -> str | None:
        """The lowest address of `block` that no Service holds."""
        return self._cursor(block).lowest_free(self._holders)

    def sharing_group(self, sharing_key: str) -> frozenset[str]:
        """The Services holding IPs under `sharing_key`."""
        return frozenset(self._sharing_groups.get(sharing_key, ()))

    def ips_in_pool(self, pool_name: str) -> frozenset[str]:
        """The held IPs recorded as given out by Eip `pool_name`."""
        return frozenset(self._ips_by_pool.get(pool_name, ()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Allocations):
            return NotImplemented
        return (
            self._holders == other._holders
            and self._pool_of == other._pool_of
            and self._holdings == other._holdings
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        used = {ip: sorted(keys) for ip, keys in sorted(self._holders.items())}
        return f"Allocations({used})"

    def pool_index(self, pools: Sequence[Pool]) -> PoolIndex:
        """The index of `pools`, reused while the caller passes equal pools.

        A new list of pools also retires the cursors of address blocks no pool has any more
        (a cursor is only a cache: one made again later starts from the block's first address).
        """
        given = tuple(pools)
        index = self._last_pool_index
        if index is None or index.pools != given:
            index = self._last_pool_index = PoolIndex(given)
            blocks = {p.addresses for p in given}
            self._cursors = {b: c for b, c in self._cursors.items() if b in blocks}
            self._cursor_by_id.clear()
        return index

    def _cursor(self, block: AddressPool) -> _Cursor:
        # Pools are rebuilt from the same Eips again and again: look the block up by identity
        # first, and hash the (equal) value only when a new object comes in.
        known = self._cursor_by_id.get(id(block))
        if known is not None and known[0] is block:
            return known[1]
        cursor = self._cursors.get(block)
        if cursor is None:
            cursor = self._cursors[block] = _Cursor(block)
        self._cursor_by_id[id(block)] = (block, cursor)
        return cursor

    def take(self, key: str, ip: str, pool_name: str) -> None:
        holders = self._holders.get(ip)
        self._holders[ip] = frozenset((key,)) if holders is None else holders | {key}
        previous = self._pool_of.get(ip)
        if previous != pool_name:
            if previous is not None:
                self._ips_by_pool[previous].discard(ip)
            self._pool_of[ip] = pool_name
            self._ips_by_pool.setdefault(pool_name, set()).add(ip)

    def drop(self, key: str, ip: str) -> bool:
        """Remove `key` from the holders of `ip`; True if that freed the IP."""
        remaining = self._holders.get(ip, _NO_HOLDERS) - {key}
        if remaining:
            self._holders[ip] = remaining
            return False
        self._holders.pop(ip, None)
        pool_name = self._pool_of.pop(ip, None)
        if pool_name is not None:
            self._ips_by_pool[pool_name].discard(ip)
        address = ipaddress.ip_address(ip)
        for cursor in self._cursors.values():
            cursor.note_free(address.version, int(address))
        return True

    def set_holding(self, key: str, holding: Holding | None) -> None:
        previous = self._holdings.pop(key, None)
        if previous is not None and previous.sharing_key:
            group = self._sharing_groups[previous.sharing_key]
            group.discard(key)
            if not group:
                del self._sharing_groups[previous.sharing_key]
        if holding is not None and holding.ips:
            self._holdings[key] = holding
            if holding.sharing_key:
                self._sharing_groups.setdefault(holding.sharing_key, set()).add(key)


def holding_for(request: ServiceRequest, ips: tuple[str, ...] = ()) -> Holding:
    return Holding(ips, request.sharing_key, request.ports, request.backend_key)


def pool_containing(pools: Sequence[Pool], ip: str) -> Pool | None:
    return next((p for p in pools if ip in p.addresses), None)


class PoolIndex:
    """One list of pools, sorted by name and by (priority, name), and looked up by name."""

    __slots__ = ("by_name", "by_priority", "pools", "sorted")

    def __init__(self, pools: Sequence[Pool]) -> None:
        self.pools = tuple(pools)
        self.sorted = sorted(self.pools, key=lambda p: p.name)
        self.by_name = {p.name: p for p in self.sorted}
        self.by_priority = sorted(self.sorted, key=lambda p: p.priority)

    def automatic(self, request: ServiceRequest, family: int) -> list[Pool]:
        """The pools of `family` that serve `request` without being named, disabled or not.

        In the order to try them: those bound to its namespace, then the default ones, each
        group by priority (lowest value first), then name.
        """
        usable = [p for p in self.by_priority if p.version == family]
        bound = [
            p for p in usable if p.serves_namespace(request.namespace, request.namespace_labels)
        ]
        bound_ids = {id(p) for p in bound}
        return bound + [p for p in usable if p.is_default and id(p) not in bound_ids]


def release(allocations: Allocations, key: str) -> tuple[str, ...]:
    """Give up every IP the Service holds; returns the IPs that became free (no holder left)."""
    freed = tuple(ip for ip in allocations.ips_of(key) if allocations.drop(key, ip))
    allocations.set_holding(key, None)
    return freed


def pool_status(pool: Pool, allocations: Allocations) -> PoolStatus:
    """The Eip status for `pool`: size, usage and who holds which IP.

    `used` maps each held IP to its holders' keys sorted and joined by ";" (OpenELB stores one
    `namespace/name`; shared IPs list them all). `ready` is True: the pool parsed and is in
    use; the shell lowers it when the announcing side cannot serve the pool.
    """
    ips = sorted(
        (ip for ip in allocations.ips_in_pool(pool.name) if ip in pool.addresses),
        key=lambda ip: int(ipaddress.ip_address(ip)),
    )
    return PoolStatus(
        poolSize=pool.addresses.size,
        usage=len(ips),
        used={ip: ";".join(sorted(allocations.holders(ip))) for ip in ips},
        firstIP=str(pool.addresses.first),
        lastIP=str(pool.addresses.last),
        v4=pool.version == 4,
        occupied=len(ips) >= pool.addresses.size,
        ready=True,
    )
