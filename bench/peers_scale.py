"""Benchmark: first start and cold start of porter-lb and MetalLB side by side, at scale.

The bed, one per node count: a real API server, one BIRD router, `--nodes` node namespaces
(real BGP sessions from each node's address), and for each system its own pool and its own
Services (externalTrafficPolicy Local, each Service's endpoints on two nodes):

- porter-lb: an Eip of 10.200.0.0/18, a BgpConf and a BgpPeer selecting every node; Services
  of its loadBalancerClass in namespace `scale-porter`;
- MetalLB v0.15.2 (porter_lab.metallb, native BGP mode): an IPAddressPool of 10.200.64.0/18
  with a BGPAdvertisement and a BGPPeer selecting every node; Services without a class in
  namespace `scale-metallb`; each node's API relay runs all along (it stands in for the pod
  network, not for MetalLB).

Only one system runs at a time. At each point (1,000, 5,000, 10,000 Services: the Services are
added point by point) and for each system, in an order that alternates from point to point:

1. *the floor*: this client clears the status of every Service of the system, one PATCH per
   Service from 16 threads: the API server's write rate for "one status write per Service";
2. *first start*: the system's controller alone (porter-lb without a speaker, MetalLB's has
   none) -> every Service has an IP in status (a watch sees the last one). API writes counted
   from the API server's own metrics;
3. *cold start*: everything the system runs, started at once from nothing (Services already
   have their IPs) -> the router's kernel FIB holds every Service's /32 with exactly its two
   endpoint nodes as next hops. porter-lb twice: node mode (a gobgpd and an agent per node,
   the controller) and central mode (the controller driving one gobgpd, ADD-PATH to the
   router); MetalLB: its controller and a speaker per node. CPU seconds used by all of the
   system's processes until then (and what kube-apiserver and etcd used meanwhile), their
   RSS at that moment, and each process's peak (VmHWM).
   Then everything stopped and the FIB seen empty of that pool.

Both controllers run as one replica (porter-lb with --no-leader-elect; MetalLB's has no
election). The agents log at warning level, MetalLB at warn.

    python bench/peers_scale.py [--services 1000,5000,10000] [--nodes 10,50]

Prints a table (each figure for porter-lb and MetalLB, with the ratio porter-lb / MetalLB)
and writes bench/results/peers_scale.json; bench/plot_scale.py draws it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cpu_seconds, print_side_by_side, report

from porter_lab import metallb, objects
from porter_lab.agents import Agent
from porter_lab.controllers import start_controller
from porter_lab.controlplane import ControlPlane
from porter_lab.fib import FibWatcher
from porter_lab.kube import api_writes, apply_crds
from porter_lab.peers import add_local_service, router_bed
from porter_lab.processes import Daemon
from porter_lab.reliability.churn import rss_kib, status_kib
from porter_lab.routers import Bird
from porter_lab.speakers import Gobgpd
from porter_lab.topology import NODE_ASN, ROUTER_ASN, Topology
from porter_lb.kube.api import KubeAPI

System = Literal["porter-lb", "metallb"]
Run = Literal["porter-lb node", "porter-lb central", "metallb"]
POOLS: dict[System, str] = {"porter-lb": "10.200.0.0/18", "metallb": "10.200.64.0/18"}
NAMESPACES: dict[System, str] = {"porter-lb": "scale-porter", "metallb": "scale-metallb"}
SYSTEM_NAMESPACE = "porter-lb-system"
LABELS: dict[str, str] = {
    "porter-lb": "porter-lb",
    "porter-lb node": "porter-lb (node)",
    "porter-lb central": "porter-lb (central)",
    "metallb": "MetalLB",
}


def peak_kib(pid: int) -> int:
    return status_kib(pid, "VmHWM")


def server_cpu(bed: ScaleBed) -> float:
    """CPU seconds kube-apiserver and etcd have used so far."""
    plane = bed.plane
    return sum(cpu_seconds(d.pid) for d in (plane.apiserver, plane.etcd) if d is not None)


def endpoint_nodes(index: int, nodes: int) -> list[str]:
    """The rule for Service `index`: its endpoints on two neighbouring nodes."""
    return [f"node{index % nodes + 1}", f"node{(index + 1) % nodes + 1}"]


def service_name(system: System, index: int) -> str:
    return f"{'p' if system == 'porter-lb' else 'm'}{index:05d}"


@dataclass
class ScaleBed:
    workdir: Path
    plane: ControlPlane
    api: KubeAPI
    topology: Topology
    router: Bird
    api_client: Any
    services: int = 0
    running: list[Daemon] = field(default_factory=list)
    gobgpds: list[Gobgpd] = field(default_factory=list)
    relays: list[metallb.ApiRelay] = field(default_factory=list)

    @property
    def node_count(self) -> int:
        return len(self.topology.nodes)

    def base_objects(self) -> None:
        for namespace in (*NAMESPACES.values(), SYSTEM_NAMESPACE):
            objects.ensure_namespace(self.api, namespace)
        for node in self.topology.nodes:
            self.api.create(objects.NODES, objects.node(node.name))
            objects.set_node_status(self.api, node.name, address=node.address)
        self.api.create(objects.EIPS, objects.eip("scale", POOLS["porter-lb"], default=True))
        self.api.create(objects.BGP_CONFS, objects.bgp_conf(NODE_ASN))
        self.api.create(objects.BGP_PEERS, objects.bgp_peer("tor", self.topology.router_address))
        apply_crds(self.api_client, metallb.crd_files())
        objects.ensure_namespace(self.api, metallb.NAMESPACE)
        self.api.create(
            metallb.path("ipaddresspools"), metallb.ip_address_pool("scale", POOLS["metallb"])
        )
        self.api.create(
            metallb.path("bgpadvertisements"), metallb.bgp_advertisement("scale", "scale")
        )
        peer = metallb.bgp_peer(
            "tor",
            self.topology.router_address,
            peer_asn=ROUTER_ASN,
            my_asn=NODE_ASN,
            node_labels={},
        )
        peer["spec"].pop("nodeSelectors")  # every node, like the BgpPeer
        self.api.create(metallb.path("bgppeers", "v1beta2"), peer)
        for node in self.topology.nodes:
            self.api.create(
                f"/api/v1/namespaces/{metallb.NAMESPACE}/pods", metallb.speaker_pod(node.name)
            )
            self.relays.append(metallb.ApiRelay(node, self.plane.kubeconfig, self.workdir).start())

    def grow(self, services: int) -> float:
        """Add Services (and their EndpointSlices) of both systems up to `services` each (the
        same cluster whichever runs); the seconds it took."""
        started = time.monotonic()

        def create(item: tuple[System, int]) -> None:
            system, index = item
            name, nodes = service_name(system, index), endpoint_nodes(index, self.node_count)
            add_local_service(self.api, system, NAMESPACES[system], name, nodes)

        work = [(s, i) for i in range(self.services, services) for s in POOLS]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, work))
        self.services = services
        return time.monotonic() - started

    def clear_ips(self, system: System) -> float:
        """One status PATCH per Service of `system` removing its ingress; the seconds."""
        path = objects.services(NAMESPACES[system])
        patch = {"status": {"loadBalancer": {"ingress": None}}}
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: self.api.merge_patch(
                        f"{path}/{service_name(system, i)}/status", patch
                    ),
                    range(self.services),
                )
            )
        return time.monotonic() - started

    def ips(self, system: System) -> dict[int, str]:
        items, _ = self.api.list(objects.services(NAMESPACES[system]))
        found = {}
        for item in items:
            ingress = (item.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
            if ingress:
                found[int(item["metadata"]["name"][1:])] = str(ingress[0]["ip"])
        return found

    def desired(self, system: System) -> dict[str, frozenset[str]]:
        """The rule: each Service's IP as a /32 via its two endpoint nodes' addresses."""
        address = {n.name: n.address for n in self.topology.nodes}
        ips = self.ips(system)
        assert len(ips) == self.services, f"{system}: {len(ips)} of {self.services} have an IP"
        return {
            f"{ip}/32": frozenset(address[n] for n in endpoint_nodes(i, self.node_count))
            for i, ip in ips.items()
        }

    # --- processes ---------------------------------------------------------------------

    def controller(self, system: System, *extra: str) -> Daemon:
        if system == "metallb":
            return metallb.start_controller(self.plane.kubeconfig, self.workdir)
        return start_controller(
            self.plane.kubeconfig,
            self.workdir / "controller.log",
            "--no-leader-elect",
            "--log-level",
            "warning",
            *extra,
            identity="scale",
            namespace=SYSTEM_NAMESPACE,
        )

    def start(self, run: Run) -> dict[str, int]:
        """Start everything `run` runs, at once; each process's pid by role."""
        nodes = self.topology.nodes
        kubeconfig = self.plane.kubeconfig
        pids: dict[str, int] = {}
        if run == "metallb":
            self.running.append(self.controller("metallb"))
            for node in nodes:
                self.running.append(metallb.start_speaker(node, kubeconfig, self.workdir))
        elif run == "porter-lb central":
            gobgpd = Gobgpd(nodes[0].netns, self.workdir / "gobgpd-central")
            self.gobgpds.append(gobgpd)
            launched = threading.Thread(target=gobgpd.start)
            launched.start()
            central = ("--speaker", "central", "--gobgp", gobgpd.target)
            self.running.append(
                self.controller("porter-lb", *central, "--router-id", nodes[0].address)
            )
            launched.join()
        else:
            self.gobgpds.extend(Gobgpd(n.netns, self.workdir / f"gobgpd-{n.name}") for n in nodes)
            with ThreadPoolExecutor(len(nodes)) as pool:
                waiting = [pool.submit(g.start) for g in self.gobgpds]
                self.running.append(self.controller("porter-lb"))
                for node, gobgpd in zip(nodes, self.gobgpds, strict=True):
                    agent = Agent(
                        node.name,
                        gobgpd.target,
                        kubeconfig,
                        self.workdir,
                        extra_args=("--netns", node.netns, "--log-level", "warning"),
                    ).start()
                    assert agent.daemon is not None
                    self.running.append(agent.daemon)
                for done in waiting:
                    done.result()
        for daemon in self.running:
            pids[daemon.name] = daemon.pid
        for gobgpd in self.gobgpds:
            assert gobgpd.daemon is not None
            pids[f"gobgpd {gobgpd.workdir.name}"] = gobgpd.daemon.pid
        return pids

    def stop(self) -> None:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda d: d.stop(), self.running))
            list(pool.map(lambda g: g.stop(), self.gobgpds))
        self.running.clear()
        self.gobgpds.clear()

    def close(self) -> None:
        self.stop()
        for relay in self.relays:
            relay.stop()


