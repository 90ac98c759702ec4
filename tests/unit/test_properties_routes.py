"""Properties of desired-route computation over random clusters: next hops are exactly the
Ready, not excluded nodes the peer selects (with externalTrafficPolicy Local: hosting a ready
endpoint); a prefix with no such node is absent, so it is withdrawn.

Profiles and how to search longer: tests/unit/conftest.py.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from porter_lb.model.resources import Endpoint, Node, ServiceTraffic
from porter_lb.routing.routes import (
    EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL,
    LabelSelector,
    Peer,
    central_paths,
    desired_routes,
    node_announcements,
)

NODE_NAMES = [f"n{i}" for i in range(6)]
SERVICE_IPS = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "2001:db8::1", "2001:db8::2"]


@st.composite
def nodes(draw: st.DrawFn) -> dict[str, Node]:
    names = draw(st.lists(st.sampled_from(NODE_NAMES), unique=True, max_size=len(NODE_NAMES)))
    result = {}
    for index, name in enumerate(sorted(names)):
        labels = {"rack": draw(st.sampled_from(["a", "b"]))}
        if draw(st.booleans()) and draw(st.booleans()):
            labels[EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL] = draw(st.sampled_from(["", "x"]))
        addresses = draw(
            st.lists(
                st.sampled_from([f"198.51.100.{index + 1}", f"2001:db8:1::{index + 1}"]),
                unique=True,
            )
        )
        result[name] = Node(name, draw(st.booleans()), labels, tuple(addresses))
    return result


services = st.lists(
    st.builds(
        ServiceTraffic,
        key=st.sampled_from(["shop/web", "shop/api", "team/db", "team/dns"]),
        external_traffic_policy=st.sampled_from(["Cluster", "Local"]),
        ips=st.lists(st.sampled_from(SERVICE_IPS), unique=True, max_size=2).map(tuple),
    ),
    max_size=4,
    unique_by=lambda s: s.key,
)
endpoints = st.dictionaries(
    st.sampled_from(["shop/web", "shop/api", "team/db", "team/dns"]),
    st.lists(
        st.builds(Endpoint, node_name=st.sampled_from([*NODE_NAMES, "gone"]), ready=st.booleans()),
        max_size=5,
    ),
)
peers = st.lists(
    st.builds(
        Peer,
        name=st.sampled_from(["tor1", "tor2", "tor3"]),
        node_selector=st.sampled_from(
            [LabelSelector(), LabelSelector({"rack": "a"}), LabelSelector({"rack": "c"})]
        ),
    ),
    max_size=3,
    unique_by=lambda p: p.name,
)


def expected_routes(
    traffic: list[ServiceTraffic],
    by_service: dict[str, list[Endpoint]],
    cluster: dict[str, Node],
    peer: Peer,
) -> dict[str, frozenset[str]]:
    """The rule, written plainly: one prefix per Service IP, next hops per node."""
    hops: dict[str, set[str]] = defaultdict(set)
    for service in traffic:
        for ip in service.ips:
            address = ipaddress.ip_address(ip)
            prefix = f"{address}/{address.max_prefixlen}"
            hops[prefix]  # a prefix with no next hop must be absent, not empty
            for node in cluster.values():
                serving = node.ready and EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL not in (
                    node.labels
                )
                hosting = service.external_traffic_policy == "Cluster" or any(
                    e.node_name == node.name and e.ready for e in by_service.get(service.key, [])
                )
                if serving and hosting and peer.node_selector.matches(node.labels):
                    hops[prefix].add(node.name)
    return {prefix: frozenset(names) for prefix, names in hops.items() if names}


@given(services, endpoints, nodes(), peers)
def test_next_hops_are_exactly_the_eligible_nodes(
    traffic: list[ServiceTraffic],
    by_service: dict[str, list[Endpoint]],
    cluster: dict[str, Node],
    bgp_peers: list[Peer],
) -> None:
    desired = desired_routes(traffic, by_service, cluster, bgp_peers)
    assert set(desired) == {p.name for p in bgp_peers}
    for peer in bgp_peers:
        assert desired[peer.name] == expected_routes(traffic, by_service, cluster, peer)
        for prefix, hops in desired[peer.name].items():
            assert hops, prefix
            for name in hops:
                node = cluster[name]
                assert node.ready
                assert EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL not in node.labels
        for name in NODE_NAMES:
            announced = node_announcements(desired[peer.name], name)
            assert announced == {p for p, hops in desired[peer.name].items() if name in hops}


@given(services, endpoints, nodes(), peers)
def test_no_eligible_node_withdraws_everything(
    traffic: list[ServiceTraffic],
    by_service: dict[str, list[Endpoint]],
    cluster: dict[str, Node],
    bgp_peers: list[Peer],
) -> None:
    not_ready = {name: replace(node, ready=False) for name, node in cluster.items()}
    desired = desired_routes(traffic, by_service, not_ready, bgp_peers)
    assert desired == {p.name: {} for p in bgp_peers}
    no_endpoints = [replace(s, external_traffic_policy="Local") for s in traffic]
    assert desired_routes(no_endpoints, {}, cluster, bgp_peers) == desired


@given(services, endpoints, nodes(), peers)
def test_central_paths_one_per_prefix_and_reachable_node(
    traffic: list[ServiceTraffic],
    by_service: dict[str, list[Endpoint]],
    cluster: dict[str, Node],
    bgp_peers: list[Peer],
) -> None:
    addresses = {name: node.addresses for name, node in cluster.items()}
    for routes in desired_routes(traffic, by_service, cluster, bgp_peers).values():
        paths = central_paths(routes, addresses)
        assert {p.prefix for p in paths} <= set(routes)
        for prefix, hops in routes.items():
            family = 6 if ":" in prefix else 4
            expected = set()
            for name in hops:
                mine = [a for a in addresses[name] if ipaddress.ip_address(a).version == family]
                if mine:
                    expected.add(mine[0])
            of_prefix = [p for p in paths if p.prefix == prefix]
            assert {p.next_hop for p in of_prefix} == expected
            assert len({p.identifier for p in of_prefix}) == len(of_prefix)
