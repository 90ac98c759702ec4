"""BgpPeer fields against real daemons (per-node agents and gobgpd, BIRD): `conf.adminDown`
keeps every session down and the routes out of the router's FIB until it is cleared; a field
porter-lb does not apply is answered by a Warning Event naming it.

Rules: with adminDown true, no session to the router is Established, each node's entry in
the BgpPeer's status says IDLE, and no route of the pool is in the router's FIB; cleared, the
FIB is exactly the desired routes again. With `conf.vrf` set, a Warning Event
`UnappliedFields` on the BgpPeer names `spec.conf.vrf`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import objects
from porter_lab.fib import FibLog
from porter_lab.reliability import gobgpd_crash as crash
from porter_lab.routers import established
from porter_lab.waiting import wait_for

SERVICES = 10


@pytest.fixture
def bed(bed_prerequisites: None, tmp_path: Path) -> Iterator[crash.CrashBed]:
    with crash.crash_bed("node", "bird", workdir=tmp_path) as made:
        made.add_services(SERVICES)
        yield made


def session_states(bed: crash.CrashBed) -> dict[str, str]:
    peer = bed.api.get(f"{objects.BGP_PEERS}/tor")
    entries = (peer.get("status") or {}).get("nodesPeerStatus") or {}
    return {node: entry["peerState"]["sessionState"] for node, entry in entries.items()}


def test_admin_down_keeps_the_sessions_down_until_cleared(bed: crash.CrashBed) -> None:
    fib = FibLog(bed.topology.router_ns, crash.POOL)
    try:
        established(bed.router, 60)
        ips = bed.converged(fib, 300)
        every_node = {n.name for n in bed.topology.nodes}

        bed.api.merge_patch(f"{objects.BGP_PEERS}/tor", {"spec": {"conf": {"adminDown": True}}})
        wait_for(
            lambda: all(s != "Established" for s in bed.router.sessions().values()),
            30,
            "every session down on the router",
        )
        wait_for(
            lambda: session_states(bed) == dict.fromkeys(every_node, "IDLE"),
            30,
            "IDLE in every node's status entry",
        )
        fib.wait_until(lambda _routes: fib.snapshot() == {}, 30)

        bed.api.merge_patch(f"{objects.BGP_PEERS}/tor", {"spec": {"conf": {"adminDown": None}}})
        established(bed.router, 60)
        fib.wait_until(lambda _routes: fib.snapshot() == bed.desired_fib(ips), 60)
    finally:
        fib.close()


def test_an_unapplied_field_is_answered_by_a_warning_naming_it(bed: crash.CrashBed) -> None:
    bed.api.merge_patch(f"{objects.BGP_PEERS}/tor", {"spec": {"conf": {"vrf": "blue"}}})

    def warning() -> str | None:
        events = bed.api.get(
            "/api/v1/events?fieldSelector=involvedObject.name%3Dtor,reason%3DUnappliedFields"
        ).get("items", [])
        return next((e["message"] for e in events if e["type"] == "Warning"), None)

    message = wait_for(warning, 30, "a Warning Event UnappliedFields on BgpPeer tor")
    assert "spec.conf.vrf" in message
