"""Benchmark: cold start with 10,000 LoadBalancer Services over 50 nodes, central speaker.

The bed: real API server holding 50 Nodes, 10,000 Services (externalTrafficPolicy Local) and
10,000 EndpointSlices (each Service's endpoints on two nodes); BIRD with `add paths rx`; one
gobgpd beside the controller; `porter-lb controller --speaker central` as a process. The
next hops are the 50 nodes' InternalIPs on the router's node subnet (one node namespace is
real and hosts the central gobgpd; BIRD needs no more to install a next hop on a connected
subnet). Timed:

1. *first start*: Services without IPs; controller start -> every Service allocated and all
   10,000 routes (two next hops each) in the router's kernel FIB;
2. *cold start* (the target): controller and gobgpd stopped (the router withdraws
   everything), then both started again -> all 10,000 routes back in the FIB. Peak RSS of
   the controller process (VmHWM) over that start.

Targets: cold start <= 5 s, peak RSS <= 200 MB.

    python bench/cold_start.py [--services 10000] [--nodes 50]
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bedkit import NAMESPACE, Bed, bed
from common import report

from porter_lab import netns, objects
from porter_lab.fib import FibWatcher
from porter_lab.kube import api_writes
from porter_lab.speakers import Gobgpd
from porter_lab.topology import NODE_NET
from porter_lab.waiting import wait_for

POOL = "10.200.0.0/18"  # 16,384 addresses, routed only inside the bed's namespaces (10.200.x.y)


def populate(b: Bed, services: int, nodes: int) -> None:
    for index in range(1, nodes + 1):
        b.add_node(f"node{index}", f"{NODE_NET}.{10 + index}")
    slices = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
    svcs = f"/api/v1/namespaces/{NAMESPACE}/services"

    def create(index: int) -> None:
        name = f"s{index:05d}"
        hosts = [f"node{index % nodes + 1}", f"node{(index + 1) % nodes + 1}"]
        b.api.create(slices, b.slice_body(name, hosts))
        b.api.create(svcs, b.service_body(name))

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        for done, _ in enumerate(pool.map(create, range(services)), 1):
            if done % 2000 == 0:
                print(f"  {done} Services created ({time.monotonic() - started:.0f} s)", flush=True)


def full(services: int) -> Callable[[dict[str, frozenset[str]]], bool]:
    """A cheap test (it runs on every batch of netlink events): at least `services` routes of
    the pool with two next hops. Parsing 10,000 prefixes per batch starved the bed's CPUs."""
    network = ipaddress.ip_network(POOL)
    text_prefix = ".".join(str(network.network_address).split(".")[:2]) + "."

    def check(routes: dict[str, frozenset[str]]) -> bool:
        count = 0
        for prefix, hops in routes.items():
            if len(hops) == 2 and prefix.startswith(text_prefix):
                count += 1
        return count >= services

    return check


class Timeline:
    """Every 0.5 s during the cold start: routes in the FIB, BIRD's session, gobgpd's peer."""

    def __init__(self, b: Bed, watcher: FibWatcher, started: float) -> None:
        self.b, self.watcher, self.started = b, watcher, started
        self.samples: list[dict[str, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Timeline:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sample in self.samples:
            print(f"    {sample}")

    def _run(self) -> None:
        speaker = self.b.speakers[-1].client
        while not self._stop.wait(0.5):
            routes = sum(1 for h in list(self.watcher.routes.values()) if len(h) == 2)
            try:
                peers = speaker.peers() if speaker else []
                peer = peers[0].session_state if peers else "-"
            except Exception as error:  # noqa: BLE001 - gobgpd still starting
                peer = type(error).__name__
            self.samples.append(
                {
                    "t": round(time.monotonic() - self.started, 1),
                    "fib_ecmp_routes": routes,
                    "bird": self.b.router.sessions().get(self.b.topology.nodes[0].address, "-"),
                    "gobgpd_peer": peer,
                }
            )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=50)
    args = parser.parse_args()
    with bed(nodes=1, pools=(POOL,), add_paths_rx=True) as b:
        b.base_objects(pool=POOL, router_id=b.topology.nodes[0].address)
        print(f"creating {args.nodes} Nodes, {args.services} Services and EndpointSlices")
        populate(b, args.services, args.nodes)
        speaker_ns = b.topology.nodes[0].netns
        gobgpd = Gobgpd(speaker_ns, b.workdir / "gobgpd-central")
        gobgpd.start()
        b.speakers.append(gobgpd)
        central = ("--speaker", "central", "--gobgp", gobgpd.target, "--no-leader-elect")
        router_ns = b.topology.router_ns
        watcher = FibWatcher(router_ns)
        try:
            print("first start: allocating and announcing", flush=True)
            started = time.monotonic()
            b.start_controller(*central)
            first = watcher.wait_until(full(args.services), 600) - started
            print(f"  all routes in the FIB after {first:.1f} s", flush=True)

            assert b.controller is not None
            b.controller.terminate()
            b.controller.wait(60)
            gobgpd.stop()
            wait_for(
                lambda: (
                    not full(1)({p: frozenset(h) for p, h in netns.host_routes(router_ns).items()})
                ),
                120,
                "the router to withdraw every route",
            )
            print("stopped controller and gobgpd: FIB empty; cold start", flush=True)
            watcher.close()
            watcher = FibWatcher(router_ns)
            gobgpd.start()
            writes_before = api_writes(b.api.api_client)
            started = time.monotonic()
            b.start_controller(*central)
            timeline = Timeline(b, watcher, started).start()
            cold = watcher.wait_until(full(args.services), 300) - started
            timeline.stop()
            writes = {
                k: v - writes_before.get(k, 0) for k, v in api_writes(b.api.api_client).items()
            }
            writes = {k: v for k, v in writes.items() if v}
            print(f"  API writes during the cold start: {writes or 'none'}", flush=True)
            rss = peak_rss_mb(b.controller.pid)
            print(f"  all routes back after {cold:.2f} s; peak RSS {rss:.0f} MB", flush=True)
            usage = b.api.get(f"{objects.EIPS}/bench")["status"]["usage"]
            assert usage == args.services, usage
        finally:
            watcher.close()
    report(
        "cold_start",
        [
            {
                "metric": f"cold start: {args.services} Services -> FIB",
                "value": cold,
                "unit": "s",
                "target": 5.0,
            },
            {"metric": "controller peak RSS", "value": rss, "unit": "MB", "target": 200.0},
            {
                "metric": "first start incl. allocation -> FIB",
                "value": first,
                "unit": "s",
                "target": None,
            },
        ],
        {
            "services": args.services,
            "nodes": args.nodes,
            "mode": "central",
            "externalTrafficPolicy": "Local (2 nodes each)",
            "fib_overruns": watcher.overruns,
            "cold_timeline": timeline.samples,
            "cold_api_writes": writes,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