@contextlib.contextmanager
def scale_bed(nodes: int) -> Iterator[ScaleBed]:
    root = Path(tempfile.mkdtemp(prefix="porter-scale-"))
    with router_bed(root, nodes, tuple(POOLS.values()), add_paths_rx=True) as base:
        made = ScaleBed(
            root, base.plane, KubeAPI(base.api_client), base.topology, base.router, base.api_client
        )
        try:
            made.base_objects()
            yield made
        finally:
            made.close()


# --- measurements ------------------------------------------------------------------------


class IpWatch:
    """Watches one namespace's Services; `done` is set, and `at` stamped, once `count` of them
    have an IP in status."""

    def __init__(self, api: KubeAPI, namespace: str, count: int) -> None:
        self.api, self.path, self.count = api, objects.services(namespace), count
        self.done = threading.Event()
        self.at = 0.0
        items, self.version = api.list(self.path)
        self.with_ip = {i["metadata"]["name"] for i in items if _has_ip(i)}
        self.watch = api.watch(self.path, self.version, timeout_seconds=600)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for event in self.watch:
            if event.type == "BOOKMARK":
                continue
            name = event.object["metadata"]["name"]
            if event.type != "DELETED" and _has_ip(event.object):
                self.with_ip.add(name)
            else:
                self.with_ip.discard(name)
            if len(self.with_ip) >= self.count and not self.done.is_set():
                self.at = time.monotonic()
                self.done.set()

    def wait(self, timeout: float) -> float:
        if not self.done.wait(timeout):
            raise TimeoutError(f"{len(self.with_ip)} of {self.count} Services have an IP")
        return self.at

    def close(self) -> None:
        self.watch.close()


