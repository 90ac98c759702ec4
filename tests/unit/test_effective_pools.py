"""Which Eip owns an address: one rule for the controller, the speakers, layer 2 and the audit.

The rule, as these tests state it: an Eip being deleted owns nothing; an Eip whose spec cannot
be read owns nothing; of two Eips that share an address, or that are both the default pool of
one IP family, the older owns its addresses and the newer owns none (its whole range, not only
the shared part); every other Eip owns its pool, disabled or not (a disabled pool gives out no
new address, but those it gave out stay announced).

The reproduction this guards: a layer-2 Eip 203.0.113.210-220, then a newer BGP Eip
203.0.113.200-230 overlapping it (Ready=False, Conflict), then a Service given 203.0.113.210
from the layer-2 pool. The controller dropped the BGP Eip, but the speakers, layer 2 and the
audit used every Eip, so the address went out over BGP too, and the audit called it in sync.
"""

from __future__ import annotations

from typing import Any

import pytest

from porter_lab import objects
from porter_lb.layer2.election import layer2_pools
from porter_lb.model.validation import effective_pools
from porter_lb.routing.audit import ClusterState, desired_routes_from_cluster
from porter_lb.routing.routes import bgp_pools

Obj = dict[str, Any]
N1, N2 = "198.51.100.11", "198.51.100.12"


def eip(
    name: str,
    address: str,
    created: int,
    *,
    layer2: bool = False,
    default: bool = False,
    deleting: bool = False,
    disabled: bool = False,
    protocol: str = "",
) -> Obj:
    """An Eip made `created` minutes after midnight."""
    obj = objects.eip(name, address, default=default, layer2_interface="eth0" if layer2 else "")
    obj["metadata"]["creationTimestamp"] = f"2026-12-01T00:{created:02d}:00Z"
    if deleting:
        obj["metadata"]["deletionTimestamp"] = "2026-12-01T01:00:00Z"
        obj["metadata"]["finalizers"] = ["network.kubesphere.io/eip"]
    if disabled:
        obj["spec"]["disable"] = True
    if protocol:
        obj["spec"]["protocol"] = protocol
    return obj


L2_OLD = eip("l2-pool", "203.0.113.210-203.0.113.220", 1, layer2=True)
BGP_NEW = eip("bgp-pool", "203.0.113.200-203.0.113.230", 2)

CASES: list[tuple[str, list[Obj], set[str]]] = [
    ("apart: both own", [eip("a", "192.0.2.0/28", 1), eip("b", "192.0.2.16/28", 2)], {"a", "b"}),
    ("overlap: the older owns, the newer nothing", [L2_OLD, BGP_NEW], {"l2-pool"}),
    ("overlap, listed newest first: the same", [BGP_NEW, L2_OLD], {"l2-pool"}),
    (
        "an overlap with the loser: no effect on a third Eip",
        [eip("a", "192.0.2.0/28", 1), eip("b", "192.0.2.8/28", 2), eip("c", "192.0.2.16/28", 3)],
        {"a", "c"},
    ),
    (
        "the older being deleted: the newer owns",
        [eip("old", "192.0.2.0/28", 1, deleting=True), eip("new", "192.0.2.0/28", 2)],
        {"new"},
    ),
    ("unreadable spec: owns nothing", [eip("bad", "192.0.2.0/33", 1)], set()),
    (
        "unreadable and older: no conflict with it",
        [eip("bad", "192.0.2.0/33", 1, protocol="carrier-pigeon"), eip("ok", "192.0.2.0/28", 2)],
        {"ok"},
    ),
    (
        "two IPv4 defaults: the newer owns nothing",
        [eip("d1", "192.0.2.0/28", 1, default=True), eip("d2", "192.0.2.16/28", 2, default=True)],
        {"d1"},
    ),
    (
        "an IPv4 and an IPv6 default: both own",
        [eip("d4", "192.0.2.0/28", 1, default=True), eip("d6", "2001:db8::/120", 2, default=True)],
        {"d4", "d6"},
    ),
    ("disabled: still owns", [eip("off", "192.0.2.0/28", 1, disabled=True)], {"off"}),
]


@pytest.mark.parametrize(("eips", "owners"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_which_eips_own_their_addresses(eips: list[Obj], owners: set[str]) -> None:
    assert set(effective_pools(eips).pools) == owners


def test_why_an_eip_owns_nothing() -> None:
    found = effective_pools([L2_OLD, BGP_NEW, eip("bad", "192.0.2.0/33", 3)])
    reasons = {name: reason for name, (reason, _) in found.problems.items()}
    assert reasons == {"bgp-pool": "Conflict", "bad": "InvalidSpec"}
    assert "overlaps Eip 'l2-pool'" in found.problems["bgp-pool"][1]
    assert "192.0.2.0/33" in found.problems["bad"][1]


def test_the_speakers_announce_no_pool_that_lost_a_conflict() -> None:
    pools, errors = bgp_pools([L2_OLD, BGP_NEW])
    assert (pools, errors) == ([], [])


def test_layer2_answers_for_no_pool_that_lost_a_conflict() -> None:
    bgp_old = eip("bgp-pool", "203.0.113.200-203.0.113.230", 1)
    l2_new = eip("l2-pool", "203.0.113.210-203.0.113.220", 2, layer2=True)
    pools, errors = layer2_pools([bgp_old, l2_new])
    assert (pools, errors) == ([], [])
    owned, _ = layer2_pools([L2_OLD, BGP_NEW])
    assert [p.name for p in owned] == ["l2-pool"]


def test_the_audit_wants_no_bgp_route_for_a_layer2_address() -> None:
    service = objects.load_balancer_service("web", "ns")
    service["metadata"]["annotations"] = {"eip.porter.kubesphere.io/v1alpha2": "l2-pool"}
    service["status"] = objects.load_balancer_status("203.0.113.210")["status"]
    state = ClusterState(
        services=[service],
        endpoint_slices=[],
        nodes=[_node("n1", N1), _node("n2", N2)],
        eips=[L2_OLD, BGP_NEW],
        bgpconfs=[objects.bgp_conf(65001)],
        bgppeers=[objects.bgp_peer("tor", "198.51.100.1")],
        secrets={},
    )
    routes = desired_routes_from_cluster(state)
    assert routes.desired == {}
    assert routes.pools == []


def _node(name: str, address: str) -> Obj:
    node = objects.node(name)
    node["status"] = objects.node_status(address=address)["status"]
    return node
