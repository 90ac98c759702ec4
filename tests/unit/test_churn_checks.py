"""The churn soak's end-state checks (porter_lab.reliability.churn) as tables: each kind of
leak and each unsettled Service they must catch, and a consistent state they must pass."""

from __future__ import annotations

from typing import Any

import pytest

from porter_lab import objects
from porter_lab.reliability.churn import (
    RssSeries,
    compare_fib,
    expected_fib,
    find_leaks,
    find_unsettled,
)
from porter_lb.model.resources import SHARING_KEY_ANNOTATION
from porter_lb.routing.audit import ClusterState

NS = "churn"


def service(name: str, ip: str = "", *, sharing: str = "", deleting: bool = False) -> Any:
    body = objects.load_balancer_service(name, NS)
    if ip:
        body["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
    if sharing:
        body["metadata"]["annotations"] = {SHARING_KEY_ANNOTATION: sharing}
        body["spec"]["ports"] = [{"port": 1000 + int(name[1:]), "protocol": "TCP"}]
        body["spec"]["selector"] = {"app": sharing}
    if deleting:
        body["metadata"] |= {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["f"]}
    return body


def eip(used: dict[str, str], *, usage: int | None = None, disable: bool = False) -> Any:
    body = objects.eip("pool", "203.0.113.0/28", default=True)
    if disable:
        body["spec"]["disable"] = True
    body["status"] = {"used": used, "usage": len(used) if usage is None else usage}
    return body


IP1, IP2 = "203.0.113.0", "203.0.113.1"


@pytest.mark.parametrize(
    ("services", "used", "usage", "problem"),
    [
        ([service("s1", IP1)], {IP1: f"{NS}/s1"}, None, None),
        ([service("s1")], {IP1: f"{NS}/s1"}, None, "whose status shows []"),
        ([], {IP1: f"{NS}/s1"}, None, "does not exist"),  # deleted, still recorded
        ([service("s1", IP1)], {}, None, "no Eip records"),
        ([service("s1", IP1)], {IP1: f"{NS}/s1"}, 2, "usage 2"),
        ([service("s1", "198.51.100.7")], {"198.51.100.7": f"{NS}/s1"}, None, "outside"),
        (
            [service("s1", IP1), service("s2", IP1)],
            {IP1: f"{NS}/s1;{NS}/s2"},
            None,
            "without one sharing key",
        ),
        (
            [service("s1", IP1, sharing="k"), service("s2", IP1, sharing="k")],
            {IP1: f"{NS}/s1;{NS}/s2"},
            None,
            None,
        ),
        ([service("s1", IP1, deleting=True)], {IP1: f"{NS}/s1"}, None, "being deleted"),
    ],
)
def test_find_leaks(
    services: list[Any], used: dict[str, str], usage: int | None, problem: str | None
) -> None:
    state = ClusterState(services=services, eips=[eip(used, usage=usage)])
    found = find_leaks(state, NS)
    if problem is None:
        assert found == []
    else:
        assert any(problem in line for line in found), found


@pytest.mark.parametrize(
    ("services", "used", "disable", "unsettled"),
    [
        ([service("s1", IP1), service("s2", IP2)], {IP1: f"{NS}/s1", IP2: f"{NS}/s2"}, False, []),
        # A free address, and a Service without one: it waits for nothing.
        ([service("s1", IP1), service("s2")], {IP1: f"{NS}/s1"}, False, ["s2"]),
        # Disabled: s2 rightly has none, s1 keeps its own.
        ([service("s1", IP1), service("s2")], {IP1: f"{NS}/s1"}, True, []),
        # Two Services on one IP without a sharing key: find_leaks reports it, not this.
        ([service("s1", IP1), service("s2", IP1)], {IP1: f"{NS}/s1;{NS}/s2"}, False, []),
        # An IP outside every Eip.
        ([service("s1", "198.51.100.7")], {}, False, ["s1"]),
    ],
)
def test_find_unsettled(
    services: list[Any], used: dict[str, str], disable: bool, unsettled: list[str]
) -> None:
    state = ClusterState(services=services, eips=[eip(used, disable=disable)])
    found = find_unsettled(state, NS)
    assert [line.split()[1].split("/")[1].rstrip(":") for line in found] == unsettled, found


def test_rss_series_growth_and_slope() -> None:
    series = RssSeries([(0.0, 0, 100), (1.0, 500, 110), (2.0, 1000, 120)])
    assert series.at_step(400) == 110
    assert series.at_step(5000) == 120
    assert series.slope_kib_per_1000_steps(0) == pytest.approx(20.0)


def node(name: str, rack: str, *, ready: bool = True) -> Any:
    return objects.node(name, {"rack": rack}) | objects.node_status(ready=ready)


def peer(selector: dict[str, str] | None = None) -> Any:
    return objects.bgp_peer("tor", "198.51.100.1", node_labels=selector)


ADDRESSES = {"n1": "10.0.0.1", "n2": "10.0.0.2", "n3": "10.0.0.3"}
NODES = [node("n1", "a"), node("n2", "a"), node("n3", "b")]


def local(name: str, ip: str) -> Any:
    body = service(name, ip)
    body["spec"]["externalTrafficPolicy"] = "Local"
    return body


def endpoint_slice(service_name: str, ready: dict[str, bool | None]) -> Any:
    body = objects.endpoint_slice(f"{service_name}-1", NS, service_name, list(ready))
    for endpoint in body["endpoints"]:
        flag = ready[endpoint["nodeName"]]
        if flag is None:
            endpoint.pop("conditions", None)  # unknown: ready, as the API defines it
        else:
            endpoint["conditions"] = {"ready": flag}
    return body


@pytest.mark.parametrize(
    ("services", "slices", "nodes", "selector", "expected"),
    [
        # Cluster: every Ready node.
        (
            [service("s1", IP1)],
            [],
            NODES,
            None,
            {f"{IP1}/32": {"10.0.0.1", "10.0.0.2", "10.0.0.3"}},
        ),
        # ... that the BgpPeer picks.
        ([service("s1", IP1)], [], NODES, {"rack": "a"}, {f"{IP1}/32": {"10.0.0.1", "10.0.0.2"}}),
        # A NotReady node is no next hop.
        (
            [service("s1", IP1)],
            [],
            [node("n1", "a", ready=False), node("n2", "a"), node("n3", "b")],
            None,
            {f"{IP1}/32": {"10.0.0.2", "10.0.0.3"}},
        ),
        # Local: the nodes with a ready endpoint (unknown counts as ready).
        (
            [local("s1", IP1)],
            [endpoint_slice("s1", {"n1": True, "n2": False, "n3": None})],
            NODES,
            None,
            {f"{IP1}/32": {"10.0.0.1", "10.0.0.3"}},
        ),
        # Local with no ready endpoint on a picked node: no route at all.
        (
            [local("s1", IP1)],
            [endpoint_slice("s1", {"n3": True})],
            NODES,
            {"rack": "a"},
            {},
        ),
        # A Service being deleted, or an IP outside every Eip: no route.
        ([service("s1", IP1, deleting=True), service("s2", "198.51.100.7")], [], NODES, None, {}),
    ],
)
def test_expected_fib(
    services: list[Any],
    slices: list[Any],
    nodes: list[Any],
    selector: dict[str, str] | None,
    expected: dict[str, set[str]],
) -> None:
    state = ClusterState(
        services=services,
        endpoint_slices=slices,
        nodes=nodes,
        eips=[eip({})],
        bgppeers=[peer(selector)],
    )
    assert expected_fib(state, NS, ADDRESSES, "tor") == expected


def test_compare_fib_names_missing_stale_and_wrong_next_hops() -> None:
    expected = {"203.0.113.1/32": {"10.0.0.1"}, "203.0.113.2/32": {"10.0.0.1", "10.0.0.2"}}
    fib = {
        "203.0.113.2/32": {"10.0.0.1"},
        "203.0.113.3/32": {"10.0.0.3"},
        "192.0.2.1/32": {"10.0.0.9"},  # outside the scope: not ours
    }
    report = compare_fib(expected, fib, "203.0.113.0/24")
    assert not report["in_sync"]
    assert report["missing"] == ["203.0.113.1/32"]
    assert report["stale"] == ["203.0.113.3/32"]
    assert report["wrong_next_hops"] == [
        {"prefix": "203.0.113.2/32", "want": ["10.0.0.1", "10.0.0.2"], "have": ["10.0.0.1"]}
    ]
    assert compare_fib(expected, expected, "203.0.113.0/24")["in_sync"]
