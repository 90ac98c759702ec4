"""Desired routes as tables: Services, endpoints, nodes and peers in; prefixes, next hops out."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from typing import Any

import pytest

from porter_lb.model.resources import Endpoint, ModelError, Node, ServiceTraffic
from porter_lb.routing import routes
from porter_lb.routing.routes import (
    EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL,
    LabelSelector,
    LabelSelectorRequirement,
    Peer,
    Route,
    central_paths,
    desired_routes,
    eligible_nodes,
    host_prefix,
    node_announcements,
    path_identifier,
)

EXCLUDED = {EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL: ""}

NODES = {
    n.name: n
    for n in [
        Node("n1", True, {"rack": "a"}, ("192.0.2.11", "2001:db8:1::11")),
        Node("n2", True, {"rack": "b"}, ("192.0.2.12",)),
        Node("n3", True, {"rack": "a", "spine": "yes"}, ("2001:db8:1::13", "192.0.2.13")),
        Node("down", False, {"rack": "a"}, ("192.0.2.14",)),
        Node("excluded", True, {"rack": "b", **EXCLUDED}, ("192.0.2.15",)),
    ]
}


def cluster(key: str = "shop/web", *ips: str) -> ServiceTraffic:
    return ServiceTraffic(key, "Cluster", ips or ("203.0.113.10",))


def local(key: str = "shop/web", *ips: str) -> ServiceTraffic:
    return ServiceTraffic(key, "Local", ips or ("203.0.113.10",))


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (LabelSelector(), {}, True),
        (LabelSelector({"rack": "a"}), {"rack": "a", "x": "y"}, True),
        (LabelSelector({"rack": "a"}), {"rack": "b"}, False),
        (LabelSelector({"rack": "a"}), {}, False),
        (
            LabelSelector(match_expressions=(LabelSelectorRequirement("rack", "In", ("a", "b")),)),
            {"rack": "b"},
            True,
        ),
        (
            LabelSelector(match_expressions=(LabelSelectorRequirement("rack", "In", ("a",)),)),
            {},
            False,
        ),
        (
            LabelSelector(match_expressions=(LabelSelectorRequirement("rack", "NotIn", ("a",)),)),
            {"rack": "b"},
            True,
        ),
        (
            LabelSelector(match_expressions=(LabelSelectorRequirement("rack", "NotIn", ("a",)),)),
            {},
            True,
        ),
        (
            LabelSelector(match_expressions=(LabelSelectorRequirement("rack", "NotIn", ("a",)),)),
            {"rack": "a"},
            False,
        ),
        (
            LabelSelector(match_expressions=(LabelSelectorRequirement("spine", "Exists"),)),
            {"spine": ""},
            True,
        ),
        (
            LabelSelector(match_expressions=(LabelSelectorRequirement("spine", "Exists"),)),
            {},
            False,
        ),
        (
            LabelSelector(match_expressions=(LabelSelectorRequirement("spine", "DoesNotExist"),)),
            {},
            True,
        ),
        (
            LabelSelector(match_expressions=(LabelSelectorRequirement("spine", "DoesNotExist"),)),
            {"spine": "no"},
            False,
        ),
        (
            LabelSelector({"rack": "a"}, (LabelSelectorRequirement("spine", "DoesNotExist"),)),
            {"rack": "a", "spine": "yes"},
            False,
        ),
    ],
    ids=[
        "empty-matches-all",
        "match-labels",
        "match-labels-other-value",
        "match-labels-missing",
        "in",
        "in-missing-key",
        "not-in",
        "not-in-missing-key-matches",
        "not-in-listed-value",
        "exists",
        "exists-missing",
        "does-not-exist",
        "does-not-exist-present",
        "all-terms-must-match",
    ],
)
def test_label_selector_matches(
    selector: LabelSelector, labels: dict[str, str], expected: bool
) -> None:
    assert selector.matches(labels) is expected


def test_label_selector_from_dict() -> None:
    selector = LabelSelector.from_dict(
        {
            "matchLabels": {"rack": "a"},
            "matchExpressions": [
                {"key": "spine", "operator": "In", "values": ["yes"]},
                {"key": "drain", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector == LabelSelector(
        {"rack": "a"},
        (
            LabelSelectorRequirement("spine", "In", ("yes",)),
            LabelSelectorRequirement("drain", "DoesNotExist"),
        ),
    )
    assert LabelSelector.from_dict(None) == LabelSelector()


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            {"matchExpressions": [{"key": "rack", "operator": "Near", "values": ["a"]}]},
            "BgpPeer 'tor': spec.nodeSelector.matchExpressions[0].operator 'Near': "
            "must be one of ['In', 'NotIn', 'Exists', 'DoesNotExist']",
        ),
        (
            {"matchExpressions": [{"key": "rack", "operator": "In"}]},
            "BgpPeer 'tor': spec.nodeSelector.matchExpressions[0].values '[]': In needs values",
        ),
        (
            {"matchExpressions": [{"key": "rack", "operator": "Exists", "values": ["a"]}]},
            "BgpPeer 'tor': spec.nodeSelector.matchExpressions[0].values '['a']': "
            "Exists takes no values",
        ),
        (
            {"matchExpressions": [{"operator": "Exists"}]},
            "BgpPeer 'tor': spec.nodeSelector.matchExpressions[0].key: must be a label key",
        ),
        (
            {"matchLabels": {"rack": 1}},
            "BgpPeer 'tor': spec.nodeSelector.matchLabels '{'rack': 1}': must map strings",
        ),
    ],
    ids=["unknown-operator", "in-without-values", "exists-with-values", "no-key", "bad-labels"],
)
def test_label_selector_errors_name_object_and_field(
    selector: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelError) as caught:
        LabelSelector.from_dict(selector, kind="BgpPeer", name="tor")
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("traffic", "endpoints", "expected"),
    [
        (cluster(), [], {"n1", "n2", "n3"}),
        (cluster(), [Endpoint("n1")], {"n1", "n2", "n3"}),
        (local(), [Endpoint("n1"), Endpoint("n1"), Endpoint("n3")], {"n1", "n3"}),
        (local(), [Endpoint("n1"), Endpoint("n2", ready=False)], {"n1"}),
        (local(), [Endpoint("down"), Endpoint("excluded"), Endpoint("unknown")], set()),
        (local(), [], set()),
    ],
    ids=[
        "cluster-every-ready-node",
        "cluster-ignores-endpoints",
        "local-nodes-with-ready-endpoints",
        "local-unready-endpoint-does-not-count",
        "local-never-down-excluded-or-unknown",
        "local-no-endpoints",
    ],
)
def test_eligible_nodes(
    traffic: ServiceTraffic, endpoints: list[Endpoint], expected: set[str]
) -> None:
    assert eligible_nodes(traffic, endpoints, NODES) == expected


def test_exclusion_label_excludes_whatever_its_value() -> None:
    nodes = {"n": Node("n", True, {EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL: "false"})}
    assert eligible_nodes(cluster(), [], nodes) == frozenset()


ALL = Peer("all")
RACK_A = Peer("rack-a", LabelSelector({"rack": "a"}))
NOT_SPINE = Peer(
    "not-spine",
    LabelSelector(match_expressions=(LabelSelectorRequirement("spine", "DoesNotExist"),)),
)

DESIRED_CASES = [
    (
        "cluster-to-every-peer-by-selector",
        [cluster()],
        {},
        [ALL, RACK_A, NOT_SPINE],
        {
            "all": {"203.0.113.10/32": {"n1", "n2", "n3"}},
            "rack-a": {"203.0.113.10/32": {"n1", "n3"}},
            "not-spine": {"203.0.113.10/32": {"n1", "n2"}},
        },
    ),
    (
        "local-follows-endpoints",
        [local()],
        {"shop/web": [Endpoint("n2"), Endpoint("n3")]},
        [ALL, RACK_A],
        {"all": {"203.0.113.10/32": {"n2", "n3"}}, "rack-a": {"203.0.113.10/32": {"n3"}}},
    ),
    (
        "openelb-458-no-ready-endpoint-withdraws",
        [local()],
        {"shop/web": [Endpoint("n1", ready=False)]},
        [ALL],
        {"all": {}},
    ),
    (
        "openelb-458-endpoint-only-on-down-node-withdraws",
        [local()],
        {"shop/web": [Endpoint("down")]},
        [ALL],
        {"all": {}},
    ),
    (
        "selector-leaves-no-node-withdraws-for-that-peer",
        [local()],
        {"shop/web": [Endpoint("n2")]},
        [ALL, RACK_A],
        {"all": {"203.0.113.10/32": {"n2"}}, "rack-a": {}},
    ),
    (
        "shared-ip-unions-services",
        [local("shop/a", "203.0.113.10"), local("shop/b", "203.0.113.10")],
        {"shop/a": [Endpoint("n1")], "shop/b": [Endpoint("n2")]},
        [ALL],
        {"all": {"203.0.113.10/32": {"n1", "n2"}}},
    ),
    (
        "dual-stack-host-prefixes",
        [cluster("shop/web", "203.0.113.10", "2001:DB8:F::10")],
        {},
        [RACK_A],
        {"rack-a": {"203.0.113.10/32": {"n1", "n3"}, "2001:db8:f::10/128": {"n1", "n3"}}},
    ),
    (
        "service-without-ip-announces-nothing",
        [ServiceTraffic("shop/web", "Cluster", ())],
        {},
        [ALL],
        {"all": {}},
    ),
    ("no-peers", [cluster()], {}, [], {}),
]


@pytest.mark.parametrize(
    ("services", "endpoints", "peers", "expected"),
    [case[1:] for case in DESIRED_CASES],
    ids=[case[0] for case in DESIRED_CASES],
)
def test_desired_routes(
    services: list[ServiceTraffic],
    endpoints: dict[str, list[Endpoint]],
    peers: list[Peer],
    expected: dict[str, dict[str, set[str]]],
) -> None:
    assert desired_routes(services, endpoints, NODES, peers) == expected


def test_emptied_candidate_set_leaves_nothing_stale() -> None:
    """OpenELB #458: the last next hops stayed announced after every endpoint had gone."""
    service = local()
    before = desired_routes([service], {"shop/web": [Endpoint("n1")]}, NODES, [ALL])
    after = desired_routes([service], {"shop/web": []}, NODES, [ALL])
    assert before == {"all": {"203.0.113.10/32": {"n1"}}}
    assert after == {"all": {}}
    assert node_announcements(after["all"], "n1") == set()
    assert central_paths(after["all"], {"n1": ("192.0.2.11",)}) == set()


