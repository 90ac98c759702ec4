"""Editing one BgpPeer touches only its own sessions. The router (BIRD) has a second address
and a second session to every node from it; BgpPeer "tor" peers with the first address,
"tor-b" with the second. Editing tor's hold time (6 s, below the router's 9) makes each
speaker UpdatePeer that neighbour (gobgpd resets those sessions); tor-b's sessions must stay
up throughout.

Rule: every "_b" session stays Established, with the same "since" time, from before the edit
until the edited sessions are Established again with the new hold time; the router's FIB
keeps exactly the desired routes at the end and no next hop leaves it meanwhile (the "_b"
sessions carry the same routes).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import objects
from porter_lab.fib import FibLog
from porter_lab.reliability import gobgpd_crash as crash
from porter_lab.routers import Bird
from porter_lab.waiting import wait_for

SECOND = "198.51.100.2"
SERVICES = 10


@pytest.fixture
def bed(bed_prerequisites: None, tmp_path: Path) -> Iterator[crash.CrashBed]:
    with crash.crash_bed("node", "bird", workdir=tmp_path, router_second_address=SECOND) as made:
        made.api.create(objects.BGP_PEERS, objects.bgp_peer("tor-b", SECOND))
        made.add_services(SERVICES)
        yield made


def protocols(router: Bird) -> dict[str, tuple[str, str]]:
    """BGP protocol name -> (info, since) from `birdc show protocols`."""
    found = {}
    for line in router.birdc("show protocols").splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "BGP":
            found[fields[0]] = (fields[5], " ".join(fields[3:5]))
    return found


def hold_time(router: Bird, name: str) -> int:
    found = re.search(r"Hold timer:\s*[\d.]+/(\d+)", router.birdc(f"show protocols all {name}"))
    return int(found.group(1)) if found else 0


def test_editing_one_bgppeer_leaves_the_other_sessions_up(bed: crash.CrashBed) -> None:
    router = bed.router
    assert isinstance(router, Bird)
    names = [n.name for n in bed.topology.nodes]
    wait_for(
        lambda: (
            all(p[0] == "Established" for p in protocols(router).values())
            and len(protocols(router)) == 2 * len(names)
        ),
        60,
        "both sessions of every node Established",
    )
    fib = FibLog(bed.topology.router_ns, crash.POOL)
    try:
        ips = bed.converged(fib, 120)
        before = protocols(router)
        edited = time.monotonic()
        bed.api.merge_patch(
            f"{objects.BGP_PEERS}/tor",
            {"spec": {"timers": {"config": {"holdTime": "6", "keepaliveInterval": "2"}}}},
        )

        def edited_up() -> bool:
            now = protocols(router)
            for name in names:  # the "_b" sessions never moved
                assert now[f"{name}_b"] == before[f"{name}_b"], (name, now, before)
            return all(
                now[name][0] == "Established" and now[name][1] != before[name][1] for name in names
            )

        wait_for(edited_up, 60, "tor's sessions re-established, tor-b's untouched", 0.1)
        assert {hold_time(router, name) for name in names} == {6}  # min(6, 9)
        assert {hold_time(router, f"{name}_b") for name in names} == {9}
        assert fib.lost_next_hops(edited) == {}
        assert fib.snapshot() == bed.desired_fib(ips)
    finally:
        fib.close()
