"""BFD with the routers (GoBGP 4's own BFD on the nodes, BIRD's and FRR's bfdd on the router):
a node whose link dies without a TCP reset leaves the router's FIB because BFD said so, not
its hold timer; and BgpPeer status shows each node's BFD session (porter_lab.reliability.
node_loss runs the trial; bench/node_loss.py reports the times with and without BFD).

Rules: without `spec.bfd`, no node's entry in the BgpPeer's status has a BFD state; with
`spec.bfd` on the BgpPeer and BFD on the router, every node's entry in the
BgpPeer's status says its BFD session is UP and the router lists a BFD session Up with each
node; after the link cut, none of the router's kernel routes keeps the node as a next hop and
the router's reason for the session going down names BFD; once the link is back, the FIB is
exactly the desired routes again. New timers on the BgpPeer (300 ms -> 100 ms) reach the
router's BFD sessions while every BGP session stays up on the same connection (porter-lb's
GoBGP patch 0002: gobgpd used to replace the BFD session, which the router saw go down).
"""

from __future__ import annotations

import json
import re
import time
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
TIGHTER = BfdTimers(100, 100, 3)
# The router's own BFD is faster than either, so the node's timers decide the router's
# detection time (RFC 5880 6.8.4: the remote's multiplier x the slower of the two intervals).
ROUTER = BfdTimers(50, 50, 3)


@pytest.fixture(params=["bird", "frr"])
def bed(
    request: pytest.FixtureRequest, bed_prerequisites: None, tmp_path: Path
) -> Iterator[crash.CrashBed]:
    with crash.crash_bed("node", request.param, workdir=tmp_path, router_bfd=ROUTER) as made:
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
    # Without spec.bfd, each node's status entry has no BFD state.
    crash_nodes = {n.name for n in bed.topology.nodes}
    wait_for(lambda: set(bfd_status(bed)) == crash_nodes, 60, "every node's status entry")
    assert set(bfd_status(bed).values()) == {""}

    node_loss.set_bgppeer_bfd(bed, TIMERS)
    every_node = {n.name: "UP" for n in bed.topology.nodes}
    wait_for(lambda: bfd_status(bed) == every_node, 60, "BFD UP in the BgpPeer's status")
    wait_for(lambda: node_loss.bfd_up(bed), 30, "BFD Up with every node on the router")

    lost = node_loss.lose_node(bed, TIMERS)
    print(lost)
    assert "bfd" in lost.reason.lower(), f"the router gave another reason: {lost.reason!r}"
    wait_for(lambda: bfd_status(bed) == every_node, 60, "BFD UP again in the status")

    # New timers: the router's detection time for each node follows, no BGP session restarts.
    wait_for(lambda: node_loss.bfd_up(bed), 30, "BFD Up with every node on the router")
    before = sessions(bed)
    node_loss.set_bgppeer_bfd(bed, TIGHTER)
    want = {n.address: TIGHTER.transmit_ms * TIGHTER.multiplier for n in bed.topology.nodes}

    def applied() -> bool:
        assert same_sessions(before, sessions(bed)), "a BGP session restarted for new BFD timers"
        return router_detection_ms(bed) == want

    wait_for(applied, 30, "the router's BFD sessions at the new interval", 0.1)
    deadline = time.monotonic() + 3  # a session reset would show within the hold time's third
    while time.monotonic() < deadline:
        assert same_sessions(before, sessions(bed)), "a BGP session restarted after new timers"
        assert node_loss.bfd_up(bed)
        time.sleep(0.2)


def sessions(bed: crash.CrashBed) -> dict[str, tuple[str, float]]:
    """Each node's BGP session on the router -> what changes when it restarts (BIRD: state and
    since, in seconds of the day; FRR: state and connections established so far)."""
    if bed.router_kind == "frr":
        neighbors = bed.router.vtysh_json("show bgp neighbors")  # type: ignore[attr-defined]
        return {
            address: (str(peer.get("bgpState")), float(peer.get("connectionsEstablished", 0)))
            for address, peer in neighbors.items()
        }
    shown = bed.router.birdc("show protocols")  # type: ignore[attr-defined]
    found = {}
    for line in shown.splitlines():
        if (fields := line.split()) and len(fields) > 4 and fields[1] == "BGP":
            hours, minutes, seconds = fields[4].split(":")
            found[fields[0]] = (fields[3], int(hours) * 3600 + int(minutes) * 60 + float(seconds))
    return found


def same_sessions(before: dict[str, tuple[str, float]], now: dict[str, tuple[str, float]]) -> bool:
    """No session restarted: the same states, and the same counts or since times (BIRD prints
    a session's since time a millisecond apart from one look to the next; a restart moves it
    by seconds: connect delay and error wait are 1 s each)."""
    return before.keys() == now.keys() and all(
        before[k][0] == now[k][0] and abs(before[k][1] - now[k][1]) < 0.5 for k in before
    )


def router_detection_ms(bed: crash.CrashBed) -> dict[str, int]:
    """Node address -> the router's detection time for the node's BFD session, in ms."""
    if bed.router_kind == "frr":
        shown = bed.router.vtysh("show bfd peers json")  # type: ignore[attr-defined]
        return {
            str(peer["peer"]): int(peer["remote-transmit-interval"])
            * int(peer["remote-detect-multiplier"])
            for peer in json.loads(shown)
            if peer.get("status") == "up"
        }
    found = {}
    for line in bed.router.birdc("show bfd sessions").splitlines():  # type: ignore[attr-defined]
        # address, interface, state, since (one or two words), interval (s), timeout (s)
        if re.match(r"^[0-9a-f.:]+\s", line) and (fields := line.split())[2] == "Up":
            found[fields[0]] = round(float(fields[-1]) * 1000)
    return found