def _has_ip(service: dict[str, Any]) -> bool:
    return bool((service.get("status") or {}).get("loadBalancer", {}).get("ingress"))


def writes_since(bed: ScaleBed, before: dict[str, float]) -> dict[str, int]:
    after = api_writes(bed.api_client)
    return {k: int(v - before.get(k, 0)) for k, v in after.items() if v - before.get(k, 0)}


def first_start(bed: ScaleBed, system: System) -> dict[str, Any]:
    cleared = bed.clear_ips(system)
    watch = IpWatch(bed.api, NAMESPACES[system], bed.services)
    try:
        before, server_before = api_writes(bed.api_client), server_cpu(bed)
        started = time.monotonic()
        daemon = bed.controller(system)
        bed.running.append(daemon)
        seconds = watch.wait(600) - started
        server = server_cpu(bed) - server_before
        writes = writes_since(bed, before)
        cpu, rss = cpu_seconds(daemon.pid), rss_kib(daemon.pid) / 1024
    finally:
        watch.close()
        bed.stop()
    return {
        "floor_s": cleared,
        "floor_writes_per_s": bed.services / cleared,
        "seconds": seconds,
        "writes": writes,
        "writes_per_service": sum(writes.values()) / bed.services,
        "cpu_s": cpu,
        "server_cpu_s": server,
        "rss_mb": rss,
    }


