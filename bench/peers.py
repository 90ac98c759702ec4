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
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import percentile, report

from porter_lab.bgpwire import UpdateCapture
from porter_lab.fib import FibWatcher
from porter_lab.peers import SYSTEMS, PeersBed, System, peers_bed
from porter_lab.reliability.churn import rss_kib
from porter_lab.waiting import wait_for

LABELS = {"porter-lb": "porter-lb", "metallb": "MetalLB"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Debug: each agent logs the steps of every reconcile (the timeline); two lines per change.
AGENT_ARGS = ("--log-level", "debug", "--log-format", "json")


def cycle(bed: PeersBed, system: System) -> list[list[str]]:
    """The endpoint sets a system's Service goes through: one node, both, the other, none."""
    a, b = (n.name for n in bed.nodes(system))
    return [[a], [a, b], [b], []]


def rss_mb(pid: int) -> float:
    return rss_kib(pid) / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


@dataclass(frozen=True)
class Change:
    """One timed change: monotonic times of the API call, its return and the FIB."""

    system: System
    prefix: str
    started: float
    returned: float
    in_fib: float

    @property
    def ms(self) -> float:
        return (self.in_fib - self.started) * 1000


def timed_round(
    bed: PeersBed, watcher: FibWatcher, ips: dict[str, str], changes: int, gap: float
) -> list[Change]:
    done: list[Change] = []
    patterns = {system: cycle(bed, system) for system in SYSTEMS}
    for step in range(changes):
        order = SYSTEMS if step % 2 == 0 else SYSTEMS[::-1]
        for system in order:
            nodes = patterns[system][(step + 1) % len(patterns[system])]
            started = time.monotonic()
            bed.move(system, nodes)
            returned = time.monotonic()
            want = bed.desired(ips)
            prefix = f"{ips[system]}/32"
            seen = watcher.wait(prefix, want.get(prefix, frozenset()), 10)
            done.append(Change(system, prefix, started, returned, seen))
            if gap:
                time.sleep(gap)
    return done


def speaker_steps(logs: list[Path]) -> list[dict[str, Any]]:
    """The agents' "services reconciled" debug lines (porter_lb.routing.speaker), by time."""
    found = []
    for path in logs:
        for line in path.read_text().splitlines():
            if '"services reconciled"' in line:
                found.append(json.loads(line))
    return sorted(found, key=lambda entry: float(entry["event_at"]))


def timeline(
    changes: list[Change],
    capture: UpdateCapture,
    sources: dict[System, frozenset[str]],
    steps: list[dict[str, Any]],
) -> dict[System, dict[str, list[float]]]:
    """Each change cut into steps (ms): for both systems the API call, the speaker until its
    UPDATE reached the router, and the router until its FIB; for porter-lb the speaker part
    further into watch delivery, the agent's wake-up, its compute, the gRPC call and gobgpd."""
    split: dict[System, dict[str, list[float]]] = {s: {} for s in SYSTEMS}

    def add(system: System, step: str, start: float, end: float) -> None:
        split[system].setdefault(step, []).append((end - start) * 1000)

    for change in changes:
        update = capture.first_after(change.prefix, change.started, sources[change.system])
        if update is None or update.at > change.in_fib:
            continue  # not seen on the wire: leave the change out of the split
        add(change.system, "API call returns", change.started, change.returned)
        add(change.system, "API call -> UPDATE at the router", change.started, update.at)
        add(change.system, "UPDATE -> router FIB", update.at, change.in_fib)
        if change.system != "porter-lb":
            continue
        step = next((e for e in steps if change.started <= float(e["event_at"]) <= update.at), None)
        if step is None:
            continue
        event, begun, computed, sent = (
            float(step[k]) for k in ("event_at", "started_at", "computed_at", "sent_at")
        )
        add("porter-lb", "  API call -> watch event in the agent", change.started, event)
        add("porter-lb", "  watch event -> reconcile starts", event, begun)
        add("porter-lb", "  reconcile computes the paths", begun, computed)
        add("porter-lb", "  gRPC AddPathStream to gobgpd", computed, sent)
        add("porter-lb", "  gobgpd -> UPDATE at the router", sent, update.at)
    return split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=200, help="changes per system per round")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between changes")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"changes": args.changes, "gap_s": args.gap}
    steps: list[dict[str, Any]] = []
    with peers_bed(agent_args=AGENT_ARGS) as bed:
        for system in SYSTEMS:
            bed.add_service(system, system, [bed.nodes(system)[0].name])
        ips = wait_for(lambda: first_ips(bed), 60, "an IP for each system's Service")
        pids = {system: bed.pids(system) for system in SYSTEMS}
        sources = {s: frozenset(n.address for n in bed.nodes(s)) for s in SYSTEMS}
        cpu_before = {s: {r: cpu_seconds(p) for r, p in pids[s].items()} for s in SYSTEMS}
        watcher = FibWatcher(bed.topology.router_ns)
        capture = UpdateCapture(bed.topology.router_ns, "br0").start()
        try:
            watcher.wait_until(
                lambda routes: all(routes.get(p) == h for p, h in bed.desired(ips).items()), 60
            )
            print(f"both systems announce their Service: {ips}", flush=True)
            rounds = {"paced": args.gap, "back to back": 0.0}
            timed: dict[str, list[Change]] = {}
            for name, gap in rounds.items():
                print(f"{name}: {args.changes} changes each, alternating", flush=True)
                timed[name] = timed_round(bed, watcher, ips, args.changes, gap)
                samples = {s: [c.ms for c in timed[name] if c.system == s] for s in SYSTEMS}
                extra[name] = {LABELS[s]: samples[s] for s in SYSTEMS}
                for label, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
                    values = {s: percentile(samples[s], fraction) for s in SYSTEMS}
                    rows.append(side_by_side(f"EndpointSlice -> FIB {label}, {name}", values, "ms"))
            bed.check_running()
        finally:
            capture.stop()
            watcher.close()
        steps = speaker_steps([agent.log for agent in bed.agents])
        cpu = {
            s: {r: cpu_seconds(p) - cpu_before[s][r] for r, p in pids[s].items()} for s in SYSTEMS
        }
        rss = {s: {r: rss_mb(p) for r, p in pids[s].items()} for s in SYSTEMS}
    extra["rss_mb"], extra["cpu_s"] = rss, cpu
    split = timeline(timed["paced"], capture, sources, steps)
    extra["timeline_ms"] = {LABELS[s]: split[s] for s in SYSTEMS}
    for step in split["porter-lb"]:
        values = {
            s: percentile(split[s][step], 0.5) if split[s].get(step) else 0.0 for s in SYSTEMS
        }
        rows.append(side_by_side(f"paced p50: {step}", values, "ms"))
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
