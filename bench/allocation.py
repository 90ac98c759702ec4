"""Benchmark: hand out all 65,536 addresses of a /16, one Service at a time (pure allocator).

Target: <= 1 s in total. Also measured: rebuilding those allocations after a
restart from the Eip status and Service status (allocator.rebuild), which the controller does
at every start.

    python bench/allocation.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import report

from porter_lb.allocation.allocator import Allocated, allocate, rebuild
from porter_lb.allocation.holdings import Allocations, pool_status
from porter_lb.model.resources import ServiceRequest, pool_from_eip

SIZE = 65_536


def run_once() -> tuple[float, float, int]:
    pool = pool_from_eip({"metadata": {"name": "big"}, "spec": {"address": "10.200.0.0/16"}})
    requests = [
        ServiceRequest(key=f"ns/s{index:05d}", namespace="ns", requested_pool="big")
        for index in range(SIZE)
    ]
    allocations = Allocations()
    gc.collect()
    started = time.perf_counter()
    for request in requests:
        result = allocate([pool], allocations, request)
        assert isinstance(result, Allocated), result
    allocate_seconds = time.perf_counter() - started
    status = pool_status(pool, allocations)
    assert status["usage"] == SIZE and status["occupied"]

    service_statuses = {r.key: allocations.ips_of(r.key) for r in requests}
    started = time.perf_counter()
    rebuilt = rebuild([pool], {"big": status["used"]}, service_statuses)
    rebuild_seconds = time.perf_counter() - started
    assert rebuilt.used() == allocations.used()
    return allocate_seconds, rebuild_seconds, status["usage"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [run_once() for _ in range(args.repeat)]
    best_allocate = min(r[0] for r in runs)
    best_rebuild = min(r[1] for r in runs)
    report(
        "allocation",
        [
            {
                "metric": f"allocate {SIZE} IPs from a /16 (best of {args.repeat})",
                "value": best_allocate,
                "unit": "s",
                "target": 1.0,
            },
            {
                "metric": f"allocate, worst of {args.repeat}",
                "value": max(r[0] for r in runs),
                "unit": "s",
                "target": None,
            },
            {
                "metric": f"rebuild {SIZE} allocations after restart",
                "value": best_rebuild,
                "unit": "s",
                "target": None,
            },
        ],
        {"addresses": SIZE},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
