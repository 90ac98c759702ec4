"""A pool's BGP communities reach the router: an Eip's `spec.communities` and
`spec.largeCommunities` ride on every route of the pool, read from BIRD's and FRR's own RIB;
edited, they change on the router without the route leaving its FIB.

Rules: every Service's /32 in the router's RIB carries exactly the communities the Eip lists
(AS:value, and global:local1:local2), as the router prints them; after an edit, the new ones;
no next hop leaves the kernel FIB during the edit.
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
from porter_lab.waiting import wait_for

SERVICES = 4


@pytest.fixture(params=["bird", "frr"])
def bed(
    request: pytest.FixtureRequest, bed_prerequisites: None, tmp_path: Path
) -> Iterator[crash.CrashBed]:
    with crash.crash_bed("node", request.param, workdir=tmp_path) as made:
        made.add_services(SERVICES)
        yield made


def router_communities(bed: crash.CrashBed, prefix: str) -> set[tuple[str, str]]:
    """("community"|"large", "a:b[:c]") of every path of `prefix` in the router's RIB."""
    found: set[tuple[str, str]] = set()
    if isinstance(bed.router, Bird):
        text = bed.router.birdc(f"show route all {prefix}")
        for kind, key in (("community", "BGP.community:"), ("large", "BGP.large_community:")):
            for line in text.splitlines():
                if key in line:
                    for group in line.split(key, 1)[1].replace(" ", "").split(")("):
                        found.add((kind, group.strip("()").replace(",", ":")))
        return found
    assert isinstance(bed.router, Frr)
    route = bed.router.vtysh_json(f"show bgp ipv4 unicast {prefix}")
    for path in route.get("paths", []):
        for value in (path.get("community") or {}).get("string", "").split():
            found.add(("community", value))
        for value in (path.get("largeCommunity") or {}).get("string", "").split():
            found.add(("large", value))
    return found


def test_pool_communities_reach_the_router_and_follow_an_edit(bed: crash.CrashBed) -> None:
    fib = FibLog(bed.topology.router_ns, crash.POOL)
    try:
        established(bed.router, 60)
        ips = bed.converged(fib, 120)
        first = {"communities": ["65000:100"], "largeCommunities": ["65000:1:2"]}
        bed.api.merge_patch(f"{objects.EIPS}/{EIP_NAME}", {"spec": first})
        wanted = {("community", "65000:100"), ("large", "65000:1:2")}
        for ip in ips.values():
            wait_for(
                lambda ip=ip: router_communities(bed, f"{ip}/32") == wanted,
                30,
                f"{ip}'s communities on the router",
            )
        edited = time.monotonic()
        second = {"communities": ["65000:200", "no-export"], "largeCommunities": None}
        bed.api.merge_patch(f"{objects.EIPS}/{EIP_NAME}", {"spec": second})
        wanted = {("community", "65000:200"), ("community", "no-export")}
        if isinstance(bed.router, Bird):
            wanted = {("community", "65000:200"), ("community", "65535:65281")}
        for ip in ips.values():
            wait_for(
                lambda ip=ip: router_communities(bed, f"{ip}/32") == wanted,
                30,
                f"{ip}'s edited communities on the router",
            )
        assert fib.lost_next_hops(edited) == {}
        assert fib.snapshot() == bed.desired_fib(ips)
    finally:
        fib.close()
