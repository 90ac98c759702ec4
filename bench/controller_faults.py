"""Benchmark: the controller restarting, the leader crashing, the API server gone.

Each scenario runs on a fresh bed of its own (porter_lab.reliability.controller_faults: own
etcd and kube-apiserver, BIRD, three node namespaces with gobgpd, porter-lb processes reaching
the API server through a relay the scenario can cut), in per-node mode (agents announce) and
in central mode (the controller drives one gobgpd):

1. *restart*: N Services allocated and announced; SIGTERM the controller, start it again.
   Targets: 0 IPs changed, 0 changes in the router's FIB, 0 BGP withdraws, 0 API writes
   (Lease renewals apart); reported: the time until the new process has caught up.
2. *failover*: two replicas with the default Lease timing (15 s / 10 s / 2 s); SIGKILL the
   leader. Target: the standby leads within lease duration + two retry periods (19 s), and a
   Service created at the kill gets its IP then; 0 duplicates, 0 moved IPs.
3. *outage-cut*: the API server unreachable from porter-lb for 60 s while Services are
   created, deleted and moved; *outage-stop*: kube-apiserver stopped for 60 s and started
   again, the same changes made as it returns. Targets: 0 FIB changes meanwhile, all
   changes applied within 5 s of its return, 0 leaked IPs.

    python bench/controller_faults.py [--services 1000] [--outage 60] [--modes node,central]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import report

from porter_lab.reliability import controller_faults as faults


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds")
    parser.add_argument("--changes", type=int, default=20, help="of each kind, in the outage")
    parser.add_argument("--modes", default="node,central")
    parser.add_argument("--scenarios", default="restart,failover,outage-cut,outage-stop")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    raw: dict[str, Any] = {}
    scenarios = args.scenarios.split(",")
    timing = faults.DEFAULT_TIMING
    for mode in args.modes.split(","):
        if "restart" in scenarios:
            with faults.fault_bed(mode) as bed:  # type: ignore[arg-type]
                restart = faults.restart(bed, args.services, timing)
            raw[f"restart/{mode}"] = dataclasses.asdict(restart)
            print(restart, flush=True)
            rows += [
                row(f"restart ({mode}): IPs changed", restart.ips_changed, "", 0),
                row(f"restart ({mode}): FIB changes", restart.fib_changes, "", 0),
                row(f"restart ({mode}): BGP withdraws", restart.bgp_withdraws, "", 0),
                row(f"restart ({mode}): API writes", sum(restart.api_writes.values()), "", 0),
                row(f"restart ({mode}): start -> caught up", restart.caught_up_s, "s", None),
                row(f"restart ({mode}): new Service -> IP", restart.new_service_ip_s, "s", None),
            ]
        if "failover" in scenarios:
            with faults.fault_bed(mode) as bed:  # type: ignore[arg-type]
                failover = faults.failover(bed, min(args.services, 200), timing)
            raw[f"failover/{mode}"] = dataclasses.asdict(failover)
            print(failover, flush=True)
            bound = timing.duration + 2 * timing.retry_period  # docs/controller.md
            rows += [
                row(f"failover ({mode}): kill -> standby leads", failover.takeover_s, "s", bound),
                row(f"failover ({mode}): kill -> new IP", failover.new_service_ip_s, "s", bound),
                row(f"failover ({mode}): duplicate IPs", failover.duplicate_ips, "", 0),
                row(f"failover ({mode}): IPs changed", failover.ips_changed, "", 0),
                row(f"failover ({mode}): next hops lost", failover.next_hops_lost, "", 0),
            ]
        for how in ("cut", "stop"):
            if f"outage-{how}" not in scenarios:
                continue
            with faults.fault_bed(mode) as bed:  # type: ignore[arg-type]
                outage = faults.outage(
                    bed, min(args.services, 500), args.outage, args.changes, timing, how=how
                )
            raw[f"outage-{how}/{mode}"] = dataclasses.asdict(outage)
            print(outage, flush=True)
            what = f"outage-{how} ({mode})"
            rows += [
                row(f"{what}: FIB changes meanwhile", outage.fib_changes_during, "", 0),
                row(f"{what}: API back -> all caught up", outage.resync_s, "s", 5.0),
                row(f"{what}: leaked IPs", outage.leaked_ips, "", 0),
                row(f"{what}: IPs changed", outage.ips_changed, "", 0),
            ]
    report("controller_faults", rows, {"services": args.services, "scenarios": raw})
    return 0


def row(metric: str, value: float, unit: str, target: float | None) -> dict[str, Any]:
    return {"metric": metric, "value": float(value), "unit": unit, "target": target}


if __name__ == "__main__":
    sys.exit(main())
