"""A local AS per node: two BgpPeers with the same neighbour (the router), each selecting one
rack's nodes and giving them its own `conf.localAs`, against BIRD and FRR, node speakers.

Rules: the router sees node1 (rack a) as AS 65101 and node2 and node3 (rack b) as AS 65102,
every session Established; each BgpPeer's status lists exactly its own rack's nodes; every
Service's /32 is in the router's kernel FIB via exactly its endpoint nodes (ECMP across the
two ASes, equal AS-path length); the node speaker's duplicate check is per node, so neither
BgpPeer is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import objects
from porter_lab.fib import FibLog
from porter_lab.reliability import gobgpd_crash as crash
from porter_lab.routers import Bird, Frr, established
from porter_lab.waiting import wait_for

RACKS = {"node1": "a", "node2": "b", "node3": "b"}
LOCAL_AS = {"a": 65101, "b": 65102}
SERVICES = 6


@pytest.fixture(params=["bird", "frr"])
def bed(
    request: pytest.FixtureRequest, bed_prerequisites: None, tmp_path: Path
) -> Iterator[crash.CrashBed]:
    def racks_and_peers(made: crash.CrashBed) -> None:
        for node, rack in RACKS.items():
            made.api.merge_patch(
                f"{objects.NODES}/{node}", {"metadata": {"labels": {"rack": rack}}}
            )
        router = made.topology.router_address
        made.api.delete(f"{objects.BGP_PEERS}/tor")
        for rack, asn in LOCAL_AS.items():
            peer = objects.bgp_peer(f"tor-{rack}", router, node_labels={"rack": rack})
            peer["spec"]["conf"]["localAs"] = asn
            made.api.create(objects.BGP_PEERS, peer)

    node_asns = {node: LOCAL_AS[rack] for node, rack in RACKS.items()}
    with crash.crash_bed(
        "node",
        request.param,
        workdir=tmp_path,
        before_start=racks_and_peers,
        node_asns=node_asns,
    ) as made:
        made.add_services(SERVICES)
        yield made


def router_asns(bed: crash.CrashBed) -> dict[str, int]:
    """Node address -> the AS the router's established session with it has."""
    router = bed.router
    address = {n.name: n.address for n in bed.topology.nodes}
    if isinstance(router, Frr):
        neighbors = router.vtysh_json("show bgp neighbors")
        return {
            a: int(peer.get("remoteAs", 0))
            for a, peer in neighbors.items()
            if peer.get("bgpState") == "Established"
        }
    assert isinstance(router, Bird)
    found = {}
    for name in RACKS:
        shown = router.birdc(f"show protocols all {name}")
        if "Established" in shown:
            for line in shown.splitlines():
                if "Neighbor AS:" in line:
                    found[address[name]] = int(line.split(":")[1])
    return found


def peer_status_nodes(bed: crash.CrashBed, name: str) -> dict[str, str]:
    """Node -> session state, from the BgpPeer's status."""
    peer = bed.api.get(f"{objects.BGP_PEERS}/{name}")
    entries = (peer.get("status") or {}).get("nodesPeerStatus") or {}
    return {node: str(entry["peerState"]["sessionState"]) for node, entry in entries.items()}


def test_each_rack_peers_with_its_own_local_as(bed: crash.CrashBed) -> None:
    established(bed.router, 60)
    want = {n.address: LOCAL_AS[RACKS[n.name]] for n in bed.topology.nodes}
    wait_for(lambda: router_asns(bed) == want, 60, "each node's session with its rack's AS")
    for rack in LOCAL_AS:
        mine = {node: "ESTABLISHED" for node, r in RACKS.items() if r == rack}
        wait_for(
            lambda rack=rack, mine=mine: peer_status_nodes(bed, f"tor-{rack}") == mine,
            60,
            f"BgpPeer tor-{rack}'s status listing exactly rack {rack}'s nodes",
        )
    fib = FibLog(bed.topology.router_ns, crash.POOL)
    try:
        ips = bed.converged(fib, 60)
        assert any({RACKS[n] for n in bed.services[name]} == {"a", "b"} for name in ips), (
            "no Service spans both racks: ECMP across the two ASes untested"
        )
    finally:
        fib.close()
