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
soon as the last one is in the FIB); a capture of the UPDATEs at the router splits each
paced change (porter_lab.bgpwire; for porter-lb also the agents' debug timeline). Then the
steady state, CPU (% of one core) and RSS of every process: an idle window, and a churn
window where both systems' Services move `--churn-rate` times a second each, after which
the FIB must be exactly what the rule says. Last, each process's resident memory (VmRSS)
and the CPU seconds it used over the whole run.

    python bench/peers.py [--changes 200] [--gap 0.05] [--idle 20] [--churn-rate 100]
                          [--churn-seconds 20]

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_seconds, percentile, print_side_by_side, report

from porter_lab.bgpwire import UpdateCapture
from porter_lab.fib import FibWatcher
from porter_lab.peers import SYSTEMS, PeersBed, System, peers_bed
from porter_lab.reliability.churn import rss_kib
from porter_lab.waiting import wait_for

LABELS = {"porter-lb": "porter-lb", "metallb": "MetalLB"}
# Debug: each agent logs the steps of every reconcile (the timeline); two lines per change.
AGENT_ARGS = ("--log-level", "debug", "--log-format", "json")


def cycle(bed: PeersBed, system: System) -> list[list[str]]:
    """The endpoint sets a system's Service goes through: one node, both, the other, none."""
    a, b = (n.name for n in bed.nodes(system))
    return [[a], [a, b], [b], []]


def rss_mb(pid: int) -> float:
    return rss_kib(pid) / 1024


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
        add("porter-lb", "  gRPC call to gobgpd (AddPath)", computed, sent)
        add("porter-lb", "  gobgpd -> UPDATE at the router", sent, update.at)
    return split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=200, help="changes per system per round")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between changes")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of the idle window")
    parser.add_argument(
        "--churn-rate", type=float, default=100.0, help="changes per second per system"
    )
    parser.add_argument(
        "--churn-seconds", type=float, default=20.0, help="seconds of the churn window"
    )
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
            print(f"steady state: {args.idle:g} s idle", flush=True)
            windows = {"idle": window(pids, lambda: time.sleep(args.idle))}
            print(
                f"steady state: {args.churn_rate:g} changes/s each for {args.churn_seconds:g} s",
                flush=True,
            )
            done: dict[System, int] = {}
            windows["churn"] = window(
                pids, lambda: done.update(churn(bed, args.churn_rate, args.churn_seconds))
            )
            # Nothing lost: once the churn stops, the FIB is exactly what the rule says.
            watcher.wait_until(
                lambda routes: (
                    all(routes.get(p) == h for p, h in bed.desired(ips).items())
                    and all(p in bed.desired(ips) for p in routes if p in ip_prefixes(ips))
                ),
                30,
            )
            extra["steady"] = {
                "windows": windows,
                "churn_changes": {LABELS[s]: n for s, n in done.items()},
            }
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
    rate = {s: done[s] / args.churn_seconds for s in SYSTEMS}
    rows.append(side_by_side("steady: changes/s achieved", rate, "/s"))
    for name in ("idle", "churn"):
        cpu_w, rss_w, seconds = (windows[name][k] for k in ("cpu_s", "rss_mb", "seconds"))
        rows.append(
            side_by_side(
                f"steady {name}: CPU per node",
                {s: 100 * per_node(cpu_w[s]) / seconds for s in SYSTEMS},
                "%",
            )
        )
        rows.append(
            side_by_side(
                f"steady {name}: CPU controller",
                {s: 100 * cpu_w[s]["controller"] / seconds for s in SYSTEMS},
                "%",
            )
        )
        rows.append(
            side_by_side(
                f"steady {name}: RSS per node", {s: per_node(rss_w[s]) for s in SYSTEMS}, "MB"
            )
        )
    extra["machine_description"] = f"{os.cpu_count()} cores, {platform.platform()}"
    print_side_by_side(rows)
    report("peers", rows, extra, table=False)
    return 0


def window(pids: dict[System, dict[str, int]], work: Callable[[], object]) -> dict[str, Any]:
    """CPU seconds each process used while `work` ran, and its RSS at the end."""
    before = {s: {r: cpu_seconds(p) for r, p in pids[s].items()} for s in SYSTEMS}
    started = time.monotonic()
    work()
    seconds = time.monotonic() - started
    return {
        "seconds": seconds,
        "cpu_s": {
            s: {r: cpu_seconds(p) - before[s][r] for r, p in pids[s].items()} for s in SYSTEMS
        },
        "rss_mb": {s: {r: rss_mb(p) for r, p in pids[s].items()} for s in SYSTEMS},
    }


def churn(bed: PeersBed, rate: float, seconds: float) -> dict[System, int]:
    """Both systems' Services moved `rate` times a second each, for `seconds`, one writer
    thread per system paced by a schedule (a late change is not made up for); how many
    changes each made."""
    patterns = {system: cycle(bed, system) for system in SYSTEMS}
    end = time.monotonic() + seconds

    def writer(system: System) -> int:
        made, due = 0, time.monotonic()
        while time.monotonic() < end:
            bed.move(system, patterns[system][(made + 1) % len(patterns[system])])
            made += 1
            due = max(due + 1 / rate, time.monotonic() - 1 / rate)
            time.sleep(max(0.0, due - time.monotonic()))  # pacing, not synchronisation
        return made

    with ThreadPoolExecutor(len(SYSTEMS)) as pool:
        return dict(zip(SYSTEMS, pool.map(writer, SYSTEMS), strict=True))


def ip_prefixes(ips: dict[str, str]) -> set[str]:
    return {f"{ip}/32" for ip in ips.values()}


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


if __name__ == "__main__":
    sys.exit(main())
