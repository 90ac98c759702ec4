"""gobgpd crashing (SIGKILL) and restarted, per-node and central, against BIRD and FRR: what
must hold whatever the timing (porter_lab.reliability.gobgpd_crash runs the scenario; the
times are bench/gobgpd_crash.py's to report against their targets).

Without graceful restart the router drops the crashed speaker's next hops (its session
closed) and gets them back once gobgpd is re-programmed; with graceful restart it keeps
forwarding over them throughout, and the restarted speaker's End-of-RIB removes what was
deleted meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab.reliability import gobgpd_crash as crash

SERVICES = 60


@pytest.fixture(
    params=[("node", "bird"), ("node", "frr"), ("central", "bird"), ("central", "frr")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def bed(
    request: pytest.FixtureRequest, bed_prerequisites: None, tmp_path: Path
) -> Iterator[crash.CrashBed]:
    mode, router = request.param
    # FRR drops stale routes 20 s after the crash at the latest: more than the 2 s outage plus
    # gobgpd's first connection (5-10 s), short enough for FRR 8.4's left-over stale ADD-PATH
    # path (FRRouting/frr#17372) to go within the test.
    with crash.crash_bed(mode, router, workdir=tmp_path, stalepath_time=20) as made:
        made.add_services(SERVICES)
        yield made


def test_gobgpd_crash_then_graceful_restart(bed: crash.CrashBed) -> None:
    plain = crash.crash(bed, graceful_restart=False)
    print(plain)
    # The router dropped the dead speaker's next hops (that is what it must do without
    # graceful restart), and everything is back exactly once gobgpd is re-programmed.
    assert plain.withdrawn_s is not None
    assert plain.prefixes_that_lost_a_next_hop > 0
    assert plain.fib_exact and plain.deleted_prefix_gone
    assert plain.ips_changed == 0
    assert plain.speaker_errors == []

    graceful = crash.crash(bed, graceful_restart=True)
    print(graceful)
    assert graceful.prefixes_that_lost_a_next_hop == 0, "a next hop left the FIB during GR"
    assert graceful.deleted_prefix_gone, "a stale route outlived the speaker's End-of-RIB"
    assert graceful.fib_exact
    assert graceful.ips_changed == 0
    assert graceful.speaker_errors == []