def test_bad_status_ip_names_the_service() -> None:
    with pytest.raises(ModelError, match=r"Service 'shop/web': .* 'not-an-ip': not an IP"):
        desired_routes([cluster("shop/web", "not-an-ip")], {}, NODES, [ALL])


@pytest.mark.parametrize(
    ("ip", "prefix"),
    [("203.0.113.10", "203.0.113.10/32"), ("2001:DB8::0010", "2001:db8::10/128")],
    ids=["ipv4", "ipv6-canonical"],
)
def test_host_prefix(ip: str, prefix: str) -> None:
    assert host_prefix(ip) == prefix


DESIRED = {
    "203.0.113.10/32": frozenset({"n1", "n2"}),
    "203.0.113.11/32": frozenset({"n2"}),
    "2001:db8:f::10/128": frozenset({"n1", "n3"}),
}


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("n1", {"203.0.113.10/32", "2001:db8:f::10/128"}),
        ("n2", {"203.0.113.10/32", "203.0.113.11/32"}),
        ("n3", {"2001:db8:f::10/128"}),
        ("down", set()),
    ],
    ids=["n1", "n2", "n3", "not-a-next-hop"],
)
def test_node_announcements(node: str, expected: set[str]) -> None:
    assert node_announcements(DESIRED, node) == expected


