"""porter-lb on a leaf-spine fabric (porter_lab.fabric): two racks, each behind its own leaf
(BIRD, FRR), under a BIRD spine; per-node and central speaker.

The rule, written here: a leaf's kernel FIB routes each EIP to exactly the endpoint nodes of
its Service in that leaf's rack (nothing for a Service with none there); the spine's routes
it to exactly the uplinks of the leaves whose rack has one. Node mode gives each rack its AS
(BgpConf asPerRack on the rack label); central mode exports to each leaf only its own rack's
next hops. Real TCP from the client behind the spine reaches only the endpoint nodes, both
racks when both serve. Then an endpoint moves from rack2 to rack1 and every FIB follows.
Editing one leaf's BgpPeer renegotiates only that leaf's sessions. Central mode: leaf2 is sent
no other rack's next hop at all, and a restarted controller re-sends nothing.

Dual-stack (`ipv6`): IPv6 rides the same IPv4 sessions (MP-BGP); the same rule holds for each
IPv6 EIP as a /128 via the nodes' and uplinks' IPv6 addresses, and TCP over IPv6 from the
client reaches only endpoint nodes.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import objects
from porter_lab.fabric import UPLINKS
from porter_lab.reliability.leaf_spine import NAMESPACE, POOL6, LeafSpineBed, leaf_spine_bed
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


def leaf2_bgp_next_hops(bed: LeafSpineBed) -> set[str]:
    """Every next hop of every path in leaf2's (FRR) BGP table from porter-lb's sessions,
    installable or not (a next hop FRR cannot resolve is still listed)."""
    assert bed.routers.leaf2 is not None
    table = bed.routers.leaf2.vtysh_json("show bgp ipv4 unicast")
    return {
        hop["ip"]
        for paths in table.get("routes", {}).values()
        for path in paths
        if path.get("peerId") not in UPLINK_ADDRESSES
        for hop in path.get("nexthops", [])
    }


def test_each_leaf_routes_to_its_rack_and_the_spine_to_the_serving_leaves(
    bed: LeafSpineBed,
) -> None:
    ips = converged(bed)
    # Not only its FIB: leaf2 is not even sent another rack's next hop (central mode's
    # per-peer export; FRR would hold such a path unresolved, or install it with
    # `ip nht resolve-via-default`).
    rack2 = {n.node.address for n in bed.fabric.nodes if n.rack == "rack2"}
    assert leaf2_bgp_next_hops(bed) <= rack2
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


def leaf_updates_received(bed: LeafSpineBed) -> dict[str, int]:
    """Routes each leaf has received from porter-lb's sessions (not from the spine): BIRD's
    `Import updates: received` per route, FRR's `updatesRecv` per UPDATE message."""
    bird = 0
    for name in bed.routers.bird_sessions("leaf1"):
        if name == "spine":
            continue
        shown = bed.routers.birdc("leaf1", f"show protocols all {name}")
        match = re.search(r"Import updates:\s+(\d+)", shown)
        assert match, shown
        bird += int(match.group(1))
    assert bed.routers.leaf2 is not None
    neighbors = bed.routers.leaf2.vtysh_json("show bgp neighbors")
    frr = sum(
        int(peer["messageStats"]["updatesRecv"])
        for address, peer in neighbors.items()
        if address not in UPLINK_ADDRESSES
    )
    return {"leaf1": bird, "leaf2": frr}


def quiet_update_counts(bed: LeafSpineBed, quiet: float = 2.0) -> dict[str, int]:
    """The leaves' UPDATE counters once they have not moved for `quiet` seconds. The FIBs
    converge before the last UPDATEs of the start are in: leaf2 (FRR) was seen to get two
    more within a second of convergence (the paths of both rack2 prefixes, re-sent)."""
    seen: list[tuple[float, dict[str, int]]] = []

    def settled() -> dict[str, int] | None:
        counts = leaf_updates_received(bed)
        now = time.monotonic()
        if not seen or seen[-1][1] != counts:
            seen.append((now, counts))
        return counts if now - seen[-1][0] >= quiet else None

    return wait_for(settled, 60, f"the leaves' UPDATE counters still for {quiet:g} s", 0.2)