def fib_is(want: dict[str, frozenset[str]]) -> Callable[[dict[str, frozenset[str]]], bool]:
    def check(routes: dict[str, frozenset[str]]) -> bool:
        return len(routes) >= len(want) and all(routes.get(p) == h for p, h in want.items())

    return check


def fib_without(want: dict[str, frozenset[str]]) -> Callable[[dict[str, frozenset[str]]], bool]:
    return lambda routes: not any(p in routes for p in want)


def cold_start(bed: ScaleBed, run: Run) -> dict[str, Any]:
    system: System = "metallb" if run == "metallb" else "porter-lb"
    want = bed.desired(system)
    watcher = FibWatcher(bed.topology.router_ns)
    try:
        assert fib_without(want)(watcher.routes), f"{run}: routes left from before"
        server_before = server_cpu(bed)
        started = time.monotonic()
        pids = bed.start(run)
        seconds = watcher.wait_until(fib_is(want), 600) - started
        server = server_cpu(bed) - server_before
        cpu = {role: cpu_seconds(pid) for role, pid in pids.items()}
        rss = {role: rss_kib(pid) / 1024 for role, pid in pids.items()}
        peak = {role: peak_kib(pid) / 1024 for role, pid in pids.items()}
        bed.stop()
        watcher.wait_until(fib_without(want), 120)
    finally:
        bed.stop()
        watcher.close()
    controller = next(r for r in pids if "controller" in r)
    per_node = [r for r in pids if r != controller and not r.endswith("central")]
    return {
        "seconds": seconds,
        "cpu_s": sum(cpu.values()),
        "server_cpu_s": server,
        "rss_mb": sum(rss.values()),
        "controller_rss_mb": rss[controller],
        "controller_peak_mb": peak[controller],
        "node_rss_mb": sum(rss[r] for r in per_node) / bed.node_count if per_node else 0.0,
        "max_peak_mb": max(peak.values()),
        "by_role": {"cpu_s": cpu, "rss_mb": rss, "peak_mb": peak},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", default="1000,5000,10000", help="points, comma-separated")
    parser.add_argument("--nodes", default="10,50", help="node counts, comma-separated")
    parser.add_argument(
        "--systems",
        default="porter-lb,metallb",
        help="which to run, comma-separated (default: both; the table needs both for a ratio;"
        " the Services of both are created either way)",
    )
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.services.split(","))
    node_counts = [int(n) for n in args.nodes.split(",")]
    named = set(args.systems.split(","))
    if not named or named - set(POOLS):
        parser.error(f"--systems: each of {sorted(POOLS)}, comma-separated")
    chosen: list[System] = [s for s in POOLS if s in named]
    points: list[dict[str, Any]] = []
    step = 0
    for nodes in node_counts:
        with scale_bed(nodes) as bed:
            for services in sizes:
                grown = bed.grow(services)
                print(
                    f"{nodes} nodes, {services} Services each (added in {grown:.0f} s)", flush=True
                )
                point: dict[str, Any] = {"nodes": nodes, "services": services}
                systems: list[System] = [s for s in ("porter-lb", "metallb") if s in chosen]
                runs: list[Run] = [
                    r
                    for r in ("porter-lb node", "metallb", "porter-lb central")
                    if ("metallb" if r == "metallb" else "porter-lb") in chosen
                ]
                if step % 2:
                    systems.reverse()
                    runs.reverse()
                step += 1
                for system in systems:
                    point[f"first {system}"] = result = first_start(bed, system)
                    print(
                        f"  first start {LABELS[system]}: {result['seconds']:.1f} s, "
                        f"{result['writes_per_service']:.2f} writes/Service "
                        f"(floor: {result['floor_writes_per_s']:.0f} writes/s)",
                        flush=True,
                    )
                for run in runs:
                    point[f"cold {run}"] = result = cold_start(bed, run)
                    print(
                        f"  cold start {LABELS[run]}: {result['seconds']:.2f} s, "
                        f"CPU {result['cpu_s']:.1f} s, RSS {result['rss_mb']:.0f} MB "
                        f"(controller {result['controller_rss_mb']:.0f}, per node "
                        f"{result['node_rss_mb']:.0f})",
                        flush=True,
                    )
                points.append(point)
                # Written after every point: a run cut short keeps what it measured.
                report("peers_scale", [], {"points": points, "table": table(points)}, table=False)
    print_side_by_side(table(points))
    return 0


