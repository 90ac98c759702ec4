"""BFD with the routers (GoBGP 4's own BFD on the nodes, BIRD's and FRR's bfdd on the router):
a node whose link dies without a TCP reset leaves the router's FIB because BFD said so, not
its hold timer; and BgpPeer status shows each node's BFD session (porter_lab.reliability.
node_loss runs the trial; bench/node_loss.py reports the times with and without BFD).

Rules: with `spec.bfd` on the BgpPeer and BFD on the router, every node's entry in the
BgpPeer's status says its BFD session is UP and the router lists a BFD session Up with each
node; after the link cut, none of the router's kernel routes keeps the node as a next hop and
the router's reason for the session going down names BFD; once the link is back, the FIB is
exactly the desired routes again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import objects
from porter_lab.reliability import gobgpd_crash as crash
from porter_lab.reliability import node_loss
from porter_lab.routers import BfdTimers
from porter_lab.waiting import wait_for

SERVICES = 20
TIMERS = BfdTimers(300, 300, 3)


@pytest.fixture(params=["bird", "frr"])
def bed(
    request: pytest.FixtureRequest, bed_prerequisites: None, tmp_path: Path
) -> Iterator[crash.CrashBed]:
    with crash.crash_bed("node", request.param, workdir=tmp_path, router_bfd=TIMERS) as made:
        made.add_services(SERVICES)
        yield made


def bfd_status(bed: crash.CrashBed) -> dict[str, str]:
    peer = bed.api.get(f"{objects.BGP_PEERS}/tor")
    entries = (peer.get("status") or {}).get("nodesPeerStatus") or {}
    return {
        node: str((entry.get("bfdState") or {}).get("sessionState", ""))
        for node, entry in entries.items()
    }


def test_bfd_takes_a_lost_node_out_before_the_hold_timer(bed: crash.CrashBed) -> None:
    node_loss.set_bgppeer_bfd(bed, TIMERS)
    every_node = {n.name: "UP" for n in bed.topology.nodes}
    wait_for(lambda: bfd_status(bed) == every_node, 60, "BFD UP in the BgpPeer's status")
    wait_for(lambda: node_loss.bfd_up(bed), 30, "BFD Up with every node on the router")

    lost = node_loss.lose_node(bed, TIMERS)
    print(lost)
    assert "bfd" in lost.reason.lower(), f"the router gave another reason: {lost.reason!r}"
    wait_for(lambda: bfd_status(bed) == every_node, 60, "BFD UP again in the status")


def test_without_bfd_on_the_bgppeer_status_has_no_bfd_state(bed: crash.CrashBed) -> None:
    crash_nodes = {n.name for n in bed.topology.nodes}
    wait_for(lambda: set(bfd_status(bed)) == crash_nodes, 60, "every node's status entry")
    assert set(bfd_status(bed).values()) == {""}
