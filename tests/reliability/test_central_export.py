"""Per-peer export of the central speaker: with two BgpPeers picking different nodes, each
neighbour gets only the paths through its own nodes (gobgpd's global export policy, set
before the sessions come up). The router (BIRD) has a second address, and a second session
from it to the central speaker: BgpPeer "tor" (first address) picks the nodes labelled
rack=a, "tor-b" (second address) rack=b.

Rules: for every Service, the routes BIRD holds from the "tor" session have exactly the
Service's endpoint nodes in rack a as next hops, those from the "tor-b" session exactly the
ones in rack b; when a node moves to the other rack (its label), both follow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import objects
from porter_lab.fib import FibLog
from porter_lab.reliability import gobgpd_crash as crash
from porter_lab.routers import Bird, established
from porter_lab.waiting import wait_for

SECOND = "198.51.100.2"
SERVICES = 6


def label(bed: crash.CrashBed, node: str, rack: str) -> None:
    bed.api.merge_patch(f"{objects.NODES}/{node}", {"metadata": {"labels": {"rack": rack}}})


@pytest.fixture
def bed(bed_prerequisites: None, tmp_path: Path) -> Iterator[crash.CrashBed]:
    def before_start(made: crash.CrashBed) -> None:
        for node, rack in zip(made.topology.nodes, ("a", "a", "b"), strict=True):
            label(made, node.name, rack)
        made.api.merge_patch(
            f"{objects.BGP_PEERS}/tor", {"spec": {"nodeSelector": {"matchLabels": {"rack": "a"}}}}
        )
        peer = objects.bgp_peer("tor-b", SECOND)
        peer["spec"]["nodeSelector"] = {"matchLabels": {"rack": "b"}}
        made.api.create(objects.BGP_PEERS, peer)

    with crash.crash_bed(
        "central", "bird", workdir=tmp_path, router_second_address=SECOND, before_start=before_start
    ) as made:
        made.add_services(SERVICES)
        yield made


def from_session(router: Bird, protocol: str, prefix: str) -> set[str]:
    return set(
        re.findall(r"via (\S+) on ", router.birdc(f"show route {prefix} protocol {protocol}"))
    )


def test_each_peer_gets_only_its_own_nodes_paths(bed: crash.CrashBed) -> None:
    router = bed.router
    assert isinstance(router, Bird)
    established(router, 60)
    central = bed.topology.nodes[0].name  # the speaker's node: the router's neighbour
    address = {n.name: n.address for n in bed.topology.nodes}
    fib = FibLog(bed.topology.router_ns, crash.POOL)
    try:
        ips = bed.converged(fib, 120)
    finally:
        fib.close()

    def split_by_rack(racks: dict[str, str]) -> bool:
        for service, nodes in bed.services.items():
            prefix = f"{ips[service]}/32"
            for protocol, rack in ((central, "a"), (f"{central}_b", "b")):
                wanted = {address[n] for n in nodes if racks[n] == rack}
                if from_session(router, protocol, prefix) != wanted:
                    return False
        return True

    racks = dict(zip((n.name for n in bed.topology.nodes), ("a", "a", "b"), strict=True))
    wait_for(lambda: split_by_rack(racks), 60, "each session with its own rack's next hops")

    moved = bed.topology.nodes[1].name
    label(bed, moved, "b")
    racks[moved] = "b"
    wait_for(lambda: split_by_rack(racks), 60, f"{moved}'s paths moved to the other session")