def test_central_paths_use_node_addresses_as_third_party_next_hops() -> None:
    addresses = {name: node.addresses for name, node in NODES.items()}
    v6_n1, v6_n3 = "2001:db8:1::11", "2001:db8:1::13"
    assert central_paths(DESIRED, addresses) == {
        Route("203.0.113.10/32", "192.0.2.11", int(ipaddress.IPv4Address("192.0.2.11"))),
        Route("203.0.113.10/32", "192.0.2.12", int(ipaddress.IPv4Address("192.0.2.12"))),
        Route("203.0.113.11/32", "192.0.2.12", int(ipaddress.IPv4Address("192.0.2.12"))),
        Route("2001:db8:f::10/128", v6_n1, path_identifier(v6_n1)),
        Route("2001:db8:f::10/128", v6_n3, path_identifier(v6_n3)),
    }


def test_central_paths_skip_nodes_without_an_address_of_the_family() -> None:
    desired = {"2001:db8:f::10/128": frozenset({"n1", "n2"})}
    assert central_paths(desired, {"n1": "2001:db8:1::11", "n2": ("192.0.2.12",)}) == {
        Route("2001:db8:f::10/128", "2001:db8:1::11", path_identifier("2001:db8:1::11"))
    }


@pytest.mark.parametrize(
    ("next_hop", "identifier"),
    [
        ("192.0.2.11", 0xC000020B),
        ("255.255.255.255", 0xFFFFFFFF),
        ("2001:db8::1", path_identifier("2001:db8::1")),
    ],
    ids=["ipv4-is-the-address", "ipv4-max", "ipv6-stable"],
)
def test_path_identifier(next_hop: str, identifier: int) -> None:
    assert path_identifier(next_hop) == identifier
    assert 0 <= path_identifier(next_hop) <= 0xFFFFFFFF


def test_ipv6_path_identifier_is_stable_across_processes() -> None:
    script = (
        "from porter_lb.routing.routes import path_identifier; "
        "print(path_identifier('2001:db8::1'))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert int(output) == path_identifier("2001:db8::1")


def test_colliding_identifiers_of_one_prefix_stay_distinct(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(routes, "path_identifier", lambda next_hop: 7)
    desired = {"2001:db8:f::10/128": frozenset({"a", "b", "c"})}
    addresses = {"a": "2001:db8::a", "b": "2001:db8::b", "c": "2001:db8::c"}
    assert sorted(central_paths(desired, addresses)) == [
        Route("2001:db8:f::10/128", "2001:db8::a", 7),
        Route("2001:db8:f::10/128", "2001:db8::b", 8),
        Route("2001:db8:f::10/128", "2001:db8::c", 9),
    ]


def test_pure_core_imports_no_grpc_or_kubernetes() -> None:
    script = (
        "import sys, porter_lb.model.resources, porter_lb.allocation.allocator, "
        "porter_lb.routing.routes; "
        "print(sorted(m for m in ('grpc', 'kubernetes', 'porter_lb.routing.gobgp') "
        "if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert output.strip() == "[]"
