"""Benchmark: an EndpointSlice change -> the router's kernel FIB updated.

The bed: real API server, BIRD in the router namespace, three node namespaces each with its
gobgpd driven by a `porter-lb agent` process, the `porter-lb controller` process. One
Service with externalTrafficPolicy Local. Each step replaces its EndpointSlice so that the set
of nodes hosting a ready endpoint changes, and times from just before the API call until the
router's kernel has exactly the new next hops, read from netlink events (no polling).
Targets: p50 <= 20 ms, p99 <= 100 ms; the raw gobgpd -> BIRD -> kernel floor is
~3 ms (../shared/FACTS.md).

    python bench/endpointslice_fib.py [--changes 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bedkit import NAMESPACE, bed
from common import percentile, report

from porter_lab.fib import FibWatcher
from porter_lab.waiting import wait_for

# Node sets the endpoints cycle through: grow, shrink, move, and all the way to empty (withdraw).
PATTERN = [["node1"], ["node1", "node2"], ["node2"], ["node2", "node3"], ["node1", "node3"], []]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    samples: list[float] = []
    started_all = time.monotonic()
    with bed(nodes=3) as b:
        print("bed up; creating objects", flush=True)
        for node in b.topology.nodes:
            b.add_node(node.name, node.address)
        b.base_objects()
        b.start_controller()
        b.start_agents()
        collection = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
        b.api.create(collection, b.slice_body("web", ["node1"]))
        b.api.create(f"/api/v1/namespaces/{NAMESPACE}/services", b.service_body("web"))
        address = {n.name: n.address for n in b.topology.nodes}

        def ingress() -> list[str]:
            service = b.api.get(f"/api/v1/namespaces/{NAMESPACE}/services/web")
            return [
                i["ip"]
                for i in service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
            ]

        ip = wait_for(lambda: (found := ingress()) and found[0], 30, "the Service's IP")
        prefix = f"{ip}/32"
        watcher = FibWatcher(b.topology.router_ns)
        try:
            watcher.wait(prefix, frozenset({address["node1"]}), 30)
            print(f"{prefix} announced via node1; timing {args.changes} changes", flush=True)
            for step in range(args.changes):
                nodes = PATTERN[(step + 1) % len(PATTERN)]
                body = b.slice_body("web", nodes)
                before = time.monotonic()
                b.api.replace(f"{collection}/web-slice", body)
                seen = watcher.wait(prefix, frozenset(address[n] for n in nodes), 10)
                samples.append((seen - before) * 1000)
                if (step + 1) % 50 == 0:
                    print(f"  {step + 1} changes, p50 so far {percentile(samples, 0.5):.1f} ms")
        finally:
            watcher.close()
    report(
        "endpointslice_fib",
        [
            {
                "metric": "EndpointSlice -> FIB p50",
                "value": percentile(samples, 0.5),
                "unit": "ms",
                "target": 20.0,
            },
            {
                "metric": "EndpointSlice -> FIB p99",
                "value": percentile(samples, 0.99),
                "unit": "ms",
                "target": 100.0,
            },
            {
                "metric": "EndpointSlice -> FIB max",
                "value": max(samples),
                "unit": "ms",
                "target": None,
            },
            {
                "metric": "EndpointSlice -> FIB min",
                "value": min(samples),
                "unit": "ms",
                "target": None,
            },
        ],
        {
            "changes": len(samples),
            "router": "bird",
            "nodes": 3,
            "samples_ms": [round(s, 3) for s in samples],
            "wall_seconds": round(time.monotonic() - started_all, 1),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
