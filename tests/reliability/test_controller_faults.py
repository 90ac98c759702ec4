"""The controller restarting, the leader crashing, the API server gone for a minute: what must
hold whatever the timing (porter_lab.reliability.controller_faults runs the scenarios; the
times are bench/controller_faults.py's to report against their targets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab.reliability import controller_faults as faults


@pytest.fixture(params=["node", "central"])
def bed(
    request: pytest.FixtureRequest, bed_prerequisites: None, tmp_path: Path
) -> Iterator[faults.FaultBed]:
    with faults.fault_bed(request.param, workdir=tmp_path) as made:
        yield made


def test_restart_with_1000_services_changes_no_ip_and_withdraws_nothing(
    bed: faults.FaultBed,
) -> None:
    result = faults.restart(bed, services=1000)
    print(result)
    assert result.ips_changed == 0
    assert result.fib_changes == 0, "the router's FIB changed while the controller restarted"
    assert result.next_hops_lost == 0
    assert result.bgp_withdraws == 0 and result.bgp_updates == 0, result
    # A restart writes nothing but the leader Lease: no Service or Eip status, no Event; the
    # speakers rewrite nothing either (their BgpPeer status entries are unchanged).
    assert result.api_writes == {}, result
    assert not [line for c in bed.controllers for line in c.errors()]


def test_leader_crash_hands_over_without_duplicates_or_moves(bed: faults.FaultBed) -> None:
    result = faults.failover(bed, services=100, timing=faults.FAST_TIMING)
    print(result)
    assert result.ips_changed == 0
    assert result.duplicate_ips == 0
    assert result.next_hops_lost == 0
    # Central mode: the crashed replica, back as a standby beside the new leader, emptied its
    # own gobgpd, so a Service deleted afterwards left no stale route (converged says so too).
    assert result.stale_paths == 0


def test_api_server_gone_for_60s_keeps_routes_then_catches_up(bed: faults.FaultBed) -> None:
    result = faults.outage(bed, services=200, seconds=60, changes=10, timing=faults.FAST_TIMING)
    print(result)
    assert result.processes_alive, "a porter-lb process died while the API server was gone"
    assert result.fib_changes_during == 0, "a route moved while nobody could see the cluster"
    assert result.bgp_withdraws_during == 0
    assert result.changes_made == 30
    assert result.ips_changed == 0
    assert result.leaked_ips == 0
    # Stepped down when it could not renew, led again in the same process once back.
    assert result.leader_terms == 2 and result.lease_holder == "only"
    assert not [line for c in bed.controllers for line in c.errors()]


# Central mode only (the controller is also the speaker there); node mode's agents meet the
# same watches and Lease code in the "cut" test above, and each of these takes over a minute.
@pytest.mark.parametrize("bed", ["central"], indirect=True)
def test_api_server_restarted_after_60s_down_keeps_routes_then_follows(
    bed: faults.FaultBed,
) -> None:
    result = faults.outage(
        bed, services=200, seconds=60, changes=10, timing=faults.FAST_TIMING, how="stop"
    )
    print(result)
    assert result.processes_alive, "a porter-lb process died while the API server was down"
    assert result.fib_changes_during == 0
    assert result.bgp_withdraws_during == 0
    assert result.ips_changed == 0
    assert result.leaked_ips == 0
    assert result.leader_terms == 2 and result.lease_holder == "only"
    assert not [line for c in bed.controllers for line in c.errors()]