@pytest.mark.parametrize("bed", ["central"], indirect=True)
def test_a_restarted_central_controller_resends_nothing_to_the_leaves(
    bed: LeafSpineBed,
) -> None:
    """Rule: the controller restarts beside its running gobgpd, whose per-peer export policy
    is already right; then one Service with an endpoint in rack1 only is added. leaf1 receives
    exactly that one route, leaf2 nothing at all: no soft reset re-sent the paths they had."""
    ips = converged(bed)
    before = quiet_update_counts(bed)
    bed.restart_controller()
    bed.add_service("after-restart", ["node2"])
    after_ips = converged(bed)
    assert {name: ip for name, ip in after_ips.items() if name in ips} == ips
    assert leaf_updates_received(bed) == {"leaf1": before["leaf1"] + 1, "leaf2": before["leaf2"]}


# Dual-stack: IPv6 over MP-BGP on the same IPv4 sessions. Service -> (families, endpoints).
SERVICES6 = {
    "v6-rack1": (("IPv6",), ["node1"]),
    "v6-rack2": (("IPv6",), ["node3", "node4"]),
    "dual-both": (("IPv4", "IPv6"), ["node2", "node4"]),
}


@pytest.fixture(params=["node", "central"])
def bed6(
    request: pytest.FixtureRequest, bed_prerequisites: None, tmp_path: Path
) -> Iterator[LeafSpineBed]:
    with leaf_spine_bed(request.param, tmp_path, ipv6=True) as made:
        wait_for(made.routers.all_established, 90, "every session of the fabric Established")
        for name, (families, nodes) in SERVICES6.items():
            made.add_service(name, nodes, families)
        yield made


def converged6(bed: LeafSpineBed) -> dict[str, list[str]]:
    """Every Service with one IP per family it asks for, IPv6 ones from the IPv6 pool, and
    every router's FIB (both families) exactly as the rule says."""
    pool6 = ipaddress.ip_network(POOL6)

    def done() -> dict[str, list[str]] | None:
        for agent in bed.agents:
            agent.check_running()
        ips = bed.all_ips()
        for name, (families, _nodes) in SERVICES6.items():
            got = ips.get(name, [])
            versions = sorted(ipaddress.ip_address(ip).version for ip in got)
            if versions != sorted(4 if f == "IPv4" else 6 for f in families):
                return None
            assert all(ipaddress.ip_address(ip) in pool6 for ip in got if ":" in ip), got
        want = bed.desired(ips)
        return ips if all(bed.fib(router) == want[router] for router in want) else None

    return wait_for(done, 120, "every leaf's and the spine's IPv4 and IPv6 FIB as the rule says")


def test_ipv6_over_mp_bgp_routes_each_leaf_to_its_rack_and_tcp_reaches_only_endpoints(
    bed6: LeafSpineBed,
) -> None:
    """Rule: as for IPv4, with each node's and uplink's IPv6 address: a leaf's kernel FIB
    routes each IPv6 EIP (/128) to exactly its rack's endpoint nodes, the spine's to the
    leaves whose rack has one; TCP over IPv6 from the client behind the spine reaches only
    endpoint nodes, both racks when both serve. Then dual-both's endpoints move to node1
    (rack1 only): leaf2 drops both of its EIPs, the spine keeps only leaf1 for them."""
    bed = bed6
    ips = converged6(bed)
    if bed.mode == "central":
        bed.accept_on_nodes(ips)
    port = 31000
    for name, (_families, nodes) in sorted(SERVICES6.items()):
        ip = next(ip for ip in ips[name] if ":" in ip)
        wait_answered(bed.fabric, ip, source=bed.fabric.client_address6)
        answers = count_answers(
            bed.fabric,
            ip,
            port,
            CONNECTIONS,
            source=bed.fabric.client_address6,
            budget=30,
            timeout=90,
        )
        port += CONNECTIONS
        assert set(answers) <= set(nodes), (name, answers)
        assert sum(answers.values()) == CONNECTIONS, (name, answers)
        if name == "dual-both":
            assert set(answers) == set(nodes), answers

    for family in ("IPv4", "IPv6"):
        slice_name = "dual-both-1" if family == "IPv4" else "dual-both-ipv6"
        body = objects.endpoint_slice(
            slice_name, NAMESPACE, "dual-both", ["node1"], address_type=family
        )
        bed.api.merge_patch(
            f"{objects.endpoint_slices(NAMESPACE)}/{slice_name}", {"endpoints": body["endpoints"]}
        )
    bed.services["dual-both"] = ["node1"]
    assert converged6(bed) == ips
