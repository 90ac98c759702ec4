"""IP allocation rules, as tables: pools and requests in, IPs (or the refusal and why) out."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from typing import Any

import pytest

from porter_lb.allocation.allocator import (
    Allocated,
    RefusalReason,
    Refused,
    allocate,
    allocate_all,
    rebuild,
)
from porter_lb.allocation.holdings import Allocations, pool_status, release
from porter_lb.model.addresses import parse_address_pool
from porter_lb.model.resources import Pool, ServicePort, ServiceRequest

R = RefusalReason


def pool(name: str, address: str, **fields: Any) -> Pool:
    return Pool(name, parse_address_pool(address), **fields)


def req(key: str, **fields: Any) -> ServiceRequest:
    return ServiceRequest(key=key, namespace=key.split("/", maxsplit=1)[0], **fields)


def given(result: Allocated | Refused) -> tuple[str, ...]:
    assert isinstance(result, Allocated), result
    return result.ips


def tcp(*ports: int) -> frozenset[ServicePort]:
    return frozenset(ServicePort("TCP", p) for p in ports)


DEFAULT = pool("default", "10.0.0.1-10.0.0.3", is_default=True)
DEFAULT_V6 = pool("default-v6", "2001:db8::1-2001:db8::3", is_default=True)
SHOP = pool("shop-only", "10.1.0.1-10.1.0.3", namespaces=("shop",))
TEAM = pool("team-web", "10.2.0.1-10.2.0.3", namespace_selector={"team": "web"})
SPARE = pool("spare", "10.9.0.1-10.9.0.3")
DISABLED_DEFAULT = pool("a-disabled", "10.8.0.1-10.8.0.3", is_default=True, disabled=True)
TINY = pool("tiny", "10.3.0.1", is_default=True)


def run(
    pools: Sequence[Pool], before: Sequence[ServiceRequest], request: ServiceRequest
) -> Allocated | Refused:
    allocations = Allocations()
    for earlier in before:
        assert isinstance(allocate(pools, allocations, earlier), Allocated), earlier.key
    return allocate(pools, allocations, request)


ALLOCATED_CASES = [
    ("default-pool-lowest-address", [DEFAULT], [], req("shop/a"), ("10.0.0.1",), ("default",)),
    (
        "next-lowest-after-others",
        [DEFAULT],
        [req("shop/a"), req("shop/b")],
        req("shop/c"),
        ("10.0.0.3",),
        ("default",),
    ),
    (
        "namespace-bound-by-name-before-default",
        [DEFAULT, SHOP],
        [],
        req("shop/a"),
        ("10.1.0.1",),
        ("shop-only",),
    ),
    (
        "namespace-bound-by-selector-before-default",
        [DEFAULT, TEAM],
        [],
        req("blog/a", namespace_labels={"team": "web"}),
        ("10.2.0.1",),
        ("team-web",),
    ),
    (
        "bound-to-other-namespace-falls-to-default",
        [DEFAULT, SHOP],
        [],
        req("blog/a"),
        ("10.0.0.1",),
        ("default",),
    ),
    (
        "bound-pools-lower-priority-value-first",
        [
            pool("b-low", "10.5.0.1", namespaces=("shop",), priority=1),
            pool("a-high", "10.4.0.1", namespaces=("shop",), priority=2),
        ],
        [],
        req("shop/a"),
        ("10.5.0.1",),
        ("b-low",),
    ),
    (
        "bound-pools-same-priority-by-name",
        [
            pool("b", "10.5.0.1", namespaces=("shop",)),
            pool("a", "10.4.0.1", namespaces=("shop",)),
        ],
        [],
        req("shop/a"),
        ("10.4.0.1",),
        ("a",),
    ),
    (
        "default-pools-by-priority",
        [
            pool("a", "10.4.0.1", is_default=True, priority=3),
            pool("b", "10.5.0.1", is_default=True),
        ],
        [],
        req("shop/a"),
        ("10.5.0.1",),
        ("b",),
    ),
    (
        "full-bound-pool-falls-to-default",
        [pool("one", "10.4.0.1", namespaces=("shop",)), DEFAULT],
        [req("shop/a")],
        req("shop/b"),
        ("10.0.0.1",),
        ("default",),
    ),
    (
        "disabled-pool-skipped",
        [DISABLED_DEFAULT, DEFAULT],
        [],
        req("shop/a"),
        ("10.0.0.1",),
        ("default",),
    ),
    (
        "unbound-pool-by-name",
        [DEFAULT, SPARE],
        [],
        req("shop/a", requested_pool="spare"),
        ("10.9.0.1",),
        ("spare",),
    ),
    (
        "unbound-pool-by-ip",
        [DEFAULT, SPARE],
        [],
        req("shop/a", requested_ips=("10.9.0.3",)),
        ("10.9.0.3",),
        ("spare",),
    ),
    (
        "ip-in-requested-pool",
        [DEFAULT, SPARE],
        [],
        req("shop/a", requested_ips=("10.9.0.2",), requested_pool="spare"),
        ("10.9.0.2",),
        ("spare",),
    ),
    (
        "other-namespace-may-name-a-bound-pool",
        [SHOP],
        [],
        req("blog/a", requested_pool="shop-only"),
        ("10.1.0.1",),
        ("shop-only",),
    ),
    (
        "sharing-same-key-disjoint-ports-lands-on-same-ip",
        [DEFAULT],
        [req("shop/a", sharing_key="k", ports=tcp(80))],
        req("shop/b", sharing_key="k", ports=tcp(443)),
        ("10.0.0.1",),
        ("default",),
    ),
    (
        "sharing-explicit-ip",
        [DEFAULT],
        [req("shop/a", sharing_key="k", ports=tcp(80)), req("shop/b")],
        req("shop/c", sharing_key="k", ports=tcp(443), requested_ips=("10.0.0.1",)),
        ("10.0.0.1",),
        ("default",),
    ),
    (
        "sharing-port-clash-moves-automatic-choice-on",
        [DEFAULT],
        [req("shop/a", sharing_key="k", ports=tcp(80))],
        req("shop/b", sharing_key="k", ports=tcp(80)),
        ("10.0.0.2",),
        ("default",),
    ),
    (
        "same-port-number-other-protocol-shares",
        [DEFAULT],
        [req("shop/a", sharing_key="dns", ports=tcp(53))],
        req("shop/b", sharing_key="dns", ports=frozenset({ServicePort("UDP", 53)})),
        ("10.0.0.1",),
        ("default",),
    ),
    (
        "no-key-never-shares-automatically",
        [DEFAULT],
        [req("shop/a", sharing_key="k", ports=tcp(80))],
        req("shop/b", ports=tcp(443)),
        ("10.0.0.2",),
        ("default",),
    ),
    (
        "require-dual-stack",
        [DEFAULT, DEFAULT_V6],
        [],
        req("shop/a", families=(4, 6), ip_family_policy="RequireDualStack"),
        ("10.0.0.1", "2001:db8::1"),
        ("default", "default-v6"),
    ),
    (
        "dual-stack-ipv6-primary",
        [DEFAULT, DEFAULT_V6],
        [],
        req("shop/a", families=(6, 4), ip_family_policy="PreferDualStack"),
        ("2001:db8::1", "10.0.0.1"),
        ("default-v6", "default"),
    ),
    (
        "prefer-dual-stack-without-ipv6-pool",
        [DEFAULT],
        [],
        req("shop/a", families=(4, 6), ip_family_policy="PreferDualStack"),
        ("10.0.0.1",),
        ("default",),
    ),
    (
        "prefer-dual-stack-ipv4-pool-full",
        [TINY, DEFAULT_V6],
        [req("shop/a")],
        req("shop/b", families=(4, 6), ip_family_policy="PreferDualStack"),
        ("2001:db8::1",),
        ("default-v6",),
    ),
    (
        "single-stack-ipv6",
        [DEFAULT, DEFAULT_V6],
        [],
        req("shop/a", families=(6,)),
        ("2001:db8::1",),
        ("default-v6",),
    ),
    (
        "dual-stack-requested-ips",
        [DEFAULT, DEFAULT_V6],
        [],
        req(
            "shop/a",
            families=(4, 6),
            ip_family_policy="RequireDualStack",
            requested_ips=("10.0.0.3", "2001:db8::2"),
        ),
        ("10.0.0.3", "2001:db8::2"),
        ("default", "default-v6"),
    ),
    (
        "dual-stack-one-requested-one-automatic",
        [DEFAULT, DEFAULT_V6],
        [],
        req(
            "shop/a",
            families=(4, 6),
            ip_family_policy="RequireDualStack",
            requested_ips=("2001:DB8::3",),
        ),
        ("10.0.0.1", "2001:db8::3"),
        ("default", "default-v6"),
    ),
]


@pytest.mark.parametrize(
    ("pools", "before", "request_", "ips", "pool_names"),
    [case[1:] for case in ALLOCATED_CASES],
    ids=[case[0] for case in ALLOCATED_CASES],
)
def test_allocated(
    pools: list[Pool],
    before: list[ServiceRequest],
    request_: ServiceRequest,
    ips: tuple[str, ...],
    pool_names: tuple[str, ...],
) -> None:
    assert run(pools, before, request_) == Allocated(request_.key, ips, pool_names)


OPENELB_POOL = "annotation eip.openelb.kubesphere.io/v1alpha2"
OPENELB_IP = "annotation eip.openelb.kubesphere.io/v1alpha1"
SHARING = "lb.porter-lb.io/allow-shared-ip"

REFUSED_CASES = [
    (
        "no-bound-or-default-pool",
        [SPARE, SHOP],
        [],
        req("blog/a"),
        R.NO_POOL,
        "Service 'blog/a': no IPv4 Eip serves namespace 'blog': none is bound to it "
        "(spec.namespaces, spec.namespaceSelector) and none is the default (annotation "
        f"eip.openelb.kubesphere.io/is-default-eip); name one with {OPENELB_POOL}",
    ),
    (
        "only-default-is-disabled",
        [DISABLED_DEFAULT],
        [],
        req("shop/a"),
        R.POOL_DISABLED,
        "Service 'shop/a': every IPv4 Eip serving namespace 'shop' ('a-disabled') is disabled "
        "(spec.disable) and gives no new IPs",
    ),
    (
        "requested-pool-missing",
        [DEFAULT],
        [],
        req("shop/a", requested_pool="nope"),
        R.POOL_NOT_FOUND,
        f"Service 'shop/a': {OPENELB_POOL} 'nope': no Eip of that name",
    ),
    (
        "requested-pool-disabled",
        [DEFAULT, dataclasses.replace(SPARE, disabled=True)],
        [],
        req("shop/a", requested_pool="spare"),
        R.POOL_DISABLED,
        f"Service 'shop/a': {OPENELB_POOL} 'spare': the Eip is disabled (spec.disable) "
        "and gives no new IPs",
    ),
    (
        "requested-ip-in-no-pool",
        [DEFAULT],
        [],
        req("shop/a", requested_ips=("192.0.2.1",), requested_ips_field=OPENELB_IP),
        R.IP_NOT_IN_POOL,
        f"Service 'shop/a': {OPENELB_IP} '192.0.2.1': the address is in no Eip; an IP must "
        "come from an Eip's spec.address",
    ),
    (
        "requested-ip-outside-requested-pool",
        [DEFAULT, SPARE],
        [],
        req("shop/a", requested_ips=("10.0.0.1",), requested_pool="spare"),
        R.IP_NOT_IN_REQUESTED_POOL,
        "Service 'shop/a': spec.loadBalancerIP '10.0.0.1': not in Eip 'spare' "
        f"(10.9.0.1-10.9.0.3), the Eip named by {OPENELB_POOL}",
    ),
    (
        "requested-ip-in-disabled-pool",
        [dataclasses.replace(DEFAULT, disabled=True)],
        [],
        req("shop/a", requested_ips=("10.0.0.2",)),
        R.POOL_DISABLED,
        "Service 'shop/a': spec.loadBalancerIP '10.0.0.2': Eip 'default' is disabled "
        "(spec.disable) and gives no new IPs",
    ),
    (
        "requested-ip-of-unrequested-family",
        [DEFAULT, DEFAULT_V6],
        [],
        req("shop/a", requested_ips=("2001:db8::1",)),
        R.IP_FAMILY_NOT_REQUESTED,
        "Service 'shop/a': spec.loadBalancerIP '2001:db8::1': an IPv6 address, but the "
        "Service's IP families (spec.ipFamilies, spec.ipFamilyPolicy) are IPv4",
    ),
    (
        "pool-exhausted",
        [TINY],
        [req("shop/a")],
        req("shop/b"),
        R.POOL_EXHAUSTED,
        "Service 'shop/b': every IPv4 address of Eip 'tiny' is in use",
    ),
    (
        "requested-ip-held-no-sharing-key",
        [DEFAULT],
        [req("shop/a")],
        req("shop/b", requested_ips=("10.0.0.1",)),
        R.IP_IN_USE,
        "Service 'shop/b': spec.loadBalancerIP '10.0.0.1': held by 'shop/a'; Services share "
        f"an IP only when all carry the same annotation {SHARING}",
    ),
    (
        "requested-ip-held-holder-has-no-key",
        [DEFAULT],
        [req("shop/a", ports=tcp(80))],
        req("shop/b", requested_ips=("10.0.0.1",), sharing_key="k", ports=tcp(443)),
        R.SHARING_KEY_MISMATCH,
        "Service 'shop/b': spec.loadBalancerIP '10.0.0.1': held by 'shop/a', whose "
        f"annotation {SHARING} is '', not 'k'",
    ),
    (
        "requested-ip-held-other-key",
        [DEFAULT],
        [req("shop/a", sharing_key="x", ports=tcp(80))],
        req("shop/b", requested_ips=("10.0.0.1",), sharing_key="k", ports=tcp(443)),
        R.SHARING_KEY_MISMATCH,
        "Service 'shop/b': spec.loadBalancerIP '10.0.0.1': held by 'shop/a', whose "
        f"annotation {SHARING} is 'x', not 'k'",
    ),
    (
        "requested-ip-held-same-port",
        [DEFAULT],
        [req("shop/a", sharing_key="k", ports=tcp(80, 8080))],
        req("shop/b", requested_ips=("10.0.0.1",), sharing_key="k", ports=tcp(80, 443)),
        R.PORT_CONFLICT,
        "Service 'shop/b': spec.loadBalancerIP '10.0.0.1': held by 'shop/a', which also uses "
        "TCP/80; Services sharing an IP must use different ports",
    ),
    (
        "requested-ip-held-other-backends",
        [DEFAULT],
        [req("shop/a", sharing_key="k", ports=tcp(80), backend_key="app=a")],
        req("shop/b", requested_ips=("10.0.0.1",), sharing_key="k", ports=tcp(443)),
        R.BACKEND_MISMATCH,
        "Service 'shop/b': spec.loadBalancerIP '10.0.0.1': held by 'shop/a', which has other "
        "backends; with externalTrafficPolicy Local, Services share an IP only when both are "
        "Local and select the same pods",
    ),
    (
        "require-dual-stack-without-ipv6-pool",
        [DEFAULT],
        [],
        req("shop/a", families=(4, 6), ip_family_policy="RequireDualStack"),
        R.NO_POOL,
        "Service 'shop/a': no IPv6 Eip serves namespace 'shop'",
    ),
    (
        "require-dual-stack-from-one-named-pool",
        [DEFAULT, DEFAULT_V6],
        [],
        req(
            "shop/a", families=(4, 6), ip_family_policy="RequireDualStack", requested_pool="default"
        ),
        R.FAMILY_UNAVAILABLE,
        f"Service 'shop/a': {OPENELB_POOL} 'default': the Eip holds IPv4 addresses; the Service "
        "also needs IPv6 (spec.ipFamilies, spec.ipFamilyPolicy)",
    ),
    (
        "prefer-dual-stack-still-refuses-bad-explicit-ip",
        [DEFAULT, DEFAULT_V6],
        [],
        req(
            "shop/a",
            families=(4, 6),
            ip_family_policy="PreferDualStack",
            requested_ips=("10.0.0.1", "2001:db8::99"),
        ),
        R.IP_NOT_IN_POOL,
        "Service 'shop/a': spec.loadBalancerIP '2001:db8::99': the address is in no Eip",
    ),
    (
        "single-stack-ipv6-without-ipv6-pool",
        [DEFAULT],
        [],
        req("shop/a", families=(6,)),
        R.NO_POOL,
        "Service 'shop/a': no IPv6 Eip serves namespace 'shop'",
    ),
    (
        "sharing-pool-exhausted-says-why",
        [TINY],
        [req("shop/a", sharing_key="k", ports=tcp(80))],
        req("shop/b", sharing_key="k", ports=tcp(80)),
        R.POOL_EXHAUSTED,
        f"Service 'shop/b': every IPv4 address of Eip 'tiny' is in use (sharing needs the same "
        f"{SHARING} and other ports)",
    ),
]


@pytest.mark.parametrize(
    ("pools", "before", "request_", "reason", "message"),
    [case[1:] for case in REFUSED_CASES],
    ids=[case[0] for case in REFUSED_CASES],
)
def test_refused_names_service_field_and_rule(
    pools: list[Pool],
    before: list[ServiceRequest],
    request_: ServiceRequest,
    reason: RefusalReason,
    message: str,
) -> None:
    result = run(pools, before, request_)
    assert isinstance(result, Refused)
    assert (result.key, result.reason) == (request_.key, reason)
    assert result.message.startswith(message)


def test_allocate_twice_gives_same_answer_and_changes_nothing() -> None:
    pools = [DEFAULT, DEFAULT_V6]
    allocations = Allocations()
    request = req("shop/a", families=(4, 6), ip_family_policy="RequireDualStack")
    first = allocate(pools, allocations, request)
    before = allocations.copy()
    assert allocate(pools, allocations, request) == first
    assert allocations == before


STABILITY_CASES = [
    (
        "pool-disabled-later",
        [DEFAULT],
        [dataclasses.replace(DEFAULT, disabled=True)],
        req("shop/a"),
        ("10.0.0.1",),
    ),
    (
        "better-pool-appears-later",
        [DEFAULT],
        [DEFAULT, SHOP],
        req("shop/a"),
        ("10.0.0.1",),
    ),
    (
        "default-annotation-removed-later",
        [DEFAULT],
        [dataclasses.replace(DEFAULT, is_default=False)],
        req("shop/a"),
        ("10.0.0.1",),
    ),
    (
        "ipv6-pool-appears-for-prefer-dual-stack",
        [DEFAULT],
        [DEFAULT, DEFAULT_V6],
        req("shop/a", families=(4, 6), ip_family_policy="PreferDualStack"),
        ("10.0.0.1", "2001:db8::1"),
    ),
    (
        "pool-deleted-moves-to-remaining",
        [SHOP, DEFAULT],
        [DEFAULT],
        req("shop/a"),
        ("10.0.0.1",),
    ),
]


@pytest.mark.parametrize(
    ("pools_before", "pools_after", "request_", "ips_after"),
    [case[1:] for case in STABILITY_CASES],
    ids=[case[0] for case in STABILITY_CASES],
)
def test_held_ips_follow_pool_changes(
    pools_before: list[Pool],
    pools_after: list[Pool],
    request_: ServiceRequest,
    ips_after: tuple[str, ...],
) -> None:
    allocations = Allocations()
    assert isinstance(allocate(pools_before, allocations, request_), Allocated)
    result = allocate(pools_after, allocations, request_)
    assert isinstance(result, Allocated) and result.ips == ips_after


def test_changed_request_moves_the_ip_and_frees_the_old_one() -> None:
    allocations = Allocations()
    allocate([DEFAULT], allocations, req("shop/a"))
    moved = allocate([DEFAULT], allocations, req("shop/a", requested_ips=("10.0.0.3",)))
    assert moved == Allocated("shop/a", ("10.0.0.3",), ("default",))
    assert allocations.holders("10.0.0.1") == frozenset()
    assert given(allocate([DEFAULT], allocations, req("shop/b"))) == ("10.0.0.1",)


def test_refused_change_leaves_the_service_holding_nothing() -> None:
    allocations = Allocations()
    allocate([DEFAULT], allocations, req("shop/a"))
    refused = allocate([DEFAULT], allocations, req("shop/a", requested_pool="gone"))
    assert isinstance(refused, Refused)
    assert allocations.ips_of("shop/a") == () and allocations.used() == {}


def test_sharing_service_whose_ports_now_clash_moves_the_other_stays() -> None:
    allocations = Allocations()
    allocate([DEFAULT], allocations, req("shop/a", sharing_key="k", ports=tcp(80)))
    allocate([DEFAULT], allocations, req("shop/b", sharing_key="k", ports=tcp(443)))
    assert allocations.holders("10.0.0.1") == {"shop/a", "shop/b"}
    results = allocate_all(
        [DEFAULT],
        allocations,
        [
            req("shop/b", sharing_key="k", ports=tcp(80)),
            req("shop/a", sharing_key="k", ports=tcp(80)),
        ],
    )
    assert given(results["shop/a"]) == ("10.0.0.1",)
    assert given(results["shop/b"]) == ("10.0.0.2",)


RELEASE_CASES = [
    ("sole-holder-frees", [req("shop/a")], "shop/a", ("10.0.0.1",), {}),
    (
        "shared-ip-stays-with-remaining-holder",
        [
            req("shop/a", sharing_key="k", ports=tcp(80)),
            req("shop/b", sharing_key="k", ports=tcp(81)),
        ],
        "shop/a",
        (),
        {"10.0.0.1": frozenset({"shop/b"})},
    ),
    (
        "unknown-service-frees-nothing",
        [req("shop/a")],
        "shop/zz",
        (),
        {"10.0.0.1": frozenset({"shop/a"})},
    ),
    (
        "dual-stack-frees-both",
        [req("shop/a", families=(4, 6), ip_family_policy="RequireDualStack")],
        "shop/a",
        ("10.0.0.1", "2001:db8::1"),
        {},
    ),
]


@pytest.mark.parametrize(
    ("before", "key", "freed", "used_after"),
    [case[1:] for case in RELEASE_CASES],
    ids=[case[0] for case in RELEASE_CASES],
)
def test_release(
    before: list[ServiceRequest],
    key: str,
    freed: tuple[str, ...],
    used_after: dict[str, frozenset[str]],
) -> None:
    allocations = Allocations()
    for request in before:
        allocate([DEFAULT, DEFAULT_V6], allocations, request)
    assert release(allocations, key) == freed
    assert allocations.used() == used_after
    assert allocations.ips_of(key) == ()


def test_freed_address_is_the_next_one_given() -> None:
    pools = [pool("p", "10.0.0.0/29", is_default=True)]
    allocations = Allocations()
    for name in "abcde":
        allocate(pools, allocations, req(f"shop/{name}"))
    release(allocations, "shop/d")
    release(allocations, "shop/b")
    assert given(allocate(pools, allocations, req("shop/f"))) == ("10.0.0.1",)
    assert given(allocate(pools, allocations, req("shop/g"))) == ("10.0.0.3",)
    assert given(allocate(pools, allocations, req("shop/h"))) == ("10.0.0.5",)


def test_explicit_ask_ahead_of_the_lowest_free_address_is_skipped() -> None:
    pools = [pool("p", "10.0.0.0/29", is_default=True)]
    allocations = Allocations()
    allocate(pools, allocations, req("shop/a", requested_ips=("10.0.0.1",)))
    allocate(pools, allocations, req("shop/b", requested_ips=("10.0.0.2",)))
    assert given(allocate(pools, allocations, req("shop/c"))) == ("10.0.0.0",)
    assert given(allocate(pools, allocations, req("shop/d"))) == ("10.0.0.3",)


def test_allocate_all_is_independent_of_input_order() -> None:
    requests = [
        req("shop/c"),
        req("shop/b", requested_ips=("10.0.0.2",)),
        req("shop/a", requested_ips=("10.0.0.2",)),
        req("blog/x"),
    ]
    outcomes = []
    for order in (requests, requests[::-1]):
        allocations = Allocations()
        outcomes.append((allocate_all([DEFAULT], allocations, order), allocations))
    assert outcomes[0] == outcomes[1]
    results = outcomes[0][0]
    assert list(results) == ["blog/x", "shop/a", "shop/b", "shop/c"]
    assert results["shop/a"] == Allocated("shop/a", ("10.0.0.2",), ("default",))
    assert isinstance(results["shop/b"], Refused) and results["shop/b"].reason == R.IP_IN_USE


SHARED = [
    req("shop/dns-tcp", sharing_key="dns", ports=tcp(53)),
    req("shop/dns-udp", sharing_key="dns", ports=frozenset({ServicePort("UDP", 53)})),
]

REBUILD_CASES = [
    (
        "status-ips-kept-even-if-not-lowest",
        [DEFAULT],
        {},
        {"shop/a": ("10.0.0.3",), "shop/b": ("10.0.0.2",)},
        [],
        {"10.0.0.3": {"shop/a"}, "10.0.0.2": {"shop/b"}},
    ),
    (
        "disabled-pool-keeps-ips",
        [dataclasses.replace(DEFAULT, disabled=True)],
        {},
        {"shop/a": ("10.0.0.2",)},
        [],
        {"10.0.0.2": {"shop/a"}},
    ),
    (
        "ip-outside-every-pool-dropped",
        [DEFAULT],
        {},
        {"shop/a": ("192.0.2.1",), "shop/b": ("hostname.example",)},
        [],
        {},
    ),
    (
        "eip-status-fills-a-crash-gap",
        [DEFAULT],
        {"default": {"10.0.0.3": "shop/a"}},
        {"shop/a": ()},
        [],
        {"10.0.0.3": {"shop/a"}},
    ),
    (
        "service-status-beats-eip-status",
        [DEFAULT],
        {"default": {"10.0.0.3": "shop/a"}},
        {"shop/a": ("10.0.0.1",)},
        [],
        {"10.0.0.1": {"shop/a"}},
    ),
    (
        "deleted-service-dropped",
        [DEFAULT],
        {"default": {"10.0.0.1": "shop/gone;shop/a"}},
        {"shop/a": ()},
        [],
        {"10.0.0.1": {"shop/a"}},
    ),
    (
        "duplicate-claim-first-key-wins",
        [DEFAULT],
        {},
        {"shop/b": ("10.0.0.1",), "shop/a": ("10.0.0.1",)},
        [],
        {"10.0.0.1": {"shop/a"}},
    ),
    (
        "shared-claims-kept-with-requests",
        [DEFAULT],
        {"default": {"10.0.0.1": "shop/dns-tcp;shop/dns-udp"}},
        {"shop/dns-tcp": ("10.0.0.1",), "shop/dns-udp": ()},
        SHARED,
        {"10.0.0.1": {"shop/dns-tcp", "shop/dns-udp"}},
    ),
    (
        "dual-stack-status",
        [DEFAULT, DEFAULT_V6],
        {},
        {"shop/a": ("2001:DB8::2", "10.0.0.2", "10.0.0.3")},
        [],
        {"2001:db8::2": {"shop/a"}, "10.0.0.2": {"shop/a"}},
    ),
]


@pytest.mark.parametrize(
    ("pools", "persisted", "statuses", "requests", "used"),
    [case[1:] for case in REBUILD_CASES],
    ids=[case[0] for case in REBUILD_CASES],
)
def test_rebuild(
    pools: list[Pool],
    persisted: dict[str, dict[str, str]],
    statuses: dict[str, tuple[str, ...]],
    requests: list[ServiceRequest],
    used: dict[str, set[str]],
) -> None:
    allocations = rebuild(pools, persisted, statuses, {r.key: r for r in requests})
    assert allocations.used() == {ip: frozenset(keys) for ip, keys in used.items()}


def test_restart_changes_no_ip() -> None:
    pools = [SHOP, DEFAULT, DEFAULT_V6, SPARE]
    requests = [
        req("shop/a"),
        req("blog/b", families=(4, 6), ip_family_policy="RequireDualStack"),
        req("blog/c", requested_pool="spare"),
        req("blog/d", requested_ips=("10.9.0.3",)),
        *SHARED,
    ]
    before = Allocations()
    # A history no fresh start would repeat: a Service that came and went first.
    allocate(pools, before, req("blog/early", families=(4, 6), ip_family_policy="RequireDualStack"))
    first = allocate_all(pools, before, requests)
    release(before, "blog/early")
    assert given(first["blog/b"]) == ("10.0.0.2", "2001:db8::2")

    statuses = {key: given(result) for key, result in first.items()}
    persisted = {p.name: pool_status(p, before)["used"] for p in pools}
    # After a restart, pools may be listed in another order and a new default may exist.
    restarted_pools = [pool("a-new-default", "10.7.0.1", is_default=True), *reversed(pools)]
    after = rebuild(restarted_pools, persisted, statuses, {r.key: r for r in requests})
    assert after == before
    assert allocate_all(restarted_pools, after, requests) == first
    assert after == before


POOL_STATUS_CASES = [
    (
        "empty",
        pool("p", "10.0.0.0/30"),
        [],
        {
            "poolSize": 4,
            "usage": 0,
            "used": {},
            "firstIP": "10.0.0.0",
            "lastIP": "10.0.0.3",
            "v4": True,
            "occupied": False,
            "ready": True,
        },
    ),
    (
        "shared-ip-lists-holders",
        pool("p", "10.0.0.8-10.0.0.10"),
        [
            req("shop/b", sharing_key="k", ports=tcp(1)),
            req("shop/a", sharing_key="k", ports=tcp(2)),
            req("blog/c", requested_pool="p", requested_ips=("10.0.0.10",)),
        ],
        {
            "poolSize": 3,
            "usage": 2,
            "used": {"10.0.0.8": "shop/a;shop/b", "10.0.0.10": "blog/c"},
            "firstIP": "10.0.0.8",
            "lastIP": "10.0.0.10",
            "v4": True,
            "occupied": False,
            "ready": True,
        },
    ),
    (
        "full-ipv6",
        pool("p", "2001:db8::1"),
        [req("shop/a", families=(6,))],
        {
            "poolSize": 1,
            "usage": 1,
            "used": {"2001:db8::1": "shop/a"},
            "firstIP": "2001:db8::1",
            "lastIP": "2001:db8::1",
            "v4": False,
            "occupied": True,
            "ready": True,
        },
    ),
]


@pytest.mark.parametrize(
    ("the_pool", "requests", "expected"),
    [case[1:] for case in POOL_STATUS_CASES],
    ids=[case[0] for case in POOL_STATUS_CASES],
)
def test_pool_status(
    the_pool: Pool, requests: list[ServiceRequest], expected: dict[str, object]
) -> None:
    pools = [dataclasses.replace(the_pool, is_default=True), SPARE]
    allocations = Allocations()
    for request in requests:
        assert isinstance(allocate(pools, allocations, request), Allocated)
    status = pool_status(pools[0], allocations)
    assert status == expected
    assert list(status["used"]) == sorted(status["used"], key=ipaddress.ip_address)
    assert pool_status(SPARE, allocations)["usage"] == 0


def test_every_address_of_a_slash_16_once() -> None:
    pools = [pool("big", "10.0.0.0/16", is_default=True)]
    allocations = Allocations()
    ips = set()
    for index in range(65_536):
        result = allocate(pools, allocations, req(f"ns/svc-{index:05d}"))
        assert isinstance(result, Allocated)
        ips.add(result.ips[0])
    assert len(ips) == 65_536
    assert min(ips, key=lambda ip: tuple(map(int, ip.split(".")))) == "10.0.0.0"
    assert isinstance(allocate(pools, allocations, req("ns/one-too-many")), Refused)
    assert pool_status(pools[0], allocations)["occupied"] is True