def table(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of metric, porter-lb's value, MetalLB's and their ratio; not measured: None."""
    rows: list[dict[str, Any]] = []

    def row(metric: str, mine: dict[str, Any], peer: dict[str, Any], field: str, unit: str) -> None:
        rows.append(
            {
                "metric": metric,
                "value": mine.get(field),
                "metallb": peer.get(field),
                "unit": unit,
            }
        )

    for point in points:
        where = f"{point['services']:,} x {point['nodes']}"
        mine, peer = point.get("first porter-lb", {}), point.get("first metallb", {})
        row(f"{where}: first start", mine, peer, "seconds", "s")
        row(f"{where}: API writes per Service", mine, peer, "writes_per_service", "")
        peer = point.get("cold metallb", {})
        for run in ("porter-lb node", "porter-lb central"):
            mine, mode = point.get(f"cold {run}", {}), run.split()[1]
            row(f"{where}: cold start ({mode})", mine, peer, "seconds", "s")
            row(f"{where}: cold start CPU ({mode})", mine, peer, "cpu_s", "s")
            row(f"{where}: API server + etcd CPU ({mode})", mine, peer, "server_cpu_s", "s")
            row(f"{where}: RSS in all ({mode})", mine, peer, "rss_mb", "MB")
    for entry in rows:
        mine, peer = entry["value"], entry["metallb"]
        entry["ratio"] = mine / peer if mine is not None and peer else None
    return rows


if __name__ == "__main__":
    sys.exit(main())
