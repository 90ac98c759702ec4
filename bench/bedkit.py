"""The benchmarks' bed: control plane, router, node namespaces, gobgpd, agents, controller.

Everything is the real thing, started the way the tests start it (porter_lab), and torn down
at the end whatever happens. Objects are created through the API server.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from porter_lab import netns
from porter_lab.agents import Agent
from porter_lab.controlplane import ControlPlane
from porter_lab.kube import apply_crds
from porter_lab.paths import CRD_DIR
from porter_lab.routers import Bird, Neighbor, RouterSpec, established
from porter_lab.speakers import Gobgpd
from porter_lab.topology import EIP_POOL, NODE_ASN, PREFIX_ROOT, ROUTER_ASN, Topology, run_id
from porter_lb.kubeapi import KubeAPI, KubeError
from porter_lb.model import LOAD_BALANCER_CLASS, SERVICE_NAME_LABEL

GROUP = "/apis/network.kubesphere.io/v1alpha2"
NAMESPACE = "bench"
SYSTEM_NAMESPACE = "porter-lb-system"


@dataclass
class Bed:
    workdir: Path
    plane: ControlPlane
    api: KubeAPI
    topology: Topology
    router: Bird
    speakers: list[Gobgpd] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    controller: subprocess.Popen[bytes] | None = None

    def node_name(self, index: int) -> str:
        return f"node{index}"

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.api.create(path, body)
        except KubeError as error:
            if error.status != 409:
                raise
            return {}

    def add_node(self, name: str, address: str) -> None:
        self.create("/api/v1/nodes", {"metadata": {"name": name}, "spec": {}})
        self.api.merge_patch(
            f"/api/v1/nodes/{name}/status",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                            "lastTransitionTime": "2026-01-01T00:00:00Z",
                        }
                    ],
                    "addresses": [{"type": "InternalIP", "address": address}],
                }
            },
        )

    def base_objects(self, pool: str = EIP_POOL, router_id: str = "") -> None:
        for namespace in (NAMESPACE, SYSTEM_NAMESPACE):
            self.create("/api/v1/namespaces", {"metadata": {"name": namespace}})
        self.create(
            f"{GROUP}/eips",
            {
                "apiVersion": "network.kubesphere.io/v1alpha2",
                "kind": "Eip",
                "metadata": {
                    "name": "bench",
                    "annotations": {"eip.openelb.kubesphere.io/is-default-eip": "true"},
                },
                "spec": {"address": pool},
            },
        )
        self.create(
            f"{GROUP}/bgpconfs",
            {
                "apiVersion": "network.kubesphere.io/v1alpha2",
                "kind": "BgpConf",
                "metadata": {"name": "default"},
                "spec": {"as": NODE_ASN, **({"routerId": router_id} if router_id else {})},
            },
        )
        self.create(
            f"{GROUP}/bgppeers",
            {
                "apiVersion": "network.kubesphere.io/v1alpha2",
                "kind": "BgpPeer",
                "metadata": {"name": "tor"},
                "spec": {
                    "conf": {"neighborAddress": self.topology.router_address, "peerAs": ROUTER_ASN},
                    "timers": {
                        "config": {"holdTime": "9", "keepaliveInterval": "3", "connectRetry": "1"}
                    },
                },
            },
        )

    def service_body(self, name: str, policy: str = "Local") -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "type": "LoadBalancer",
                "loadBalancerClass": LOAD_BALANCER_CLASS,
                "externalTrafficPolicy": policy,
                # 10,000 Services would exhaust the NodePort range; a BGP LB needs none.
                "allocateLoadBalancerNodePorts": False,
                "selector": {"app": name},
                "ports": [{"port": 80, "protocol": "TCP"}],
            },
        }

    def slice_body(self, service: str, nodes: list[str]) -> dict[str, Any]:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-slice",
                "namespace": NAMESPACE,
                "labels": {SERVICE_NAME_LABEL: service},
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": [f"10.244.{i // 250}.{i % 250 + 1}"],
                    "nodeName": node,
                    "conditions": {"ready": True},
                }
                for i, node in enumerate(nodes)
            ],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }

    def start_controller(self, *extra: str) -> None:
        log = (self.workdir / "controller.log").open("wb")
        self.controller = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "porter_lb",
                "controller",
                "--kubeconfig",
                str(self.plane.kubeconfig),
                "--namespace",
                SYSTEM_NAMESPACE,
                "--log-level",
                "info",
                *extra,
            ],
            stdout=log,
            stderr=log,
        )

    def start_agents(self) -> None:
        for node in self.topology.nodes:
            speaker = Gobgpd(node.netns, self.workdir / f"gobgpd-{node.name}")
            speaker.start()
            self.speakers.append(speaker)
            agent = Agent(
                node.name,
                speaker.target,
                self.plane.kubeconfig,
                self.workdir,
                extra_args=("--log-level", "warning"),
            )
            self.agents.append(agent.start())
        established(self.router, timeout=30)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.controller.wait(20)
            if self.controller.poll() is None:
                self.controller.kill()
        for agent in self.agents:
            agent.stop()
        for speaker in self.speakers:
            speaker.stop()
        self.router.stop()
        self.topology.destroy()
        self.plane.stop()


@contextlib.contextmanager
def bed(
    nodes: int, *, pools: tuple[str, ...] = (EIP_POOL,), add_paths_rx: bool = False
) -> Iterator[Bed]:
    """A running bed with `nodes` node namespaces peering with one BIRD router."""
    workdir = Path(tempfile.mkdtemp(prefix="porter-bench-"))
    plane = ControlPlane(workdir / "controlplane")
    plane.start()
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=str(plane.kubeconfig))
    apply_crds(api_client, sorted(CRD_DIR.glob("*.yaml")))
    topology = Topology(run_id(), node_count=nodes)
    router = None
    try:
        topology.create()
        spec = RouterSpec(
            asn=ROUTER_ASN,
            router_id=topology.router_address,
            neighbors=tuple(Neighbor(n.address, NODE_ASN, n.name) for n in topology.nodes),
            pools=pools,
            add_paths_rx=add_paths_rx,
        )
        router = Bird(topology.router_ns, spec, workdir / "bird").start()
        made = Bed(workdir, plane, KubeAPI(api_client), topology, router)
        try:
            yield made
        finally:
            made.stop()
    finally:
        if router is None:
            topology.destroy()
            plane.stop()
        netns.remove_all(f"{PREFIX_ROOT}{topology.run}")
