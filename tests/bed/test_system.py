"""The whole runtime on the bed: `porter-lb controller` and the speakers as processes, Services
in, the router's FIB out — nobody writes a Service status by hand here.

Per-node mode: one `porter-lb agent` per node. Central mode: the controller drives one gobgpd
(`--speaker central`). Against BIRD and FRR. Restarting the controller changes no IP and never
takes a next hop out of the router's FIB.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_lab import netns, objects
from porter_lab.agents import Agent
from porter_lab.controlplane import ControlPlane
from porter_lab.routers import Bird, Frr, Neighbor, Router, RouterSpec, established
from porter_lab.speakers import Gobgpd
from porter_lab.topology import NODE_ASN, ROUTER_ASN, Topology, run_id
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI, KubeError

POOL = "203.0.113.160/28"  # inside the routers' accepted EIP pool
SYSTEM_NAMESPACE = "porter-lb-system"


@dataclass
class System:
    api: KubeAPI
    topology: Topology
    kubeconfig: Path
    workdir: Path
    tag: str = field(default_factory=run_id)
    created: list[str] = field(default_factory=list)
    controller: subprocess.Popen[bytes] | None = None
    controller_args: tuple[str, ...] = ()
    starts: int = 0

    @property
    def namespace(self) -> str:
        return f"sys-{self.tag}"

    def create(self, collection: str, body: dict[str, Any]) -> None:
        self.api.create(collection, body)
        self.created.append(f"{collection}/{body['metadata']['name']}")

    def setup(self) -> None:
        for namespace in (self.namespace, SYSTEM_NAMESPACE):
            objects.ensure_namespace(self.api, namespace)
        for node in self.topology.nodes:
            self.create(objects.NODES, objects.node(node.name))
            objects.set_node_status(self.api, node.name, address=node.address)
        self.create(objects.EIPS, objects.eip(f"sys-{self.tag}", POOL, default=True))
        self.create(objects.BGP_CONFS, objects.bgp_conf(NODE_ASN))
        self.create(
            objects.BGP_PEERS, objects.bgp_peer(f"tor-{self.tag}", self.topology.router_address)
        )

    def start_controller(self, *args: str) -> None:
        self.controller_args = args or self.controller_args
        self.starts += 1
        log = (self.workdir / f"controller-{self.starts}.log").open("wb")
        self.controller = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "porter_lb",
                "controller",
                "--kubeconfig",
                str(self.kubeconfig),
                "--namespace",
                SYSTEM_NAMESPACE,
                "--identity",
                f"controller-{self.starts}",
                "--retry-period",
                "0.5",
                "--log-format",
                "text",
                *self.controller_args,
            ],
            stdout=log,
            stderr=log,
        )

    def stop_controller(self) -> None:
        assert self.controller is not None
        self.controller.terminate()
        assert self.controller.wait(20) == 0

    def service(self, name: str, policy: str, endpoints: list[str]) -> str:
        self.create(
            objects.endpoint_slices(self.namespace),
            objects.endpoint_slice(f"{name}-1", self.namespace, name, endpoints),
        )
        self.create(
            objects.services(self.namespace),
            objects.load_balancer_service(name, self.namespace, policy=policy),
        )
        return str(wait_for(lambda: self.ip(name), 20, f"an IP for Service {name}"))

    def ip(self, name: str) -> str:
        service = self.api.get(f"/api/v1/namespaces/{self.namespace}/services/{name}")
        ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        return str(ingress[0]["ip"]) if ingress else ""

    def cleanup(self) -> None:
        for path in reversed(self.created):
            if "/services/" in path and self.controller and self.controller.poll() is None:
                self.api.delete(path)
                wait_for(lambda p=path: _gone(self.api, p), 20, f"{path} released")
        if self.controller is not None and self.controller.poll() is None:
            self.controller.terminate()
            self.controller.wait(20)
        for path in reversed(self.created):
            objects.delete_if_present(self.api, path)
            if "/services/" in path:  # a finalizer left by a failed run: let it go
                try:
                    self.api.merge_patch(path, {"metadata": {"finalizers": None}})
                except KubeError as error:
                    assert error.status == 404


def _gone(api: KubeAPI, path: str) -> bool:
    try:
        api.get(path)
    except KubeError as error:
        return error.status == 404
    return False


class FibSampler:
    """Reads the router's FIB for some prefixes over and over: did a next hop ever go?"""

    def __init__(self, router_ns: str, expected: dict[str, set[str]]) -> None:
        self.router_ns, self.expected = router_ns, expected
        self.samples = 0
        self.missing: list[tuple[str, set[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for prefix, hops in self.expected.items():
                seen = netns.next_hops(self.router_ns, prefix)
                if not hops <= seen:
                    self.missing.append((prefix, seen))
            self.samples += 1

    def __enter__(self) -> FibSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def make_router(kind: str, topology: Topology, workdir: Path, *, central: bool) -> Router:
    nodes = topology.nodes[:1] if central else topology.nodes
    spec = RouterSpec(
        asn=ROUTER_ASN,
        router_id=topology.router_address,
        neighbors=tuple(Neighbor(n.address, NODE_ASN, n.name) for n in nodes),
        pools=(POOL,),
        add_paths_rx=central,
    )
    if kind == "bird":
        return Bird(topology.router_ns, spec, workdir / "bird").start()
    return Frr(topology.router_ns, spec).start()


@pytest.fixture
def system(
    api_client: client.ApiClient,
    crds: list[str],
    topology: Topology,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> Iterator[System]:
    made = System(KubeAPI(api_client), topology, control_plane.kubeconfig, tmp_path)
    try:
        made.setup()
        yield made
    finally:
        made.cleanup()


def fib(system: System, routes: dict[str, set[str]], what: str) -> None:
    address = {n.name: n.address for n in system.topology.nodes}
    wanted = {f"{ip}/32": {address[n] for n in nodes} for ip, nodes in routes.items()}
    wait_for(
        lambda: all(netns.next_hops(system.topology.router_ns, p) == h for p, h in wanted.items()),
        20,
        f"router FIB {what}: {wanted}",
        interval=0.05,
    )


def story(system: System) -> None:
    """Allocate, announce, follow endpoints, restart the controller without a blip."""
    local = system.service("local", "Local", ["node2"])
    cluster = system.service("cluster", "Cluster", [])
    assert local != cluster
    fib(system, {local: {"node2"}, cluster: {"node1", "node2"}}, "first announcement")

    expected = {f"{local}/32": {system.topology.nodes[1].address}}
    with FibSampler(system.topology.router_ns, expected) as sampler:
        system.stop_controller()
        system.start_controller()
        # The new controller has resynced: a change made now is followed.
        slice_path = (
            f"/apis/discovery.k8s.io/v1/namespaces/{system.namespace}/endpointslices/cluster-1"
        )
        system.api.merge_patch(slice_path, {"endpoints": [{"addresses": ["10.244.9.9"]}]})
        system.api.merge_patch(
            f"/api/v1/namespaces/{system.namespace}/services/cluster",
            {"spec": {"externalTrafficPolicy": "Local"}},
        )
        fib(system, {cluster: set()}, "Local without a node-bound endpoint: withdrawn")
    assert sampler.samples > 10
    assert sampler.missing == [], "a next hop left the FIB while the controller restarted"
    assert system.ip("local") == local and system.ip("cluster") == cluster


@pytest.mark.parametrize("kind", ["bird", "frr"])
def test_per_node_agents_and_controller(system: System, kind: str, tmp_path: Path) -> None:
    router = make_router(kind, system.topology, tmp_path, central=False)
    speakers: list[Gobgpd] = []
    agents: list[Agent] = []
    try:
        for node in system.topology.nodes:
            speaker = Gobgpd(node.netns, tmp_path / f"gobgpd-{node.name}")
            speaker.start()
            speakers.append(speaker)
            agents.append(Agent(node.name, speaker.target, system.kubeconfig, tmp_path).start())
        system.start_controller()
        established(router)
        story(system)
        for agent in agents:
            agent.check_running()
    finally:
        for agent in agents:
            agent.stop()
        for speaker in speakers:
            speaker.stop()
        router.stop()


@pytest.mark.parametrize("kind", ["bird", "frr"])
def test_central_speaker_in_the_controller(system: System, kind: str, tmp_path: Path) -> None:
    router = make_router(kind, system.topology, tmp_path, central=True)
    speaker = Gobgpd(system.topology.nodes[0].netns, tmp_path / "gobgpd-central")
    try:
        speaker.start()
        system.start_controller(
            "--speaker",
            "central",
            "--gobgp",
            speaker.target,
            "--router-id",
            system.topology.nodes[0].address,
        )
        established(router)
        story(system)
    finally:
        speaker.stop()
        router.stop()
