"""IP allocation: which Service holds which address of which Eip.

Pure and deterministic: the same pools, state and requests always give the same IPs, whatever
the order Services were seen in by the watch. The shell feeds in `Pool`s and `ServiceRequest`s
(see `porter_lb.model.resources`), writes `Allocated.ips` to the Service status and
`pool_status()` to the Eip status, and turns a `Refused` into an Event.

The rules:

* An explicit ask wins or is refused, never silently ignored: a requested IP must lie in an
  Eip (and in the requested Eip when both are given); a requested Eip must exist and not be
  disabled.
* Otherwise the Service gets the lowest available address of the first pool, in this order,
  that has one: the pools bound to its namespace (by `spec.namespaces` or
  `spec.namespaceSelector`) by priority (lowest value first) then name; then the default
  pools, likewise ordered. Other pools are only given out when asked for. Binding a pool to
  namespaces orders the automatic choice; like OpenELB's "specified allocation", it does not
  stop a Service of another namespace from naming the pool or one of its IPs.
* A Service that holds IPs keeps them while they still satisfy its request, even in a pool
  since disabled: allocating twice gives the same answer and changes nothing. When the request
  changes so the held IPs no longer satisfy it, they are given up and new ones chosen; if
  that is refused, the Service holds nothing (the Service's status must then be cleared):
  an allocation always reflects the current request, or nothing.
* Several Services hold one IP only if all carry the same non-empty sharing key, use
  disjoint (protocol, port) sets and have the same backends (MetalLB's rule; backends only
  differ under externalTrafficPolicy Local). Anything else is refused; there is no silent
  sharing. With a sharing key, automatic allocation may choose an IP already held by
  compatible Services, if it is the lowest available one.
* Dual-stack: one IP per family, each from a pool of that family. SingleStack and
  PreferDualStack need one of the Service's families to succeed (an explicit ask still
  must); RequireDualStack needs all.
* An IP is freed only when its last holder releases it.

Speed: the lowest free address of a pool is found through a per-pool cursor (everything below
it is held or waiting in a min-heap of freed addresses), so handing out every address of a /16
one by one is linear, not quadratic, and still deterministic.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypedDict

from porter_lb.model.addresses import AddressPool
from porter_lb.model.resources import (
    DEFAULT_POOL_ANNOTATIONS,
    SHARING_KEY_ANNOTATION,
    Pool,
    ServicePort,
    ServiceRequest,
)

__all__ = [
    "Allocated",
    "Allocations",
    "Holding",
    "PoolStatus",
    "RefusalReason",
    "Refused",
    "allocate",
    "allocate_all",
    "pool_status",
    "rebuild",
    "release",
]


class RefusalReason(StrEnum):
    """Why a Service was given no IP; the values are Kubernetes Event reasons."""

    IP_NOT_IN_POOL = "IPNotInPool"
    IP_NOT_IN_REQUESTED_POOL = "IPNotInRequestedPool"
    IP_FAMILY_NOT_REQUESTED = "IPFamilyNotRequested"
    POOL_NOT_FOUND = "PoolNotFound"
    POOL_DISABLED = "PoolDisabled"
    FAMILY_UNAVAILABLE = "FamilyUnavailable"
    NO_POOL = "NoPool"
    POOL_EXHAUSTED = "PoolExhausted"
    IP_IN_USE = "IPInUse"
    SHARING_KEY_MISMATCH = "SharingKeyMismatch"
    BACKEND_MISMATCH = "BackendMismatch"
    PORT_CONFLICT = "PortConflict"


@dataclass(frozen=True)
class Allocated:
    """The IPs a Service holds (one per family, primary family first) and their pools."""

    key: str
    ips: tuple[str, ...]
    pools: tuple[str, ...]


@dataclass(frozen=True)
class Refused:
    """A Service is given no IP: `reason` for machines, `message` names Service, field, rule."""

    key: str
    reason: RefusalReason
    message: str


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


def _family(ip: str) -> int:
    return 6 if ":" in ip else 4


def _ipv4_text(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def _ipv6_text(value: int) -> str:
    return str(ipaddress.IPv6Address(value))


def _family_name(family: int) -> str:
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
        self._last_pool_index: _PoolIndex | None = None

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

    def _pool_index(self, pools: Sequence[Pool]) -> _PoolIndex:
        """The index of `pools`, reused while the caller passes equal pools.

        A new list of pools also retires the cursors of address blocks no pool has any more
        (a cursor is only a cache: one made again later starts from the block's first address).
        """
        given = tuple(pools)
        index = self._last_pool_index
        if index is None or index.pools != given:
            index = self._last_pool_index = _PoolIndex(given)
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

    def _take(self, key: str, ip: str, pool_name: str) -> None:
        holders = self._holders.get(ip)
        self._holders[ip] = frozenset((key,)) if holders is None else holders | {key}
        previous = self._pool_of.get(ip)
        if previous != pool_name:
            if previous is not None:
                self._ips_by_pool[previous].discard(ip)
            self._pool_of[ip] = pool_name
            self._ips_by_pool.setdefault(pool_name, set()).add(ip)

    def _drop(self, key: str, ip: str) -> bool:
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

    def _set_holding(self, key: str, holding: Holding | None) -> None:
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


def _holding_for(request: ServiceRequest, ips: tuple[str, ...] = ()) -> Holding:
    return Holding(ips, request.sharing_key, request.ports, request.backend_key)


def _ports_text(ports: Iterable[ServicePort]) -> str:
    return ", ".join(f"{p.protocol}/{p.port}" for p in sorted(ports))


def _sharing_conflict(
    allocations: Allocations, ip: str, key: str, wanted: Holding
) -> tuple[RefusalReason, str] | None:
    """Why `key`, holding as `wanted` describes, may not hold `ip` too; None if it may."""
    others = sorted(allocations.holders(ip) - {key})
    if not others:
        return None
    if not wanted.sharing_key:
        return (
            RefusalReason.IP_IN_USE,
            f"held by {', '.join(repr(o) for o in others)}; Services share an IP only when "
            f"all carry the same annotation {SHARING_KEY_ANNOTATION}",
        )
    for other in others:
        theirs = allocations.holding(other) or Holding()
        if theirs.sharing_key != wanted.sharing_key:
            return (
                RefusalReason.SHARING_KEY_MISMATCH,
                f"held by '{other}', whose annotation {SHARING_KEY_ANNOTATION} is "
                f"'{theirs.sharing_key}', not '{wanted.sharing_key}'",
            )
        if theirs.backend_key != wanted.backend_key:
            return (
                RefusalReason.BACKEND_MISMATCH,
                f"held by '{other}', which has other backends; with externalTrafficPolicy "
                "Local, Services share an IP only when both are Local and select the same pods",
            )
        clash = theirs.ports & wanted.ports
        if clash:
            return (
                RefusalReason.PORT_CONFLICT,
                f"held by '{other}', which also uses {_ports_text(clash)}; Services sharing "
                "an IP must use different ports",
            )
    return None


def _pool_containing(pools: Sequence[Pool], ip: str) -> Pool | None:
    return next((p for p in pools if ip in p.addresses), None)


class _PoolIndex:
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


def _lowest_available(allocations: Allocations, pool: Pool, request: ServiceRequest) -> str | None:
    """The lowest address of `pool` that is free, or that `request` may share."""
    best = allocations._cursor(pool.addresses).lowest_free(allocations._holders)
    if not request.sharing_key:
        return best
    best_value = int(ipaddress.ip_address(best)) if best else None
    wanted = _holding_for(request)
    for other in sorted(allocations._sharing_groups.get(request.sharing_key, ())):
        if other == request.key:
            continue
        for ip in allocations.ips_of(other):
            value = int(ipaddress.ip_address(ip))
            if (
                (best_value is None or value < best_value)
                and ip in pool.addresses
                and _sharing_conflict(allocations, ip, request.key, wanted) is None
            ):
                best, best_value = ip, value
    return best


class _Refusal(Exception):
    """Internal: one family of a request cannot be served; `hard` when an explicit ask fails."""

    def __init__(self, reason: RefusalReason, message: str, *, hard: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.hard = hard


def _requested_by_family(request: ServiceRequest) -> dict[int, str]:
    asked: dict[int, str] = {}
    for text in request.requested_ips:
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            raise _Refusal(
                RefusalReason.IP_NOT_IN_POOL,
                f"{request.requested_ips_field} '{text}': not an IP address",
            ) from None
        asked.setdefault(address.version, str(address))
    for family, ip in asked.items():
        if family not in request.families:
            wanted = " and ".join(_family_name(f) for f in request.families)
            raise _Refusal(
                RefusalReason.IP_FAMILY_NOT_REQUESTED,
                f"{request.requested_ips_field} '{ip}': an {_family_name(family)} address, but "
                f"the Service's IP families (spec.ipFamilies, spec.ipFamilyPolicy) are {wanted}",
            )
    return asked


class _Planner:
    """Chooses, family by family, the IP one request should hold; changes nothing."""

    def __init__(
        self, pools: _PoolIndex, allocations: Allocations, request: ServiceRequest
    ) -> None:
        self.index = pools
        self.pools = pools.sorted
        self.by_name = pools.by_name
        self.allocations = allocations
        self.request = request
        self.held = allocations.holding(request.key)
        self.asked_ips = _requested_by_family(request) if request.requested_ips else {}
        self.asked_pool: Pool | None = None
        if request.requested_pool:
            self.asked_pool = self.by_name.get(request.requested_pool)
            if self.asked_pool is None:
                raise _Refusal(
                    RefusalReason.POOL_NOT_FOUND,
                    f"{request.requested_pool_field} '{request.requested_pool}': no Eip of "
                    "that name",
                )

    def kept(self, family: int) -> tuple[str, str] | None:
        """The IP of `family` the Service holds, and its pool, if it still satisfies the ask."""
        if self.held is None:
            return None
        held_ip = next((ip for ip in self.held.ips if _family(ip) == family), None)
        if held_ip is None or self.asked_ips.get(family, held_ip) != held_ip:
            return None
        pool = self.by_name.get(self.allocations.pool_of(held_ip) or "")
        if pool is None or held_ip not in pool.addresses:
            pool = _pool_containing(self.pools, held_ip)
        if pool is None or (self.asked_pool is not None and pool is not self.asked_pool):
            return None
        wanted = _holding_for(self.request)
        if _sharing_conflict(self.allocations, held_ip, self.request.key, wanted):
            return None
        return held_ip, pool.name

    def chosen(self, family: int) -> tuple[str, str]:
        """A new IP of `family` for the Service, and its pool; raises _Refusal."""
        if family in self.asked_ips:
            return self._asked_ip(self.asked_ips[family])
        request = self.request
        soft = request.ip_family_policy == "PreferDualStack"
        if self.asked_pool is not None:
            pool = self.asked_pool
            if pool.version != family:
                raise _Refusal(
                    RefusalReason.FAMILY_UNAVAILABLE,
                    f"{request.requested_pool_field} '{pool.name}': the Eip holds "
                    f"{_family_name(pool.version)} addresses; the Service also needs "
                    f"{_family_name(family)} (spec.ipFamilies, spec.ipFamilyPolicy)",
                    hard=False,
                )
            if pool.disabled:
                raise _Refusal(
                    RefusalReason.POOL_DISABLED,
                    f"{request.requested_pool_field} '{pool.name}': the Eip is disabled "
                    "(spec.disable) and gives no new IPs",
                )
            candidates = [pool]
        else:
            serving = self.index.automatic(request, family)
            candidates = [p for p in serving if not p.disabled]
            if serving and not candidates:
                raise _Refusal(
                    RefusalReason.POOL_DISABLED,
                    f"every {_family_name(family)} Eip serving namespace '{request.namespace}' "
                    f"({', '.join(repr(p.name) for p in serving)}) is disabled (spec.disable) "
                    "and gives no new IPs",
                    hard=not soft,
                )
            if not candidates:
                raise _Refusal(
                    RefusalReason.NO_POOL,
                    f"no {_family_name(family)} Eip serves namespace '{request.namespace}': "
                    "none is bound to it (spec.namespaces, spec.namespaceSelector) and none is "
                    f"the default (annotation {DEFAULT_POOL_ANNOTATIONS[0]}); name one with "
                    f"{request.requested_pool_field}",
                    hard=not soft,
                )
        for pool in candidates:
            ip = _lowest_available(self.allocations, pool, request)
            if ip is not None:
                return ip, pool.name
        names = ", ".join(f"'{p.name}'" for p in candidates)
        raise _Refusal(
            RefusalReason.POOL_EXHAUSTED,
            f"every {_family_name(family)} address of Eip {names} is in use"
            + (
                f" (sharing needs the same {SHARING_KEY_ANNOTATION} and other ports)"
                if request.sharing_key
                else ""
            ),
            hard=not soft,
        )

    def _asked_ip(self, ip: str) -> tuple[str, str]:
        request = self.request
        field = f"{request.requested_ips_field} '{ip}'"
        pool = self.asked_pool or _pool_containing(self.pools, ip)
        if pool is None:
            raise _Refusal(
                RefusalReason.IP_NOT_IN_POOL,
                f"{field}: the address is in no Eip; an IP must come from an Eip's spec.address",
            )
        if ip not in pool.addresses:
            raise _Refusal(
                RefusalReason.IP_NOT_IN_REQUESTED_POOL,
                f"{field}: not in Eip '{pool.name}' ({pool.addresses.first}-"
                f"{pool.addresses.last}), the Eip named by {request.requested_pool_field}",
            )
        conflict = _sharing_conflict(self.allocations, ip, request.key, _holding_for(request))
        if conflict:
            raise _Refusal(conflict[0], f"{field}: {conflict[1]}")
        if pool.disabled:
            raise _Refusal(
                RefusalReason.POOL_DISABLED,
                f"{field}: Eip '{pool.name}' is disabled (spec.disable) and gives no new IPs",
            )
        return ip, pool.name


def _plan(
    pools: Sequence[Pool], allocations: Allocations, request: ServiceRequest
) -> list[tuple[str, str]] | Refused:
    def refused(refusal: _Refusal) -> Refused:
        return Refused(request.key, refusal.reason, f"Service '{request.key}': {refusal.message}")

    try:
        planner = _Planner(allocations._pool_index(pools), allocations, request)
    except _Refusal as refusal:
        return refused(refusal)
    plan: list[tuple[str, str]] = []
    failures: list[_Refusal] = []
    for family in dict.fromkeys(request.families):
        kept = planner.kept(family)
        if kept is not None:
            plan.append(kept)
            continue
        try:
            plan.append(planner.chosen(family))
        except _Refusal as refusal:
            if refusal.hard or request.ip_family_policy == "RequireDualStack":
                return refused(refusal)
            failures.append(refusal)
    if not plan:
        return refused(failures[0])
    return plan


def allocate(
    pools: Sequence[Pool], allocations: Allocations, request: ServiceRequest
) -> Allocated | Refused:
    """Give `request`'s Service the IPs its request calls for, or refuse and say why.

    Updates `allocations` in place. Idempotent: a second call with the same pools and
    request returns the same answer and changes nothing. On `Refused` the Service holds no IP
    afterwards.
    """
    plan = _plan(pools, allocations, request)
    if isinstance(plan, Refused):
        release(allocations, request.key)
        return plan
    ips = tuple([ip for ip, _ in plan])
    for ip in allocations.ips_of(request.key):
        if ip not in ips:
            allocations._drop(request.key, ip)
    for ip, pool_name in plan:
        allocations._take(request.key, ip, pool_name)
    allocations._set_holding(request.key, _holding_for(request, ips))
    return Allocated(request.key, ips, tuple([pool for _, pool in plan]))


def allocate_all(
    pools: Sequence[Pool], allocations: Allocations, requests: Iterable[ServiceRequest]
) -> dict[str, Allocated | Refused]:
    """`allocate` every request in key order, so contention resolves the same way each time."""
    return {
        request.key: allocate(pools, allocations, request)
        for request in sorted(requests, key=lambda r: r.key)
    }


def release(allocations: Allocations, key: str) -> tuple[str, ...]:
    """Give up every IP the Service holds; returns the IPs that became free (no holder left)."""
    freed = tuple(ip for ip in allocations.ips_of(key) if allocations._drop(key, ip))
    allocations._set_holding(key, None)
    return freed


def _canonical(ip: str) -> str | None:
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return None


def rebuild(
    pools: Sequence[Pool],
    persisted_used: Mapping[str, Mapping[str, str]],
    service_statuses: Mapping[str, Sequence[str]],
    requests: Mapping[str, ServiceRequest] | None = None,
) -> Allocations:
    """The allocations after a restart, so that no Service's IP changes.

    `service_statuses` maps EVERY Service porter-lb implements to the IPs in its
    `status.loadBalancer.ingress` (empty when it has none yet); `persisted_used` maps each
    Eip name to its `status.used` (IP -> holders joined by ";"); `requests` gives the sharing
    key, ports and backends each Service holds its IPs with.

    A Service keeps each status IP that lies in a pool, enabled or disabled. The Eips' status
    fills the gaps a crash left (an IP allocated but not yet written to the Service), for a
    family the Service holds no IP of; holders no longer listed in `service_statuses` (deleted
    Services) are dropped. Claims are taken in key order and never make an IP shared against
    the sharing rule: a later conflicting claim is left out, and that Service gets a new IP
    when it is next allocated.
    """
    requests = requests or {}
    ordered = sorted(pools, key=lambda p: p.name)
    by_name = {p.name: p for p in ordered}
    claims: list[tuple[str, str, str]] = []
    for key in sorted(service_statuses):
        claims += [(key, ip, "") for ip in service_statuses[key]]
    for pool_name, used in sorted(persisted_used.items()):
        for used_ip, holders in sorted(used.items()):
            for holder in sorted({h.strip() for h in holders.split(";")}):
                if holder in service_statuses:
                    claims.append((holder, used_ip, pool_name))

    allocations = Allocations()
    for key, text, pool_name in claims:
        ip = _canonical(text)
        if ip is None or any(_family(held) == _family(ip) for held in allocations.ips_of(key)):
            continue
        pool = by_name.get(pool_name)
        if pool is None or ip not in pool.addresses:
            pool = _pool_containing(ordered, ip)
        request = requests.get(key)
        holding = _holding_for(request) if request else Holding()
        if pool is None or _sharing_conflict(allocations, ip, key, holding):
            continue
        allocations._take(key, ip, pool.name)
        allocations._set_holding(
            key,
            Holding(
                (*allocations.ips_of(key), ip),
                holding.sharing_key,
                holding.ports,
                holding.backend_key,
            ),
        )
    return allocations


def pool_status(pool: Pool, allocations: Allocations) -> PoolStatus:
    """The Eip status for `pool`: size, usage and who holds which IP.

    `used` maps each held IP to its holders' keys sorted and joined by ";" (OpenELB stores one
    `namespace/name`; shared IPs list them all). `ready` is True: the pool parsed and is in
    use; the shell lowers it when the announcing side cannot serve the pool.
    """
    ips = sorted(
        (ip for ip in allocations._ips_by_pool.get(pool.name, ()) if ip in pool.addresses),
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
