"""Benchmark, on the real cluster: a pod becomes Ready (or not) -> its node's next hop in the
router's kernel FIB, the end-to-end latency users feel.

The bed (porter_lab.clusterbed): three kubelet nodes, porter-lb installed with Helm (controller
Deployment, agent DaemonSet with gobgpd), BIRD in the router namespace. The test app runs one
pod per node behind a LoadBalancer Service with externalTrafficPolicy Local. Each change flips
the readiness of the pod on node3 (its /healthz answers 503, then 200 again); the kubelet sees it
at its next probe (period 1 s: that wait is the kubelet's and is excluded), writes the pod's
Ready condition, the EndpointSlice controller updates the slice, node3's agent withdraws or
re-announces the EIP through its gobgpd, BIRD changes its kernel route.

Timed: from the pod's Ready condition changing (as a watch on the API server delivers it to
this host, through the bed's loopback relay) to the router's kernel FIB holding the new next
hops (netlink events, no polling). Also reported: probe wait (flip -> Ready seen), for scale.
Targets: p50 <= 100 ms, p99 <= 300 ms.

    python bench/pod_ready_fib.py [--changes 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import percentile, report

from porter_lab import testapp
from porter_lab.clusterbed import cluster_bed
from porter_lab.fib import FibLog
from porter_lab.topology import run_id

NAMESPACE, APP = "bench", "web"


class ReadyWatch:
    """The times (monotonic, on this host) at which the watched pod's Ready condition changed."""

    def __init__(self, bed, pod_name: str) -> None:
        self.api = bed.api
        self.path = f"/api/v1/namespaces/{NAMESPACE}/pods?fieldSelector=metadata.name%3D{pod_name}"
        self.changes: list[tuple[float, bool]] = []
        self.cond = threading.Condition()
        self.stop = threading.Event()
        items, version = self.api.list(self.path)
        self.ready = testapp.is_ready(items[0])
        self.version = version
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for event in self.api.watch(self.path, self.version, timeout_seconds=60):
                    now = time.monotonic()
                    self.version = event.object["metadata"].get("resourceVersion", self.version)
                    if event.type not in ("ADDED", "MODIFIED"):
                        continue
                    ready = testapp.is_ready(event.object)
                    with self.cond:
                        if ready != self.ready:
                            self.ready = ready
                            self.changes.append((now, ready))
                            self.cond.notify_all()
                    if self.stop.is_set():
                        return
            except Exception:  # noqa: BLE001 - a closed or broken watch: open another
                if self.stop.is_set():
                    return
                time.sleep(0.1)

    def wait_change(self, after: float, ready: bool, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for when, state in self.changes:
                    if when >= after and state == ready:
                        return when
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"pod Ready={ready} not seen within {timeout}s")
                self.cond.wait(left)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    latency: list[float] = []
    probe_wait: list[float] = []
    started_all = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="porter-lb-bench-", dir="/var/tmp") as tmp,
        cluster_bed("b" + run_id(), Path(tmp)) as bed,
    ):
        bed.helm("install", "porter-lb", "charts/porter-lb", *bed.image_values(), "--wait")
        bed.apply(bed.bgp_objects())
        bed.deploy_app(APP, NAMESPACE, replicas=3)
        ip = bed.service_ip(APP, NAMESPACE)
        everyone = set(bed.addresses.values())
        bed.wait_hops(ip, everyone, 120, "the EIP via all three nodes")
        (pod,) = [
            p for p in testapp.pods(bed.api, NAMESPACE, APP) if p["spec"]["nodeName"] == "node3"
        ]
        node3 = bed.addresses["node3"]
        prefix = f"{ip}/32"
        watch = ReadyWatch(bed, pod["metadata"]["name"])
        fib = FibLog(bed.topology.router_ns, "203.0.113.0/24")
        try:
            print(f"{prefix} via three nodes; timing {args.changes} readiness changes", flush=True)
            for step in range(args.changes):
                ready = step % 2 == 1  # unready first, then ready again, ...
                hops = frozenset(everyone if ready else everyone - {node3})
                flipped = time.monotonic()
                testapp.set_ready(pod, bed.node_netns("node3"), ready)
                seen_ready = watch.wait_change(flipped, ready, 30)
                fib.wait(prefix, hops, 30)
                # When the kernel made the change (the netlink event's arrival), not when this
                # loop looked.
                seen_fib = next(
                    when
                    for when, where, _, new in fib.since(flipped)
                    if where == prefix and new == hops
                )
                latency.append((seen_fib - seen_ready) * 1000)
                probe_wait.append((seen_ready - flipped) * 1000)
                if (step + 1) % 25 == 0:
                    print(
                        f"  {step + 1} changes, p50 so far {percentile(latency, 0.5):.1f} ms",
                        flush=True,
                    )
        finally:
            watch.stop.set()
            fib.close()
    report(
        "pod_ready_fib",
        [
            {
                "metric": "pod Ready -> FIB p50",
                "value": percentile(latency, 0.5),
                "unit": "ms",
                "target": 100.0,
            },
            {
                "metric": "pod Ready -> FIB p99",
                "value": percentile(latency, 0.99),
                "unit": "ms",
                "target": 300.0,
            },
            {
                "metric": "pod Ready -> FIB max",
                "value": max(latency),
                "unit": "ms",
                "target": None,
            },
            {
                "metric": "pod Ready -> FIB min",
                "value": min(latency),
                "unit": "ms",
                "target": None,
            },
            {
                "metric": "probe wait (excluded) p50",
                "value": percentile(probe_wait, 0.5),
                "unit": "ms",
                "target": None,
            },
        ],
        {
            "changes": len(latency),
            "router": "bird",
            "nodes": 3,
            "probe_period_seconds": 1,
            "samples_ms": [round(s, 3) for s in latency],
            "probe_wait_ms": [round(s, 1) for s in probe_wait],
            "wall_seconds": round(time.monotonic() - started_all, 1),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
