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

Targets (issue 3): cold start <= 5 s, peak RSS <= 200 MB.

    python bench/cold_start.py [--services 10000] [--nodes 50]
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bedkit import GROUP, NAMESPACE, Bed, bed
from common import report

from porter_lab import netns
from porter_lab.fib import FibWatcher
from porter_lab.speakers import Gobgpd
from porter_lab.topology import NODE_NET
from porter_lab.waiting import wait_for

POOL = "10.200.0.0/18"  # 16,384 addresses, routed only inside the bed's namespaces


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


def full(services: int) -> object:
    network = ipaddress.ip_network(POOL)

    def check(routes: dict[str, frozenset[str]]) -> bool:
        count = sum(
            1
            for prefix, hops in routes.items()
            if len(hops) == 2 and ipaddress.ip_network(prefix).subnet_of(network)  # type: ignore[arg-type]
        )
        return count >= services

    return check


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
            started = time.monotonic()
            b.start_controller(*central)
            cold = watcher.wait_until(full(args.services), 300) - started
            rss = peak_rss_mb(b.controller.pid)
            print(f"  all routes back after {cold:.2f} s; peak RSS {rss:.0f} MB", flush=True)
            usage = b.api.get(f"{GROUP}/eips/bench")["status"]["usage"]
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
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
