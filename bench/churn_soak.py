"""Benchmark: churn soak, 10,000 random steps against the running system.

`porter_lab.reliability.churn` on its own control plane: `porter-lb controller`, three node
namespaces each with gobgpd and `porter-lb agent`, a BIRD router. A seeded random walk
creates/deletes/resizes Services, switches their externalTrafficPolicy and asks, flaps Nodes
Ready/NotReady, adds/disables/deletes Eips and changes the BgpPeer, without waiting for the
system to follow. Then: time until quiescent, the router's FIB against the routes the soak's own
rule expects, leaked IPs, Services whose IPs are not where the allocation rules put them, and
the RSS of the controller and the agents (start, after warm-up, half way, end).

Targets: 0 missing/stale/wrong routes, 0 leaked IPs, 0 unsettled Services, RSS growth over
the second half < 10 % per process, no crash and no ERROR/traceback in the logs.

    python bench/churn_soak.py [--steps 10000] [--seed 1] [--max-seconds 600]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="wall-time cap of the walk"
    )
    parser.add_argument("--max-services", type=int, default=40)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()

    from porter_lab.reliability.churn import ChurnConfig, run_churn

    workdir = Path(tempfile.mkdtemp(prefix="porter-churn-"))
    churn = ChurnConfig(
        steps=args.steps,
        seed=args.seed,
        max_seconds=args.max_seconds,
        max_services=args.max_services,
    )
    try:
        result = run_churn(
            churn,
            workdir,
            progress=lambda done, s: print(f"  {done} steps ({s:.0f} s)", flush=True),
        )
    finally:
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    counts = result.checks.routes["counts"]
    rows = [
        {"metric": "steps", "value": result.steps, "unit": "", "target": None},
        {"metric": "walk wall time", "value": result.seconds, "unit": "s", "target": None},
        {
            "metric": "steps per second",
            "value": result.steps_per_second,
            "unit": "/s",
            "target": None,
        },
        {
            "metric": "time to quiesce after the last step",
            "value": -1.0 if result.quiesce_seconds is None else result.quiesce_seconds,
            "unit": "s",
            "target": None,
        },
        {
            "metric": "routes missing from the FIB",
            "value": counts["missing"],
            "unit": "",
            "target": 0,
        },
        {"metric": "stale routes in the FIB", "value": counts["stale"], "unit": "", "target": 0},
        {
            "metric": "routes with wrong next hops",
            "value": counts["wrong_next_hops"],
            "unit": "",
            "target": 0,
        },
        {
            "metric": "leaked IPs (Eip/Service disagreements)",
            "value": len(result.checks.leaks),
            "unit": "",
            "target": 0,
        },
        {
            "metric": "unsettled Services",
            "value": len(result.checks.unsettled),
            "unit": "",
            "target": 0,
        },
        {
            "metric": "controller gauges disagreeing with the cluster",
            "value": len(result.checks.metrics),
            "unit": "",
            "target": 0,
        },
        {"metric": "crashed processes", "value": len(result.crashed), "unit": "", "target": 0},
        {
            "metric": "ERROR/traceback log lines",
            "value": len(result.log_problems),
            "unit": "",
            "target": 0,
        },
    ]
    for name, memory in sorted(result.memory.items()):
        rows += [
            {
                "metric": f"{name} RSS start",
                "value": memory.start / 1024,
                "unit": "MiB",
                "target": None,
            },
            {
                "metric": f"{name} RSS after warm-up",
                "value": memory.warm / 1024,
                "unit": "MiB",
                "target": None,
            },
            {
                "metric": f"{name} RSS half way",
                "value": memory.mid / 1024,
                "unit": "MiB",
                "target": None,
            },
            {
                "metric": f"{name} RSS end",
                "value": memory.end / 1024,
                "unit": "MiB",
                "target": None,
            },
            {
                "metric": f"{name} RSS growth, 2nd half",
                "value": 100 * memory.growth,
                "unit": "%",
                "target": 10,
            },
            {
                "metric": f"{name} RSS slope, 2nd half",
                "value": memory.slope,
                "unit": "KiB/1k steps",
                "target": None,
            },
        ]
    report(
        "churn_soak",
        rows,
        {
            "seed": args.seed,
            "steps_by_kind": result.by_kind,
            "final": result.final,
            "api_errors": result.api_errors[:20],
            "drift": {
                k: result.checks.routes[k][:10] for k in ("missing", "stale", "wrong_next_hops")
            },
            "leaks": result.checks.leaks[:20],
            "unsettled": result.checks.unsettled[:20],
            "metrics": result.checks.metrics[:20],
            "crashed": result.crashed,
            "log_problems": result.log_problems[:20],
        },
    )
    print(f"steps by kind: {result.by_kind}")
    print(f"final state: {result.final}")
    for title, items in (
        ("API errors", result.api_errors),
        ("leaks", result.checks.leaks),
        ("unsettled", result.checks.unsettled),
        ("metrics", result.checks.metrics),
        ("log problems", result.log_problems),
    ):
        for item in items[:10]:
            print(f"{title}: {item}")
    ok = (
        result.quiesce_seconds is not None
        and result.checks.ok
        and not result.crashed
        and not result.log_problems
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
