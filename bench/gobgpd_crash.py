"""Benchmark: gobgpd crashes (SIGKILL) and comes back — how soon is everything announced again?

The bed and the trial are porter_lab.reliability.gobgpd_crash (real kube-apiserver and etcd,
BIRD or FRR, three node namespaces, `porter-lb agent` per node or the controller's central
speaker, N LoadBalancer Services). Each trial SIGKILLs node1's gobgpd, keeps it down
`--down` seconds (one Service is deleted meanwhile), starts it again on the same socket, and
times, from gobgpd answering gRPC again, its RIB back (ListPath equals the desired paths) and
the router's kernel FIB back (every prefix with exactly its next hops). Trials alternate
without and with graceful restart (BgpPeer/BgpConf `gracefulRestart`; the routers are helpers).

Figures (p50 and max over the trials of each kind):
  detect           SIGKILL -> the speaker logs a failed gobgpd call (poll every 1 s)
  rib back         gobgpd back -> its whole RIB re-programmed          target <= 2 s
  fib back         gobgpd back -> the router's FIB exact again
  lost (GR)        prefixes that lost a next hop during a GR restart   target 0
Without graceful restart the router withdraws the dead speaker's next hops at once (its
session closed): expected, reported as "withdrawn".

    python bench/gobgpd_crash.py [--services 200] [--trials 3] [--down 2]
                                 [--modes node,central] [--routers bird,frr]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import percentile, report

from porter_lab.reliability import gobgpd_crash as crash

RIB_TARGET = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--trials", type=int, default=3, help="per kind (GR off, GR on)")
    parser.add_argument("--down", type=float, default=2.0, help="seconds gobgpd stays down")
    parser.add_argument("--modes", default="node,central")
    parser.add_argument("--routers", default="bird,frr")
    args = parser.parse_args()

    rows = []
    trials: list[dict[str, object]] = []
    for mode in args.modes.split(","):
        for router in args.routers.split(","):
            with crash.crash_bed(mode, router) as bed:  # type: ignore[arg-type]
                bed.add_services(args.services)
                results: dict[bool, list[crash.CrashResult]] = {False: [], True: []}
                for _ in range(args.trials):
                    for graceful in (False, True):
                        result = crash.crash(bed, graceful_restart=graceful, down_s=args.down)
                        print(result, flush=True)
                        results[graceful].append(result)
                        trials.append(dataclasses.asdict(result))
            for graceful, runs in results.items():
                kind = f"{mode}/{router}/{'GR' if graceful else 'no GR'}"

                def figure(
                    name: str, values: list[float], target: float | None = None, kind: str = kind
                ) -> None:
                    for label, value in (("p50", percentile(values, 0.5)), ("max", max(values))):
                        rows.append(
                            {
                                "metric": f"{kind} {name} {label}",
                                "value": value,
                                "unit": "s",
                                "target": target,
                            }
                        )

                figure("detect", [r.detect_s for r in runs])
                if not graceful:
                    figure("withdrawn", [r.withdrawn_s or 0.0 for r in runs])
                figure("rib back", [r.rib_back_s for r in runs], RIB_TARGET)
                figure("fib back", [r.fib_back_s for r in runs])
                figure("stale gone", [r.stale_gone_s for r in runs])
                if graceful:
                    rows.append(
                        {
                            "metric": f"{kind} prefixes that lost a next hop (max)",
                            "value": max(r.prefixes_that_lost_a_next_hop for r in runs),
                            "unit": "",
                            "target": 0,
                        }
                    )
    report(
        "gobgpd_crash",
        rows,
        {"services": args.services, "down_s": args.down, "trials": trials},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
