"""Benchmark: porter-lb against MetalLB, side by side on one bed, in one run.

The bed (porter_lab.peers): a real API server, one BIRD router, node1 and node2 running
porter-lb (agent + gobgpd each, its controller), node3 and node4 running MetalLB v0.15.2 in
native BGP mode (speaker each, its controller), built from MetalLB's pinned Go module
(porter_lab.metallb). Each system gets the same work: one Service with externalTrafficPolicy
Local whose EndpointSlice cycles through its two nodes (one, both, the other, none).

Changes alternate one by one, porter-lb then MetalLB, then MetalLB first on the next step (A B
B A ...), so the machine's drift falls on both alike. Each is timed from just before the API
call until the router's kernel FIB holds exactly the new next hops (netlink events, no
polling). Two rounds: `--gap` seconds between changes, then back to back (the next change as
soon as the last one is in the FIB). Then each process's resident memory (VmRSS) and the CPU
seconds it used over the whole run.

    python bench/peers.py [--changes 200] [--gap 0.05]

Prints one table, each figure for porter-lb and for MetalLB with their ratio (porter-lb /
MetalLB: below 1 means porter-lb is faster or lighter), and writes bench/results/peers.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import percentile, report

from porter_lab.fib import FibWatcher
from porter_lab.peers import SYSTEMS, PeersBed, System, peers_bed
from porter_lab.reliability.churn import rss_kib
from porter_lab.waiting import wait_for

LABELS = {"porter-lb": "porter-lb", "metallb": "MetalLB"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cycle(bed: PeersBed, system: System) -> list[list[str]]:
    """The endpoint sets a system's Service goes through: one node, both, the other, none."""
    a, b = (n.name for n in bed.nodes(system))
    return [[a], [a, b], [b], []]


def rss_mb(pid: int) -> float:
    return rss_kib(pid) / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def timed_round(
    bed: PeersBed, watcher: FibWatcher, ips: dict[str, str], changes: int, gap: float
) -> dict[System, list[float]]:
    samples: dict[System, list[float]] = {"porter-lb": [], "metallb": []}
    patterns = {system: cycle(bed, system) for system in SYSTEMS}
    for step in range(changes):
        order = SYSTEMS if step % 2 == 0 else SYSTEMS[::-1]
        for system in order:
            nodes = patterns[system][(step + 1) % len(patterns[system])]
            started = time.monotonic()
            bed.move(system, nodes)
            want = bed.desired(ips)
            prefix = f"{ips[system]}/32"
            seen = watcher.wait(prefix, want.get(prefix, frozenset()), 10)
            samples[system].append((seen - started) * 1000)
            if gap:
                time.sleep(gap)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=200, help="changes per system per round")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between changes")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"changes": args.changes, "gap_s": args.gap}
    with peers_bed() as bed:
        for system in SYSTEMS:
            bed.add_service(system, system, [bed.nodes(system)[0].name])
        ips = wait_for(lambda: first_ips(bed), 60, "an IP for each system's Service")
        pids = {system: bed.pids(system) for system in SYSTEMS}
        cpu_before = {s: {r: cpu_seconds(p) for r, p in pids[s].items()} for s in SYSTEMS}
        watcher = FibWatcher(bed.topology.router_ns)
        try:
            watcher.wait_until(
                lambda routes: all(routes.get(p) == h for p, h in bed.desired(ips).items()), 60
            )
            print(f"both systems announce their Service: {ips}", flush=True)
            rounds = {"paced": args.gap, "back to back": 0.0}
            for name, gap in rounds.items():
                print(f"{name}: {args.changes} changes each, alternating", flush=True)
                samples = timed_round(bed, watcher, ips, args.changes, gap)
                extra[name] = {LABELS[s]: samples[s] for s in SYSTEMS}
                for label, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
                    values = {s: percentile(samples[s], fraction) for s in SYSTEMS}
                    rows.append(side_by_side(f"EndpointSlice -> FIB {label}, {name}", values, "ms"))
            bed.check_running()
        finally:
            watcher.close()
        cpu = {
            s: {r: cpu_seconds(p) - cpu_before[s][r] for r, p in pids[s].items()} for s in SYSTEMS
        }
        rss = {s: {r: rss_mb(p) for r, p in pids[s].items()} for s in SYSTEMS}
    extra["rss_mb"], extra["cpu_s"] = rss, cpu
    node_rss = {s: per_node(rss[s]) for s in SYSTEMS}
    rows.append(side_by_side("RSS per node (speaker + gobgpd)", node_rss, "MB"))
    rows.append(side_by_side("RSS controller", {s: rss[s]["controller"] for s in SYSTEMS}, "MB"))
    rows.append(
        side_by_side("CPU per node over the run", {s: per_node(cpu[s]) for s in SYSTEMS}, "s")
    )
    rows.append(
        side_by_side("CPU controller over the run", {s: cpu[s]["controller"] for s in SYSTEMS}, "s")
    )
    extra["machine_description"] = f"{os.cpu_count()} cores, {platform.platform()}"
    print_table(rows)
    report("peers", rows, extra, table=False)
    return 0


def first_ips(bed: PeersBed) -> dict[str, str] | None:
    """Each Service's IP once both have one."""
    found = {name: ips[0] for name, ips in bed.ingress().items() if ips}
    return found if len(found) == len(bed.services) else None


def per_node(by_role: dict[str, float]) -> float:
    """Mean over nodes of everything a node runs (porter-lb: agent + gobgpd)."""
    nodes = {role.split()[1] for role in by_role if role != "controller"}
    return sum(v for role, v in by_role.items() if role != "controller") / len(nodes)


def side_by_side(metric: str, values: dict[System, float], unit: str) -> dict[str, Any]:
    porter, peer = values["porter-lb"], values["metallb"]
    return {
        "metric": metric,
        "value": porter,
        "metallb": peer,
        "ratio": porter / peer if peer else None,
        "unit": unit,
        "target": None,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    width = max(len(r["metric"]) for r in rows)
    print(f"\n{'metric':<{width}}  {'porter-lb':>12}  {'MetalLB':>12}  {'ratio':>6}")
    for row in rows:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        print(
            f"{row['metric']:<{width}}  {row['value']:>9.4g} {row['unit']:<2}"
            f"  {row['metallb']:>9.4g} {row['unit']:<2}  {ratio:>6}"
        )


if __name__ == "__main__":
    sys.exit(main())
