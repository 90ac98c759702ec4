"""Layer-2 election as tables: who answers for each IP, and which Eip interfaces are valid."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest

from porter_lb.layer2.election import (
    Assignment,
    InterfaceSpec,
    Layer2Pool,
    announcer,
    assignments,
    layer2_pool,
    node_assignments,
    parse_interface,
    rank,
    rendezvous_score,
)
from porter_lb.model.addresses import parse_address_pool
from porter_lb.model.resources import Endpoint, ModelError, Node, Pool, ServiceTraffic
from porter_lb.routing.routes import EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL

NODES = {
    n.name: n
    for n in [
        Node("n1", True),
        Node("n2", True),
        Node("n3", True),
        Node("down", False),
        Node("excluded", True, {EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL: ""}),
    ]
}
POOL = Layer2Pool("l2", parse_address_pool("198.51.100.200-198.51.100.250"), InterfaceSpec("eth0"))
POOL6 = Layer2Pool("l2v6", parse_address_pool("2001:db8::100/120"), InterfaceSpec("eth0"))
ALL_ALIVE = {name: frozenset() for name in NODES}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("eth0", InterfaceSpec(name="eth0")),
        (" bond0.100 ", InterfaceSpec(name="bond0.100")),
        ("can_reach:198.51.100.1", InterfaceSpec(can_reach="198.51.100.1")),
        ("can_reach:2001:DB8::1", InterfaceSpec(can_reach="2001:db8::1")),
    ],
)
def test_interface_accepted(value: str, expected: InterfaceSpec) -> None:
    assert parse_interface(value, "pool") == expected


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (None, "needs an interface"),
        ("", "needs an interface"),
        ("lo", "lo cannot answer"),
        ("can_reach:", "must be followed by an IP address"),
        ("can_reach:router", "must be followed by an IP address"),
        ("a-very-long-interface-name", "not an interface name"),
        ("eth 0", "not an interface name"),
    ],
)
def test_interface_refused_names_eip_field_and_rule(value: object, rule: str) -> None:
    with pytest.raises(ModelError) as caught:
        parse_interface(value, "pool-a")
    assert str(caught.value).startswith("Eip 'pool-a': spec.interface")
    assert rule in str(caught.value)


def test_layer2_pool_only_for_layer2_protocol() -> None:
    addresses = parse_address_pool("198.51.100.0/24")
    assert layer2_pool(Pool("b", addresses, protocol="bgp")) is None
    assert layer2_pool(Pool("l", addresses, protocol="layer2", interface="eth1")) == Layer2Pool(
        "l", addresses, InterfaceSpec("eth1")
    )
    with pytest.raises(ModelError, match="lo cannot answer"):
        layer2_pool(Pool("l", addresses, protocol="layer2", interface="lo"))


def test_score_is_stable_and_canonical() -> None:
    # A fixed value: every agent, every process, every host must compute the same.
    assert rendezvous_score("198.51.100.200", "n1") == int.from_bytes(
        __import__("hashlib").sha256(b"198.51.100.200\0n1").digest()[:8], "big"
    )
    assert rendezvous_score("2001:DB8::1", "n1") == rendezvous_score("2001:db8::1", "n1")


def test_rank_is_a_total_order_independent_of_input_order() -> None:
    ranked = rank("198.51.100.200", ["n3", "n1", "n2", "n1"])
    assert sorted(ranked) == ["n1", "n2", "n3"]
    assert rank("198.51.100.200", reversed(ranked)) == ranked
    assert announcer("198.51.100.200", ranked) == ranked[0]
    assert announcer("198.51.100.200", []) is None


def test_losing_a_node_moves_only_its_ips_and_spreads_them() -> None:
    nodes = [f"node{i}" for i in range(1, 6)]
    ips = [str(ipaddress.ip_address("198.51.100.0") + i) for i in range(1, 251)]
    before = {ip: announcer(ip, nodes) for ip in ips}
    counts = Counter(before.values())
    assert set(counts) == set(nodes) and min(counts.values()) >= 30  # spread over all nodes
    after = {ip: announcer(ip, [n for n in nodes if n != "node3"]) for ip in ips}
    moved = {ip for ip in ips if before[ip] != after[ip]}
    assert moved == {ip for ip in ips if before[ip] == "node3"}
    assert len(set(after[ip] for ip in moved)) == 4  # spread, not piled on one node


def test_node_returning_takes_back_exactly_its_ips() -> None:
    nodes = ["n1", "n2", "n3"]
    ips = [f"198.51.100.{i}" for i in range(200, 230)]
    full = {ip: announcer(ip, nodes) for ip in ips}
    without = {ip: announcer(ip, ["n1", "n3"]) for ip in ips}
    back = {ip: announcer(ip, nodes) for ip in ips}
    assert back == full
    assert {ip for ip in ips if full[ip] != without[ip]} == {ip for ip in ips if full[ip] == "n2"}


def local(key: str, *ips: str) -> ServiceTraffic:
    return ServiceTraffic(key, "Local", ips)


def cluster(key: str, *ips: str) -> ServiceTraffic:
    return ServiceTraffic(key, "Cluster", ips)


def winner(ip: str, *candidates: str) -> str:
    chosen = announcer(ip, candidates)
    assert chosen is not None
    return chosen


IP = "198.51.100.200"


@pytest.mark.parametrize(
    ("services", "endpoints", "alive", "expected"),
    [
        # Cluster: every Ready, non-excluded, alive node is a candidate.
        ([cluster("a/web", IP)], {}, ALL_ALIVE, {IP: winner(IP, "n1", "n2", "n3")}),
        # Local: only nodes with a ready endpoint.
        (
            [local("a/web", IP)],
            {"a/web": [Endpoint("n2"), Endpoint("n3", ready=False), Endpoint("down")]},
            ALL_ALIVE,
            {IP: "n2"},
        ),
        # Local without any ready endpoint: nobody answers.
        ([local("a/web", IP)], {"a/web": [Endpoint("n1", ready=False)]}, ALL_ALIVE, {}),
        # Dead nodes (no fresh heartbeat) are not candidates.
        ([cluster("a/web", IP)], {}, {"n3": frozenset()}, {IP: "n3"}),
        ([cluster("a/web", IP)], {}, {}, {}),
        # A node that reported the Eip unusable (link down) is not a candidate for it.
        (
            [cluster("a/web", IP)],
            {},
            {"n1": frozenset({"l2"}), "n2": frozenset({"other"})},
            {IP: "n2"},
        ),
        # IPs outside the layer2 pools (BGP ones) are not layer2's.
        ([cluster("a/web", "203.0.113.7")], {}, ALL_ALIVE, {}),
        # Shared IP: the union of the Services' eligible nodes.
        (
            [local("a/dns-udp", IP), local("a/dns-tcp", IP)],
            {"a/dns-udp": [Endpoint("n1")], "a/dns-tcp": [Endpoint("n3")]},
            ALL_ALIVE,
            {IP: winner(IP, "n1", "n3")},
        ),
    ],
)
def test_assignments(
    services: list[ServiceTraffic],
    endpoints: dict[str, list[Endpoint]],
    alive: dict[str, frozenset[str]],
    expected: dict[str, str],
) -> None:
    result = assignments(services, endpoints, NODES, [POOL, POOL6], alive)
    assert {ip: a.node for ip, a in result.items()} == expected
    for ip, assignment in result.items():
        assert assignment.pool == "l2"
        assert assignment.services == tuple(sorted(s.key for s in services if ip in s.ips))


def test_dual_stack_service_gets_one_announcer_per_ip() -> None:
    result = assignments(
        [cluster("a/web", IP, "2001:DB8::105")], {}, NODES, [POOL, POOL6], ALL_ALIVE
    )
    assert set(result) == {IP, "2001:db8::105"}
    assert result["2001:db8::105"] == Assignment(
        "2001:db8::105", "l2v6", winner("2001:db8::105", "n1", "n2", "n3"), ("a/web",)
    )


def test_node_assignments_picks_the_nodes_ips() -> None:
    ips = [f"198.51.100.{i}" for i in range(200, 220)]
    result = assignments([cluster("a/web", *ips)], {}, NODES, [POOL], ALL_ALIVE)
    split = {n: set(node_assignments(result, n)) for n in ("n1", "n2", "n3")}
    assert set().union(*split.values()) == set(ips)
    assert sum(len(s) for s in split.values()) == len(ips)  # exactly one node per IP
