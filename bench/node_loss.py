"""Benchmark: a node lost without a TCP reset (its link cut) — how soon does the router stop
sending to it, with BFD and without?

The bed and the trial are porter_lab.reliability.node_loss (real kube-apiserver and etcd, BIRD
or FRR with BFD configured for every node, three node namespaces each with gobgpd and a
`porter-lb agent`, N LoadBalancer Services). Each trial cuts node2's link on its side and
times until none of the router's kernel routes has node2 as a next hop; the link then comes
back and the FIB is whole again before the next trial. Trials alternate between the BgpPeer
without BFD, with BFD at 300 ms x 3 and with BFD at the tighter setting (`--tight`), so the
machine's drift spreads over all three. The router's own BFD runs at 50 ms, so the node's
transmit interval decides the detection time (RFC 5880 6.8.4); without BFD the router's hold
timer does (the bed's 9 s).

Figures (p50 and max over the trials of each kind):
  gone             link down -> the node out of every route in the router's kernel FIB
                   (target <= 1 s at 300 ms x 3)

    python bench/node_loss.py [--services 50] [--trials 3] [--routers bird,frr]
                              [--tight 100x3]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import percentile, report

from porter_lab.reliability import gobgpd_crash as crash
from porter_lab.reliability import node_loss
from porter_lab.routers import BfdTimers

ROUTER_BFD = BfdTimers(50, 50, 3)
TARGET_300 = 1.0


def _timers(text: str) -> BfdTimers:
    interval, multiplier = text.lower().split("x")
    return BfdTimers(int(interval), int(interval), int(multiplier))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--trials", type=int, default=3, help="per kind")
    parser.add_argument("--routers", default="bird,frr")
    parser.add_argument("--tight", default="100x3", help="the tighter BFD setting, ms x count")
    args = parser.parse_args()

    kinds: list[tuple[str, BfdTimers | None]] = [
        ("no BFD (hold 9 s)", None),
        ("BFD 300 ms x 3", BfdTimers(300, 300, 3)),
        (f"BFD {args.tight.replace('x', ' ms x ')}", _timers(args.tight)),
    ]
    rows = []
    reasons: dict[str, list[str]] = {}
    trials: list[dict[str, object]] = []
    for router in args.routers.split(","):
        with crash.crash_bed("node", router, router_bfd=ROUTER_BFD) as bed:  # type: ignore[arg-type]
            bed.add_services(args.services)
            results: dict[str, list[node_loss.NodeLoss]] = {name: [] for name, _ in kinds}
            for _ in range(args.trials):
                for name, bfd in kinds:
                    node_loss.set_bgppeer_bfd(bed, bfd)
                    result = node_loss.lose_node(bed, bfd)
                    print(name, result, flush=True)
                    results[name].append(result)
                    trials.append({"kind": name, **dataclasses.asdict(result)})
        for name, runs in results.items():
            values = [r.gone_s for r in runs]
            target = TARGET_300 if name.startswith("BFD 300") else None
            for label, value in (("p50", percentile(values, 0.5)), ("max", max(values))):
                rows.append(
                    {
                        "metric": f"{router} {name}: node gone from FIB {label}",
                        "value": value,
                        "unit": "s",
                        "target": target,
                    }
                )
            reasons[f"{router} {name}"] = sorted({r.reason for r in runs})
    report("node_loss", rows, {"services": args.services, "reasons": reasons, "trials": trials})
    for kind, said in reasons.items():
        print(f"{kind}: the router said {' / '.join(said)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
