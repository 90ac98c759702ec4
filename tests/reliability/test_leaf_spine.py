"""porter-lb on a leaf-spine fabric (porter_lab.fabric): two racks, each behind its own leaf
(BIRD, FRR), under a BIRD spine; per-node and central speaker.

The rule, written here: a leaf's kernel FIB routes each EIP to exactly the endpoint nodes of
its Service in that leaf's rack (nothing for a Service with none there); the spine's routes
it to exactly the uplinks of the leaves whose rack has one. Node mode gives each rack its AS
(BgpConf asPerRack on the rack label); central mode exports to each leaf only its own rack's
next hops. Real TCP from the client behind the spine reaches only the endpoint nodes, both
racks when both serve. Then an endpoint moves from rack2 to rack1 and every FIB follows.
Editing one leaf's BgpPeer renegotiates only that leaf's sessions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import objects
from porter_lab.fabric import UPLINKS
from porter_lab.reliability.leaf_spine import NAMESPACE, LeafSpineBed, leaf_spine_bed
from porter_lab.traffic import count_answers, wait_answered
from porter_lab.waiting import wait_for

# Service -> endpoint nodes (node1, node2: rack1; node3, node4: rack2)
SERVICES = {
    "rack1-only": ["node1"],
    "rack2-only": ["node3", "node4"],
    "both-racks": ["node2", "node4"],
}
CONNECTIONS = 40
UPLINK_ADDRESSES = {address for pair in UPLINKS for address in pair}


@pytest.fixture(params=["node", "central"])
def bed(
    request: pytest.FixtureRequest, bed_prerequisites: None, tmp_path: Path
) -> Iterator[LeafSpineBed]:
    with leaf_spine_bed(request.param, tmp_path) as made:
        wait_for(made.routers.all_established, 90, "every session of the fabric Established")
        for name, nodes in SERVICES.items():
            made.add_service(name, nodes)
        yield made


def converged(bed: LeafSpineBed) -> dict[str, str]:
    def done() -> dict[str, str] | None:
        for agent in bed.agents:
            agent.check_running()
        ips = bed.ips()
        if len(ips) != len(bed.services) or not all(ips.values()):
            return None
        want = bed.desired(ips)
        return ips if all(bed.fib(router) == want[router] for router in want) else None

    return wait_for(done, 120, "every leaf's and the spine's FIB exactly as the rule says", 0.2)


def test_each_leaf_routes_to_its_rack_and_the_spine_to_the_serving_leaves(
    bed: LeafSpineBed,
) -> None:
    ips = converged(bed)
    if bed.mode == "central":
        bed.accept_on_nodes(ips)
    port = 30000
    for name, nodes in sorted(bed.services.items()):
        wait_answered(bed.fabric, ips[name])
        answers = count_answers(
            bed.fabric,
            ips[name],
            port,
            CONNECTIONS,
            budget=30,
            timeout=90,
        )
        port += CONNECTIONS
        assert set(answers) <= set(nodes), (name, answers)
        assert sum(answers.values()) == CONNECTIONS
        if name == "both-racks":  # the spine spreads over both leaves
            assert set(answers) == set(nodes), answers

    # An endpoint moves from rack2 (node4) to rack1 (node1): the rack2 leaf drops it, the
    # rack1 leaf and the spine follow.
    moved = ["node2", "node1"]
    body = objects.endpoint_slice("both-racks-1", NAMESPACE, "both-racks", moved)
    bed.api.merge_patch(
        f"{objects.endpoint_slices(NAMESPACE)}/both-racks-1", {"endpoints": body["endpoints"]}
    )
    bed.services["both-racks"] = moved
    converged(bed)


def leaf1_hold_times(bed: LeafSpineBed) -> dict[str, int]:
    """leaf1's (BIRD) node sessions -> negotiated hold time (`Hold timer: left/negotiated`)."""
    found = {}
    for name in bed.routers.bird_sessions("leaf1"):
        if name == "spine":
            continue
        shown = bed.routers.birdc("leaf1", f"show protocols all {name}")
        match = re.search(r"Hold timer:\s*[\d.]+/(\d+)", shown)
        found[name] = int(match.group(1)) if match else 0
    return found


def leaf2_connections(bed: LeafSpineBed) -> dict[str, tuple[str, int]]:
    """leaf2's (FRR) node sessions -> (state, connections established so far)."""
    assert bed.routers.leaf2 is not None
    neighbors = bed.routers.leaf2.vtysh_json("show bgp neighbors")
    return {
        address: (str(peer.get("bgpState", "")), int(peer.get("connectionsEstablished", 0)))
        for address, peer in neighbors.items()
        if address not in UPLINK_ADDRESSES
    }


def test_editing_one_leafs_bgppeer_leaves_the_other_leafs_sessions_alone(
    bed: LeafSpineBed,
) -> None:
    """Rule: BgpPeer leaf1's hold time goes 9 -> 6; leaf1's node sessions come back with 6
    (min of 6 and BIRD's 9), while every leaf2 session stays Established without a new
    connection, and every FIB ends as the rule says."""
    ips = converged(bed)
    before = leaf2_connections(bed)
    assert before and all(state == "Established" for state, _ in before.values()), before
    assert set(leaf1_hold_times(bed).values()) == {9}
    bed.api.merge_patch(
        f"{objects.BGP_PEERS}/leaf1",
        {"spec": {"timers": {"config": {"holdTime": "6", "keepaliveInterval": "2"}}}},
    )

    def edited() -> bool:
        assert leaf2_connections(bed) == before  # never touched, checked at every poll
        holds = leaf1_hold_times(bed)
        return bool(holds) and set(holds.values()) == {6}

    wait_for(edited, 60, "leaf1's sessions back with hold time 6, leaf2's untouched", 0.2)
    wait_for(bed.routers.all_established, 60, "every session of the fabric Established")
    assert leaf2_connections(bed) == before
    assert converged(bed) == ips
