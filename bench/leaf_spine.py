"""Benchmark: porter-lb on the leaf-spine fabric (porter_lab.reliability.leaf_spine: two racks
of two nodes, leaf1 BIRD and leaf2 FRR, a BIRD spine; per-node speakers with an AS per rack, or
the central speaker with per-peer export).

Two figures per speaker mode:
  EndpointSlice change -> FIB  one Service's endpoints move between the four nodes (within a
                               rack, across racks, both racks, none); from just before the API
                               call until each router's kernel FIB is exactly as the rule says
                               (porter_lab.reliability.leaf_spine.LeafSpineBed.desired), read
                               from netlink events, for each router whose routes for it
                               changed (leaf1 BIRD, leaf2 FRR, the spine BIRD);
  churn convergence           --services Services, --churn random endpoint moves sent back to
                               back (no wait between them); from the last call until all three
                               FIBs are exactly the rule's.

With --ipv6 the fabric is dual-stack and the timed Service is IPv6 alone: its /128 rides the
IPv4 sessions (MP-BGP) with each node's IPv6 address as next hop; the churned ones stay IPv4.

    python bench/leaf_spine.py [--changes 200] [--churn 300] [--services 10]
                               [--modes node,central] [--seed 1] [--ipv6]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import percentile, report

from porter_lab import objects
from porter_lab.fib import FibWatcher
from porter_lab.reliability.leaf_spine import NAMESPACE, LeafSpineBed, leaf_spine_bed
from porter_lab.waiting import wait_for

ROUTERS = ("leaf1", "leaf2", "spine")
# Endpoint sets the timed Service cycles through (node1, node2: rack1; node3, node4: rack2).
PATTERN = [["node1"], ["node1", "node2"], ["node2", "node3"], ["node4"], ["node3", "node1"], []]
NODES = ["node1", "node2", "node3", "node4"]


def namespaces(bed: LeafSpineBed) -> dict[str, str]:
    return {
        "spine": bed.fabric.spine_ns,
        "leaf1": bed.fabric.leaf_ns[0],
        "leaf2": bed.fabric.leaf_ns[1],
    }


def move(bed: LeafSpineBed, name: str, nodes: list[str], family: str = "IPv4") -> None:
    slice_name = f"{name}-1" if family == "IPv4" else f"{name}-{family.lower()}"
    body = objects.endpoint_slice(slice_name, NAMESPACE, name, nodes, address_type=family)
    bed.api.merge_patch(
        f"{objects.endpoint_slices(NAMESPACE)}/{slice_name}", {"endpoints": body["endpoints"]}
    )
    bed.services[name] = nodes


def host_prefix(ip: str) -> str:
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def all_ips(bed: LeafSpineBed) -> dict[str, str]:
    def found() -> dict[str, str] | None:
        ips = bed.ips()
        return ips if len(ips) == len(bed.services) and all(ips.values()) else None

    return wait_for(found, 60, "every Service's IP")


def run_mode(  # noqa: PLR0917 (the bench's own options, passed through)
    mode: str, changes: int, churn: int, services: int, seed: int, ipv6: bool
) -> dict[str, object]:
    samples: dict[str, list[float]] = {router: [] for router in ROUTERS}
    family = "IPv6" if ipv6 else "IPv4"
    with leaf_spine_bed(mode, ipv6=ipv6) as bed:  # type: ignore[arg-type]
        wait_for(bed.routers.all_established, 90, "every session of the fabric Established")
        bed.add_service("timed", ["node1"], (family,))
        for index in range(services):
            bed.add_service(f"churn{index}", [NODES[index % 4]])
        ips = all_ips(bed)
        if mode == "central":
            bed.accept_on_nodes(ips)
        watchers = {r: FibWatcher(ns) for r, ns in namespaces(bed).items()}
        try:

            def exact(router: str) -> bool:
                # A Service with no endpoint anywhere is absent (the spine's rule lists it
                # with no uplink).
                want = {p: h for p, h in bed.desired(ips)[router].items() if h}
                pool = {host_prefix(ip) for ip in ips.values()}
                have = {p: h for p, h in watchers[router].routes.items() if p in pool}
                return have == want

            for router in ROUTERS:
                watchers[router].wait_until(lambda _r, router=router: exact(router), 60)
            prefix = host_prefix(ips["timed"])
            print(f"{mode}: fabric converged; timing {changes} changes", flush=True)
            for step in range(changes):
                before_want = bed.desired(ips)
                nodes = PATTERN[(step + 1) % len(PATTERN)]
                started = time.monotonic()
                move(bed, "timed", nodes, family)
                want = bed.desired(ips)
                for router in ROUTERS:
                    hops = want[router].get(prefix, frozenset())
                    seen = watchers[router].wait(prefix, hops, 10)
                    if hops != before_want[router].get(prefix, frozenset()):
                        samples[router].append((seen - started) * 1000)
            rng = random.Random(seed)
            churned = [n for n in bed.services if n.startswith("churn")]
            print(f"{mode}: {churn} churn steps back to back", flush=True)
            started = time.monotonic()
            for _ in range(churn):
                name = rng.choice(churned)
                move(bed, name, sorted(rng.sample(NODES, rng.randint(0, 3))))
            sent = time.monotonic()
            settled = max(watchers[r].wait_until(lambda _r, r=r: exact(r), 120) for r in ROUTERS)
        finally:
            for watcher in watchers.values():
                watcher.close()
    return {
        **{f"{router}_ms": samples[router] for router in ROUTERS},
        "churn_send_s": sent - started,
        "churn_settled_s": settled - sent,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--churn", type=int, default=300)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--modes", default="node,central")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ipv6", action="store_true", help="time an IPv6 Service (MP-BGP)")
    args = parser.parse_args()
    rows = []
    extra: dict[str, object] = {"changes": args.changes, "churn": args.churn, "ipv6": args.ipv6}
    for mode in args.modes.split(","):
        result = run_mode(mode, args.changes, args.churn, args.services, args.seed, args.ipv6)
        extra[mode] = result
        for kind in ("leaf1 (BIRD)", "leaf2 (FRR)", "spine (BIRD)"):
            values: list[float] = result[f"{kind.split()[0]}_ms"]  # type: ignore[assignment]
            for label, value in (
                ("p50", percentile(values, 0.5)),
                ("p99", percentile(values, 0.99)),
                ("max", max(values)),
            ):
                rows.append(
                    {
                        "metric": f"{mode}: EndpointSlice -> {kind} FIB {label}",
                        "value": value,
                        "unit": "ms",
                        "target": None,
                    }
                )
        rows.append(
            {
                "metric": f"{mode}: {args.churn} churn steps -> every FIB exact",
                "value": result["churn_settled_s"],
                "unit": "s",
                "target": None,
            }
        )
    report("leaf_spine_ipv6" if args.ipv6 else "leaf_spine", rows, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
