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

What Services hold is recorded in `porter_lb.allocation.holdings` (`Allocations`,
`pool_status`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from porter_lb.allocation.holdings import (
    Allocations,
    Holding,
    PoolIndex,
    family_name,
    family_of,
    holding_for,
    pool_containing,
    release,
)
from porter_lb.model.resources import (
    DEFAULT_POOL_ANNOTATIONS,
    SHARING_KEY_ANNOTATION,
    Pool,
    ServicePort,
    ServiceRequest,
)

__all__ = ["Allocated", "RefusalReason", "Refused", "allocate", "allocate_all", "rebuild"]


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


def _ports_text(ports: Iterable[ServicePort]) -> str:
    return ", ".join(f"{p.protocol}/{p.port}" for p in sorted(ports))


def sharing_conflict(
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


def _lowest_available(allocations: Allocations, pool: Pool, request: ServiceRequest) -> str | None:
    """The lowest address of `pool` that is free, or that `request` may share."""
    best = allocations.lowest_free(pool.addresses)
    if not request.sharing_key:
        return best
    best_value = int(ipaddress.ip_address(best)) if best else None
    wanted = holding_for(request)
    for other in sorted(allocations.sharing_group(request.sharing_key)):
        if other == request.key:
            continue
        for ip in allocations.ips_of(other):
            value = int(ipaddress.ip_address(ip))
            if (
                (best_value is None or value < best_value)
                and ip in pool.addresses
                and sharing_conflict(allocations, ip, request.key, wanted) is None
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
            wanted = " and ".join(family_name(f) for f in request.families)
            raise _Refusal(
                RefusalReason.IP_FAMILY_NOT_REQUESTED,
                f"{request.requested_ips_field} '{ip}': an {family_name(family)} address, but "
                f"the Service's IP families (spec.ipFamilies, spec.ipFamilyPolicy) are {wanted}",
            )
    return asked


class _Planner:
    """Chooses, family by family, the IP one request should hold; changes nothing."""

    def __init__(self, pools: PoolIndex, allocations: Allocations, request: ServiceRequest) -> None:
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
        held_ip = next((ip for ip in self.held.ips if family_of(ip) == family), None)
        if held_ip is None or self.asked_ips.get(family, held_ip) != held_ip:
            return None
        pool = self.by_name.get(self.allocations.pool_of(held_ip) or "")
        if pool is None or held_ip not in pool.addresses:
            pool = pool_containing(self.pools, held_ip)
        if pool is None or (self.asked_pool is not None and pool is not self.asked_pool):
            return None
        wanted = holding_for(self.request)
        if sharing_conflict(self.allocations, held_ip, self.request.key, wanted):
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
                    f"{family_name(pool.version)} addresses; the Service also needs "
                    f"{family_name(family)} (spec.ipFamilies, spec.ipFamilyPolicy)",
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
                    f"every {family_name(family)} Eip serving namespace '{request.namespace}' "
                    f"({', '.join(repr(p.name) for p in serving)}) is disabled (spec.disable) "
                    "and gives no new IPs",
                    hard=not soft,
                )
            if not candidates:
                raise _Refusal(
                    RefusalReason.NO_POOL,
                    f"no {family_name(family)} Eip serves namespace '{request.namespace}': "
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
            f"every {family_name(family)} address of Eip {names} is in use"
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
        pool = self.asked_pool or pool_containing(self.pools, ip)
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
        conflict = sharing_conflict(self.allocations, ip, request.key, holding_for(request))
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
        planner = _Planner(allocations.pool_index(pools), allocations, request)
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
            allocations.drop(request.key, ip)
    for ip, pool_name in plan:
        allocations.take(request.key, ip, pool_name)
    allocations.set_holding(request.key, holding_for(request, ips))
    return Allocated(request.key, ips, tuple([pool for _, pool in plan]))


def allocate_all(
    pools: Sequence[Pool], allocations: Allocations, requests: Iterable[ServiceRequest]
) -> dict[str, Allocated | Refused]:
    """`allocate` every request in key order, so contention resolves the same way each time."""
    return {
        request.key: allocate(pools, allocations, request)
        for request in sorted(requests, key=lambda r: r.key)
    }


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
        if ip is None or any(family_of(held) == family_of(ip) for held in allocations.ips_of(key)):
            continue
        pool = by_name.get(pool_name)
        if pool is None or ip not in pool.addresses:
            pool = pool_containing(ordered, ip)
        request = requests.get(key)
        holding = holding_for(request) if request else Holding()
        if pool is None or sharing_conflict(allocations, ip, key, holding):
            continue
        allocations.take(key, ip, pool.name)
        allocations.set_holding(
            key,
            Holding(
                (*allocations.ips_of(key), ip),
                holding.sharing_key,
                holding.ports,
                holding.backend_key,
            ),
        )
    return allocations
