"""Properties of IP allocation under random sequences of operations.

A hypothesis state machine allocates (automatically, by requested IP or pool, with or without
a sharing key and ports, single- and dual-stack), releases, disables / deletes / restores
pools and restarts (rebuilds the table from what the controller persisted), and after every
step checks that:

* no IP has two holders unless all carry the same sharing key, use disjoint ports and have
  the same backends;
* nothing leaks: every held IP has a live holder that lists it, a refused or released
  Service holds nothing, and an IP whose last holder released it is free;
* an allocation honours the request (the requested IP, the requested pool, one IP per
  family, inside a pool that gave it out);
* allocating is idempotent and does not depend on the allocator's lowest-free cursors (a
  fresh copy of the table answers the same);
* a restart (`rebuild` from the Eip and Service statuses) changes no Service's IP;
* the same operations from scratch give the same answers and the same table.

Profiles and how to search longer: tests/unit/conftest.py.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from porter_lb.allocation.allocator import Allocated, RefusalReason, Refused, allocate, rebuild
from porter_lb.allocation.holdings import Allocations, pool_status, release
from porter_lb.model.addresses import parse_address_pool
from porter_lb.model.resources import IPFamilyPolicy, Pool, ServicePort, ServiceRequest

POOLS = {
    p.name: p
    for p in [
        Pool("a", parse_address_pool("10.0.0.0-10.0.0.3"), is_default=True),
        Pool("b", parse_address_pool("10.0.1.0/31"), namespaces=("team",)),
        Pool("c", parse_address_pool("10.0.2.0")),
        Pool("v6", parse_address_pool("2001:db8::/126"), is_default=True),
    ]
}
KEYS = ["shop/s0", "shop/s1", "shop/s2", "team/s3", "team/s4"]
ASKABLE_IPS = [
    "10.0.0.0",
    "10.0.0.3",
    "10.0.1.1",
    "10.0.2.0",
    "2001:db8::1",
    "2001:db8::3",
    "192.0.2.1",  # in no pool
]
FAMILIES: list[tuple[tuple[int, ...], IPFamilyPolicy]] = [
    ((4,), "SingleStack"),
    ((6,), "SingleStack"),
    ((4, 6), "PreferDualStack"),
    ((6, 4), "PreferDualStack"),
    ((4, 6), "RequireDualStack"),
]
PORTS = [ServicePort("TCP", 80), ServicePort("TCP", 443), ServicePort("UDP", 53)]


@st.composite
def requests(draw: st.DrawFn) -> ServiceRequest:
    key = draw(st.sampled_from(KEYS))
    families, policy = draw(st.sampled_from(FAMILIES))
    asked = draw(st.lists(st.sampled_from(ASKABLE_IPS), max_size=2, unique=True))
    by_family: dict[int, str] = {}
    for ip in asked:
        by_family.setdefault(ipaddress.ip_address(ip).version, ip)
    return ServiceRequest(
        key=key,
        namespace=key.split("/")[0],
        requested_ips=tuple(by_family.values()),
        requested_pool=draw(st.sampled_from(["", "", "", "a", "b", "c", "v6", "missing"])),
        families=families,
        ip_family_policy=policy,
        sharing_key=draw(st.sampled_from(["", "", "k1", "k2"])),
        ports=frozenset(draw(st.lists(st.sampled_from(PORTS), max_size=2))),
        backend_key=draw(st.sampled_from(["", "", "app=x"])),
    )


Op = tuple[str, Any]


@dataclass
class World:
    """The allocator's inputs as the controller keeps them, changed one operation at a time."""

    pools: dict[str, Pool] = field(default_factory=lambda: dict(POOLS))
    allocations: Allocations = field(default_factory=Allocations)
    live: dict[str, ServiceRequest] = field(default_factory=dict)
    results: list[object] = field(default_factory=list)

    def pool_list(self) -> list[Pool]:
        return list(self.pools.values())

    def apply(self, op: Op) -> object:
        kind, argument = op
        result: object = None
        if kind == "allocate":
            result = allocate(self.pool_list(), self.allocations, argument)
            if isinstance(result, Allocated):
                self.live[argument.key] = argument
            else:
                self.live.pop(argument.key, None)
        elif kind == "release":
            result = release(self.allocations, argument)
            self.live.pop(argument, None)
        elif kind == "toggle_disable":
            pool = self.pools[argument]
            self.pools[argument] = replace(pool, disabled=not pool.disabled)
        elif kind == "delete_pool":
            self.pools.pop(argument, None)
        elif kind == "restore_pool":
            self.pools.setdefault(argument, POOLS[argument])
        elif kind == "restart":
            self.allocations = rebuild(
                self.pool_list(),
                self.persisted_used(),
                {key: self.allocations.ips_of(key) for key in KEYS},
                self.live,
            )
            # a Service whose IPs all lay in deleted pools comes back holding nothing
            self.live = {k: r for k, r in self.live.items() if self.allocations.ips_of(k)}
        self.results.append(result)
        return result

    def persisted_used(self) -> dict[str, dict[str, str]]:
        """Each Eip's `status.used`, as the controller writes it."""
        return {p.name: dict(pool_status(p, self.allocations)["used"]) for p in self.pool_list()}


class AllocationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.ops: list[Op] = []

    def run(self, op: Op) -> object:
        self.ops.append(op)
        return self.world.apply(op)

    @rule(request=requests())
    def allocate(self, request: ServiceRequest) -> None:
        fresh = self.world.allocations.copy()  # no lowest-free cursors: they must not matter
        expected = allocate(self.world.pool_list(), fresh, request)
        result = self.run(("allocate", request))
        assert result == expected
        assert self.world.allocations == fresh
        if isinstance(result, Refused):
            assert self.world.allocations.ips_of(request.key) == ()
            assert result.message.startswith(f"Service '{request.key}': ")
            assert isinstance(result.reason, RefusalReason)
            return
        assert isinstance(result, Allocated)
        self.check_honoured(request, result)
        before = self.world.allocations.copy()
        assert allocate(self.world.pool_list(), self.world.allocations, request) == result
        assert self.world.allocations == before

    def check_honoured(self, request: ServiceRequest, result: Allocated) -> None:
        families = [ipaddress.ip_address(ip).version for ip in result.ips]
        assert len(set(families)) == len(families), "one IP per family"
        assert set(families) <= set(request.families)
        if request.ip_family_policy == "RequireDualStack":
            assert sorted(families) == [4, 6]
        for ip, pool_name in zip(result.ips, result.pools, strict=True):
            assert self.world.allocations.pool_of(ip) == pool_name
            if pool_name in self.world.pools:
                assert ip in self.world.pools[pool_name].addresses
            if request.requested_pool:
                assert pool_name == request.requested_pool
        for asked in request.requested_ips:
            if ipaddress.ip_address(asked).version in families:
                assert asked in result.ips

    @rule(key=st.sampled_from(KEYS))
    def release(self, key: str) -> None:
        held = self.world.allocations.ips_of(key)
        others = {ip: self.world.allocations.holders(ip) - {key} for ip in held}
        freed = self.run(("release", key))
        assert freed == tuple(ip for ip in held if not others[ip])
        assert self.world.allocations.ips_of(key) == ()
        for ip in held:
            assert self.world.allocations.holders(ip) == others[ip]
            assert (self.world.allocations.pool_of(ip) is None) == (not others[ip])

    @rule(name=st.sampled_from(sorted(POOLS)))
    def toggle_disable(self, name: str) -> None:
        if name in self.world.pools:
            self.run(("toggle_disable", name))

    @rule(name=st.sampled_from(sorted(POOLS)))
    def delete_pool(self, name: str) -> None:
        self.run(("delete_pool", name))

    @rule(name=st.sampled_from(sorted(POOLS)))
    def restore_pool(self, name: str) -> None:
        self.run(("restore_pool", name))

    @rule()
    def restart(self) -> None:
        pools = self.world.pool_list()
        in_a_pool = {
            key: tuple(
                ip
                for ip in self.world.allocations.ips_of(key)
                if any(ip in p.addresses for p in pools)
            )
            for key in KEYS
        }
        self.run(("restart", None))
        for key, ips in in_a_pool.items():
            assert self.world.allocations.ips_of(key) == ips, f"{key} changed IPs on restart"

    @invariant()
    def shared_only_by_the_sharing_rule(self) -> None:
        allocations = self.world.allocations
        for ip, holders in allocations.used().items():
            assert holders, ip
            holdings = [allocations.holding(key) for key in sorted(holders)]
            assert all(h is not None and ip in h.ips for h in holdings), (ip, holders)
            if len(holders) == 1:
                continue
            keys = {h.sharing_key for h in holdings if h}
            assert len(keys) == 1 and "" not in keys, (ip, holdings)
            assert len({h.backend_key for h in holdings if h}) == 1, (ip, holdings)
            seen: set[ServicePort] = set()
            for holding in holdings:
                assert holding is not None and not (holding.ports & seen), (ip, holdings)
                seen |= holding.ports

    @invariant()
    def nothing_leaks(self) -> None:
        allocations = self.world.allocations
        assert set(allocations.keys()) == set(self.world.live)
        used = allocations.used()
        holders = allocations.keys()
        for key in holders:
            ips = allocations.ips_of(key)
            assert ips, key
            assert len({ipaddress.ip_address(ip).version for ip in ips}) == len(ips)
            for ip in ips:
                assert key in used[ip]
                assert allocations.pool_of(ip) is not None
        assert {ip for key in holders for ip in allocations.ips_of(key)} == set(used)

    @invariant()
    def eip_status_agrees(self) -> None:
        for pool in self.world.pool_list():
            status = pool_status(pool, self.world.allocations)
            assert status["usage"] == len(status["used"]) <= status["poolSize"]
            for ip, holders in status["used"].items():
                assert ip in pool.addresses
                assert set(holders.split(";")) == self.world.allocations.holders(ip)

    def teardown(self) -> None:
        again = World()
        for op in self.ops:
            again.apply(op)
        assert again.results == self.world.results, "same operations, other answers"
        assert again.allocations == self.world.allocations


# Each example is a whole sequence of operations: a few more of them than the profile's default.
AllocationMachine.TestCase.settings = settings(
    max_examples=settings().max_examples * 4, stateful_step_count=30
)
TestAllocationMachine = AllocationMachine.TestCase
