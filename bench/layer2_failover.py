"""Benchmark: layer-2 announcer loss -> the client's neighbour entry points at the new node.

The bed: real API server, a client and three node namespaces on one bridge
(porter_lab.l2topology), one `porter-lb agent --layer2 --netns NODE` process per node. One
Service (externalTrafficPolicy Cluster) holds 198.51.100.200 from a layer2 Eip on eth0. Each
trial makes the client resolve the EIP (HTTP to it), takes the announcer away, and times from
just before that until the client kernel's neighbour entry for the EIP holds the next node's
MAC, read from netlink neighbour events (no polling). Then the node comes back, takes its IP
back after its join delay, and the next trial starts.

Ways to lose the announcer (each `--trials` times):
  kill  SIGKILL of its agent: nothing is released; the others wait for its heartbeat Lease to
        expire (0.75 s after the last renewal they saw) — the crash path;
  stop  SIGTERM: it stops answering and releases its Lease — the graceful path;
  cut   its bridge port goes down (carrier lost); its agent, in the host namespace, still
        heartbeats, and publishes the Eip as unusable in its Lease.
Target: <= 1 s. MetalLB documents "a few seconds", Cilium 2-4 s tuned.

    python bench/layer2_failover.py [--trials 20] [--modes kill,stop,cut]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import percentile, report

from porter_lab import netns, objects
from porter_lab.agents import Agent
from porter_lab.controlplane import ControlPlane
from porter_lab.kube import apply_crds
from porter_lab.l2topology import EIP_RANGE, L2Topology, http_get
from porter_lab.l2watch import NeighborWatcher
from porter_lab.paths import CRD_DIR
from porter_lab.topology import PREFIX_ROOT, run_id
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI
from porter_lb.layer2.election import rank

EIP = "198.51.100.200"
SYSTEM_NAMESPACE = "porter-lb-system"
NAMESPACE = "bench"
TARGET = 1.0


def _objects(api: KubeAPI, topology: L2Topology) -> None:
    for namespace in (SYSTEM_NAMESPACE, NAMESPACE):
        objects.ensure_namespace(api, namespace)
    for node in topology.nodes:
        api.create(objects.NODES, objects.node(node.name))
        objects.set_node_status(api, node.name, address=node.address)
    api.create(objects.EIPS, objects.eip("l2", EIP_RANGE, layer2_interface="eth0"))
    services = objects.services(NAMESPACE)
    api.create(services, objects.load_balancer_service("web", NAMESPACE))
    api.merge_patch(f"{services}/web/status", objects.load_balancer_status(EIP))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--modes", default="kill,stop,cut")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    workdir = Path(tempfile.mkdtemp(prefix="porter-bench-l2-"))
    plane = ControlPlane(workdir / "controlplane")
    topology = L2Topology(run_id(), node_count=3)
    agents: dict[str, Agent] = {}
    down: set[str] = set()  # agents taken away on purpose
    samples: dict[str, list[float]] = {m: [] for m in modes}
    started_all = time.monotonic()
    try:
        plane.start()
        from kubernetes import config

        api_client = config.new_client_from_config(config_file=str(plane.kubeconfig))
        apply_crds(api_client, sorted(CRD_DIR.glob("*.yaml")))
        api = KubeAPI(api_client)
        topology.create()
        topology.serve_http(workdir)
        topology.accept_eip(EIP)
        _objects(api, topology)

        def start(node: str) -> None:
            agents[node] = Agent(
                node,
                f"unix://{workdir}/no-gobgpd-{node}.sock",
                plane.kubeconfig,
                workdir,
                namespace=SYSTEM_NAMESPACE,
                extra_args=(
                    "--layer2",
                    "--netns",
                    topology.node(node).netns,
                    "--log-level",
                    "info",
                ),
            ).start()

        for node in topology.nodes:
            start(node.name)
        first, second, _ = rank(EIP, [n.name for n in topology.nodes])
        mac = {n.name: topology.mac(n.netns) for n in topology.nodes}
        neighbors = NeighborWatcher(topology.client_ns)

        def resolved_to(node: str) -> bool:
            for name, agent in agents.items():
                if name not in down:
                    agent.check_running()
            body = http_get(topology.client_ns, EIP, timeout=1.0)
            return body.startswith(f"{node} ") and neighbors.get(EIP) == mac[node]

        wait_for(lambda: resolved_to(first), 30, f"the client to reach {EIP} at {first}")
        print(f"bed up; announcer {first}, next {second}", flush=True)
        for mode in modes:
            for trial in range(args.trials):
                wait_for(lambda: resolved_to(first), 15, f"{first} announcing again")
                started = time.monotonic()
                if mode == "kill":
                    down.add(first)
                    agents[first].kill()
                elif mode == "stop":
                    down.add(first)
                    agents[first].stop()
                else:
                    topology.cut(first)
                moved = neighbors.wait(EIP, mac[second], 10)
                samples[mode].append(moved - started)
                wait_for(lambda: resolved_to(second), 10, f"HTTP via {second}")
                if mode == "cut":
                    topology.mend(first)
                else:
                    start(first)
                    down.discard(first)
                neighbors.wait(EIP, mac[first], 20)
                print(f"{mode} {trial + 1}: {samples[mode][-1] * 1000:.0f} ms", flush=True)
        neighbors.close()
    finally:
        for agent in agents.values():
            agent.stop()
        topology.destroy()
        plane.stop()
        netns.remove_all(f"{PREFIX_ROOT}{topology.run}")

    rows = []
    for mode in modes:
        values = samples[mode]
        rows += [
            {
                "metric": f"{mode}: p50",
                "value": percentile(values, 0.5),
                "unit": "s",
                "target": TARGET,
            },
            {"metric": f"{mode}: max", "value": max(values), "unit": "s", "target": TARGET},
            {"metric": f"{mode}: min", "value": min(values), "unit": "s", "target": None},
        ]
    report(
        "layer2_failover",
        rows,
        {
            "trials": args.trials,
            "samples_seconds": samples,
            "heartbeat": {"interval_s": 0.25, "timeout_s": 0.75},
            "total_seconds": round(time.monotonic() - started_all, 1),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
