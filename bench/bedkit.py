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

from porter_lab import netns, objects
from porter_lab.agents import Agent, start_node_speaker
from porter_lab.controlplane import ControlPlane
from porter_lab.kube import apply_crds
from porter_lab.paths import CRD_DIR
from porter_lab.routers import Bird, Neighbor, RouterSpec, established
from porter_lab.speakers import Gobgpd
from porter_lab.topology import EIP_POOL, NODE_ASN, PREFIX_ROOT, ROUTER_ASN, Topology, run_id
from porter_lb.kube.api import KubeAPI, KubeError

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
        self.create(objects.NODES, objects.node(name))
        objects.set_node_status(self.api, name, address=address)

    def base_objects(self, pool: str = EIP_POOL, router_id: str = "") -> None:
        for namespace in (NAMESPACE, SYSTEM_NAMESPACE):
            objects.ensure_namespace(self.api, namespace)
        self.create(objects.EIPS, objects.eip("bench", pool, default=True))
        self.create(objects.BGP_CONFS, objects.bgp_conf(NODE_ASN, router_id))
        self.create(objects.BGP_PEERS, objects.bgp_peer("tor", self.topology.router_address))

    def service_body(self, name: str, policy: str = "Local") -> dict[str, Any]:
        return objects.load_balancer_service(name, NAMESPACE, policy=policy, node_ports=False)

    def slice_body(self, service: str, nodes: list[str]) -> dict[str, Any]:
        return objects.endpoint_slice(f"{service}-slice", NAMESPACE, service, nodes)

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
            speaker, agent = start_node_speaker(
                node, self.plane.kubeconfig, self.workdir, agent_args=("--log-level", "warning")
            )
            self.speakers.append(speaker)
            assert agent is not None
            self.agents.append(agent)
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
