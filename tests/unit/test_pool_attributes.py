"""Path attributes per pool (Eip spec.communities, largeCommunities, localPref): how an Eip's
values read, which routes carry them, how they travel to gobgpd and back, and that a change
replaces each path in place (no withdrawal)."""

from __future__ import annotations

from typing import Any

import pytest

from porter_lab import objects
from porter_lab.memory import MemoryCaches, MemoryGobgpd, MemoryKube
from porter_lb.model.addresses import parse_address_pool
from porter_lb.model.resources import NO_LOCAL_PREF, BgpAttributes, ModelError, bgp_attributes
from porter_lb.routing.gobgp import _route, path_message
from porter_lb.routing.routes import Route, with_attributes
from porter_lb.routing.speaker import Speaker


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, BgpAttributes()),
        # AS:value is AS * 65536 + value; duplicates once, sorted.
        ({"communities": ["65000:100", "1:2", "65000:100"]}, BgpAttributes((65538, 4259840100))),
        ({"communities": ["no-export", "NO-ADVERTISE"]}, BgpAttributes((0xFFFFFF01, 0xFFFFFF02))),
        ({"largeCommunities": ["4200000000:1:2"]}, BgpAttributes((), ((4200000000, 1, 2),))),
        ({"localPref": 0}, BgpAttributes(local_pref=0)),
        ({"localPref": 200}, BgpAttributes(local_pref=200)),
    ],
)
def test_eip_attributes(spec: dict[str, Any], expected: BgpAttributes) -> None:
    assert bgp_attributes(spec, "pool") == expected


@pytest.mark.parametrize(
    ("spec", "field", "rule"),
    [
        ({"communities": ["65536:1"]}, "spec.communities[0]", "AS:value"),
        ({"communities": ["1:2", "east"]}, "spec.communities[1]", "well-known name"),
        ({"communities": "1:2"}, "spec.communities", "must be a list"),
        ({"largeCommunities": ["1:2"]}, "spec.largeCommunities[0]", "global:local1:local2"),
        ({"largeCommunities": ["4294967296:0:0"]}, "spec.largeCommunities[0]", "4294967295"),
        ({"localPref": -1}, "spec.localPref", "0-4294967295"),
        ({"localPref": "high"}, "spec.localPref", "0-4294967295"),
    ],
)
def test_bad_attributes_name_the_field(spec: dict[str, Any], field: str, rule: str) -> None:
    with pytest.raises(ModelError) as refused:
        bgp_attributes(spec, "pool")
    assert refused.value.field == field
    assert rule in str(refused.value)


TAGGED = BgpAttributes((4259840100,), ((65000, 1, 2),), 200)


def test_routes_carry_the_attributes_of_their_pool_only() -> None:
    pools = [(parse_address_pool("203.0.113.0/28"), TAGGED)]
    rib = {
        "203.0.113.5/32": {Route("203.0.113.5/32", "0.0.0.0")},
        "203.0.113.20/32": {Route("203.0.113.20/32", "0.0.0.0")},
    }
    tagged = with_attributes(rib, pools)
    assert tagged["203.0.113.5/32"] == {Route("203.0.113.5/32", "0.0.0.0", 0, TAGGED)}
    assert tagged["203.0.113.20/32"] == {Route("203.0.113.20/32", "0.0.0.0")}


@pytest.mark.parametrize(
    "route",
    [
        Route("203.0.113.5/32", "198.51.100.11", 7, TAGGED),
        Route("2001:db8::5/128", "2001:db8::11", 0, BgpAttributes(local_pref=50)),
        Route("203.0.113.5/32", "0.0.0.0"),
    ],
)
def test_attributes_round_trip_through_the_path_message(route: Route) -> None:
    message = path_message(route)
    assert _route(route.prefix, message) == route
    assert route.attributes.local_pref == NO_LOCAL_PREF or any(
        a.WhichOneof("attr") == "local_pref" for a in message.pattrs
    )


def test_an_attribute_change_replaces_each_path_without_a_withdrawal() -> None:
    eip = objects.eip("pool", "203.0.113.0/24")
    eip["spec"]["communities"] = ["65000:100"]
    service = objects.load_balancer_service("web", "default") | objects.load_balancer_status(
        "203.0.113.7"
    )
    cluster = MemoryCaches(
        {
            "Node": [objects.node("node1") | objects.node_status(address="198.51.100.11")],
            "Eip": [eip],
            "BgpConf": [objects.bgp_conf(65001)],
            "BgpPeer": [objects.bgp_peer("tor", "198.51.100.1")],
            "Service": [service],
        }
    )
    gobgp = MemoryGobgpd()
    speaker = Speaker(cluster, gobgp, MemoryKube(), node_name="node1")
    speaker.reconcile_all()
    assert gobgp.paths == {
        Route("203.0.113.7/32", "0.0.0.0", 0, BgpAttributes((65000 << 16 | 100,)))
    }
    gobgp.calls.clear()
    eip["spec"]["communities"] = ["65000:200"]
    eip["spec"]["localPref"] = 300
    cluster.put("Eip", eip)
    speaker.reconcile_all()
    assert gobgp.calls == ["add 1 paths"]
    assert gobgp.paths == {
        Route("203.0.113.7/32", "0.0.0.0", 0, BgpAttributes((65000 << 16 | 200,), (), 300))
    }
