"""A BgpConf edit that needs a new BGP instance (listen port, router ID), applied without a
next hop leaving the router's FIB: GoBGP 4 runs one instance per process, so the speaker
stops it letting graceful-restart peers keep its routes, asks gobgpd to exit, and programs
the fresh gobgpd its supervisor starts (here the lab's, in a pod kubelet) as a restarting
speaker. Against BIRD and FRR, per-node and central, real daemons throughout.

Rule of the test: with graceful restart on, every prefix keeps exactly its next hops in the
router's kernel FIB from before the edit until the new instance is up, and after it; each
restarted gobgpd runs the edited instance.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from porter_lab import objects
from porter_lab.fib import FibLog
from porter_lab.reliability import gobgpd_crash as crash
from porter_lab.routers import established
from porter_lab.waiting import wait_for

SERVICES = 30


@pytest.fixture(
    params=[("node", "bird"), ("central", "frr")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def bed(
    request: pytest.FixtureRequest, bed_prerequisites: None, tmp_path: Path
) -> Iterator[crash.CrashBed]:
    mode, router = request.param
    with crash.crash_bed(mode, router, workdir=tmp_path) as made:
        made.add_services(SERVICES)
        yield made


def test_an_instance_edit_restarts_gobgpd_without_losing_a_next_hop(
    bed: crash.CrashBed,
) -> None:
    fib = FibLog(bed.topology.router_ns, crash.POOL)
    try:
        bed.set_graceful_restart(True)
        established(bed.router, 60)
        ips = bed.converged(fib, 300)
        desired = bed.desired_fib(ips)
        for index in range(len(bed.speakers)):
            wait_for(lambda i=index: bed.held_rib(i) == bed.desired_rib(i, ips), 60, "RIB settled")
        pids = [s.daemon.pid for s in bed.speakers if s.daemon is not None]
        restarts = [s.restarts for s in bed.speakers]
        # The edit: a listen port on every node (node mode), a router ID (central).
        edit: dict[str, Any] = (
            {"listenPort": 1179} if bed.mode == "node" else {"routerId": "192.0.2.77"}
        )
        edited = time.monotonic()
        bed.api.merge_patch(f"{objects.BGP_CONFS}/default", {"spec": edit})

        def restarted() -> bool:
            bed.check_running()
            pairs = zip(bed.speakers, restarts, strict=True)
            return all(speaker.restarts > before for speaker, before in pairs)

        wait_for(restarted, 60, "every gobgpd restarted by its speaker")
        assert [s.daemon.pid for s in bed.speakers if s.daemon is not None] != pids

        def running_edited() -> bool:
            for speaker in bed.speakers:
                assert speaker.client is not None
                running = speaker.client.running_global()
                if running is None:
                    return False
                if "listenPort" in edit and running.listen_port != edit["listenPort"]:
                    return False
                if "routerId" in edit and running.router_id != edit["routerId"]:
                    return False
            return True

        wait_for(running_edited, 60, "every gobgpd running the edited instance")
        established(bed.router, 60)
        for index in range(len(bed.speakers)):
            wait_for(lambda i=index: bed.held_rib(i) == bed.desired_rib(i, ips), 60, "RIB back")
        fib.wait_until(lambda _routes: fib.snapshot() == desired, 60)
        lost = fib.lost_next_hops(edited)
        assert lost == {}, f"next hops left the FIB during the edit: {lost}"
        assert fib.snapshot() == desired
        assert bed.ips() == ips
    finally:
        fib.close()
