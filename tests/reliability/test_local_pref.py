"""A pool's LOCAL_PREF reaches the router over iBGP: the nodes in the router's own AS (BgpConf
`as` 65000, each node an internal neighbour), an Eip's `spec.localPref` on every route of the
pool, read from BIRD's and FRR's RIB; edited, it changes there and no route leaves the
kernel FIB. (LOCAL_PREF is an iBGP attribute: an eBGP neighbour ignores it.)

Rules: every path of every Service's /32 in the router's RIB has the Eip's LOCAL_PREF, 300,
then 150 after the edit; no Service's /32 is ever without a next hop in the kernel FIB, and
it ends exactly the Services' endpoint nodes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab import objects
from porter_lab.fib import FibLog
from porter_lab.reliability import gobgpd_crash as crash
from porter_lab.reliability.bed import EIP_NAME
from porter_lab.routers import Bird, Frr, established
from porter_lab.topology import ROUTER_ASN
from porter_lab.waiting import wait_for

SERVICES = 4


@pytest.fixture(params=["bird", "frr"])
def bed(
    request: pytest.FixtureRequest, bed_prerequisites: None, tmp_path: Path
) -> Iterator[crash.CrashBed]:
    def internal(made: crash.CrashBed) -> None:
        made.api.merge_patch(f"{objects.BGP_CONFS}/default", {"spec": {"as": ROUTER_ASN}})
        made.api.merge_patch(f"{objects.EIPS}/{EIP_NAME}", {"spec": {"localPref": 300}})

    with crash.crash_bed(
        "node",
        request.param,
        workdir=tmp_path,
        before_start=internal,
        node_asns={f"node{i}": ROUTER_ASN for i in (1, 2, 3)},
    ) as made:
        made.add_services(SERVICES)
        yield made


def router_local_prefs(bed: crash.CrashBed, prefix: str) -> list[int]:
    """The LOCAL_PREF of every path of `prefix` in the router's RIB."""
    if isinstance(bed.router, Bird):
        text = bed.router.birdc(f"show route all {prefix}")
        return [
            int(line.split("BGP.local_pref:", 1)[1])
            for line in text.splitlines()
            if "BGP.local_pref:" in line
        ]
    assert isinstance(bed.router, Frr)
    route = bed.router.vtysh_json(f"show bgp ipv4 unicast {prefix}")
    return [int(path.get("locPrf", -1)) for path in route.get("paths", [])]


def test_pool_local_pref_reaches_the_router_over_ibgp(bed: crash.CrashBed) -> None:
    fib = FibLog(bed.topology.router_ns, crash.POOL)
    try:
        established(bed.router, 60)
        ips = bed.converged(fib, 120)
        for ip in ips.values():
            wait_for(
                lambda ip=ip: router_local_prefs(bed, f"{ip}/32") == [300, 300],
                30,
                f"{ip}'s two paths with LOCAL_PREF 300 on the router",
            )
        edited = time.monotonic()
        bed.api.merge_patch(f"{objects.EIPS}/{EIP_NAME}", {"spec": {"localPref": 150}})
        for ip in ips.values():
            wait_for(
                lambda ip=ip: router_local_prefs(bed, f"{ip}/32") == [150, 150],
                30,
                f"{ip}'s edited LOCAL_PREF on the router",
            )
        # Between the two nodes' UPDATEs a prefix's paths differ in LOCAL_PREF, so the router
        # uses the preferred one alone for that moment; it is never without a next hop.
        unrouted = [(prefix, when) for when, prefix, _, new in fib.since(edited) if not new]
        assert unrouted == []
        wait_for(lambda: fib.snapshot() == bed.desired_fib(ips), 30, "the FIB whole again")
    finally:
        fib.close()
