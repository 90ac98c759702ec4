"""porter-lb and MetalLB side by side on one bed (bench/peers.py, tests/bed/test_peers.py).

One real API server, one BIRD router (AS 65000) and four node namespaces (AS 65001): node1
and node2 run porter-lb (a gobgpd and a `porter-lb agent` each, the `porter-lb controller`
in the host's namespace), node3 and node4 run MetalLB in native BGP mode (a speaker each, its
controller in the host's namespace; porter_lab.metallb). Each system has the same work: one
pool (an Eip / an IPAddressPool with a BGPAdvertisement), one peer selecting its two nodes by
label (a BgpPeer / a BGPPeer, hold time 9 s), and Services with externalTrafficPolicy Local
whose EndpointSlices the caller moves between its nodes. porter-lb's Services carry its
loadBalancerClass, which MetalLB leaves alone; MetalLB's carry none, which porter-lb leaves
alone. Both run at once, so their changes can alternate one by one and the machine's drift
falls on both alike.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from porter_lab import metallb, netns, objects
from porter_lab.agents import Agent, start_node_speaker
from porter_lab.controllers import start_controller
from porter_lab.controlplane import ControlPlane
from porter_lab.kube import apply_crds
from porter_lab.paths import CRD_DIR
from porter_lab.processes import Daemon
from porter_lab.routers import Bird, Neighbor, RouterSpec, established
from porter_lab.speakers import Gobgpd
from porter_lab.topology import EIP_POOL, NODE_ASN, PREFIX_ROOT, ROUTER_ASN, Node, Topology, run_id
from porter_lb.kube.api import KubeAPI

System = Literal["porter-lb", "metallb"]
SYSTEMS: tuple[System, System] = ("porter-lb", "metallb")
POOLS: dict[System, str] = {"porter-lb": "203.0.113.0/27", "metallb": "203.0.113.64/27"}
PEER_LABEL = "bench.porter-lb.io/peer"
NAMESPACE = "peers"
SYSTEM_NAMESPACE = "porter-lb-system"


@dataclass
class PeersBed:
    workdir: Path
    plane: ControlPlane
    api: KubeAPI
    topology: Topology
    router: Bird
    api_client: Any
    daemons: dict[System, list[Daemon]] = field(
        default_factory=lambda: {"porter-lb": [], "metallb": []}
    )
    agents: list[Agent] = field(default_factory=list)
    gobgpds: list[Gobgpd] = field(default_factory=list)
    relays: list[metallb.ApiRelay] = field(default_factory=list)
    services: dict[str, tuple[System, list[str]]] = field(default_factory=dict)
    agent_args: tuple[str, ...] = ("--log-level", "warning")

    def nodes(self, system: System) -> list[Node]:
        """node1, node2: porter-lb; node3, node4: MetalLB."""
        first = 0 if system == "porter-lb" else 2
        return self.topology.nodes[first : first + 2]

    def base_objects(self) -> None:
        for namespace in (NAMESPACE, SYSTEM_NAMESPACE):
            objects.ensure_namespace(self.api, namespace)
        for system in SYSTEMS:
            for node in self.nodes(system):
                self.api.create(objects.NODES, objects.node(node.name, {PEER_LABEL: system}))
                objects.set_node_status(self.api, node.name, address=node.address)
        # porter-lb
        self.api.create(objects.EIPS, objects.eip("peers", POOLS["porter-lb"], default=True))
        self.api.create(objects.BGP_CONFS, objects.bgp_conf(NODE_ASN))
        self.api.create(
            objects.BGP_PEERS,
            objects.bgp_peer(
                "tor", self.topology.router_address, node_labels={PEER_LABEL: "porter-lb"}
            ),
        )
        # MetalLB: the same pool size, the same peer, the same hold time
        apply_crds(self.api_client, metallb.crd_files())
        objects.ensure_namespace(self.api, metallb.NAMESPACE)
        pool = metallb.ip_address_pool("peers", POOLS["metallb"])
        self.api.create(metallb.path("ipaddresspools"), pool)
        self.api.create(
            metallb.path("bgpadvertisements"), metallb.bgp_advertisement("peers", "peers")
        )
        self.api.create(
            metallb.path("bgppeers", "v1beta2"),
            metallb.bgp_peer(
                "tor",
                self.topology.router_address,
                peer_asn=ROUTER_ASN,
                my_asn=NODE_ASN,
                node_labels={PEER_LABEL: "metallb"},
            ),
        )
        for node in self.nodes("metallb"):
            self.api.create(
                f"/api/v1/namespaces/{metallb.NAMESPACE}/pods", metallb.speaker_pod(node.name)
            )

    def start(self) -> None:
        kubeconfig = self.plane.kubeconfig
        for node in self.nodes("porter-lb"):
            gobgpd, agent = start_node_speaker(
                node, kubeconfig, self.workdir, agent_args=self.agent_args
            )
            self.gobgpds.append(gobgpd)
            assert agent is not None
            self.agents.append(agent)
        self.daemons["porter-lb"].append(
            start_controller(
                kubeconfig,
                self.workdir / "controller.log",
                "--log-level",
                "warning",
                identity="peers",
                namespace=SYSTEM_NAMESPACE,
            )
        )
        self.daemons["metallb"].append(metallb.start_controller(kubeconfig, self.workdir))
        for node in self.nodes("metallb"):
            self.relays.append(metallb.ApiRelay(node, kubeconfig, self.workdir).start())
            self.daemons["metallb"].append(metallb.start_speaker(node, kubeconfig, self.workdir))
        established(self.router, timeout=60)

    def add_service(self, system: System, name: str, nodes: list[str]) -> None:
        add_local_service(self.api, system, NAMESPACE, name, nodes)
        self.services[name] = (system, nodes)

    def move(self, name: str, nodes: list[str]) -> None:
        body = objects.endpoint_slice(f"{name}-1", NAMESPACE, name, nodes)
        self.api.merge_patch(
            f"{objects.endpoint_slices(NAMESPACE)}/{name}-1", {"endpoints": body["endpoints"]}
        )
        self.services[name] = (self.services[name][0], nodes)

    def ingress(self) -> dict[str, list[str]]:
        items, _ = self.api.list(objects.services(NAMESPACE))
        return {
            s["metadata"]["name"]: [
                str(i["ip"])
                for i in (s.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
            ]
            for s in items
        }

    def desired(self, ips: dict[str, str]) -> dict[str, frozenset[str]]:
        """The rule: each Service's IP as a /32 via its endpoint nodes' addresses (none: no
        route)."""
        address = {n.name: n.address for n in self.topology.nodes}
        return {
            f"{ips[name]}/32": frozenset(address[n] for n in nodes)
            for name, (_system, nodes) in self.services.items()
            if nodes
        }

    def pids(self, system: System) -> dict[str, int]:
        """Each process of `system` by role: "controller", "speaker nodeN", "gobgpd nodeN"."""
        found: dict[str, int] = {}
        if system == "porter-lb":
            found["controller"] = self.daemons["porter-lb"][0].pid
            for agent, gobgpd, node in zip(
                self.agents, self.gobgpds, self.nodes("porter-lb"), strict=True
            ):
                assert agent.daemon is not None and gobgpd.daemon is not None
                found[f"speaker {node.name}"] = agent.daemon.pid
                found[f"gobgpd {node.name}"] = gobgpd.daemon.pid
        else:
            controller, *speakers = self.daemons["metallb"]
            found["controller"] = controller.pid
            for speaker, node in zip(speakers, self.nodes("metallb"), strict=True):
                found[f"speaker {node.name}"] = speaker.pid
        return found

    def check_running(self) -> None:
        for agent in self.agents:
            agent.check_running()
        for daemons in self.daemons.values():
            for daemon in daemons:
                daemon.check_running()

    def stop(self) -> None:
        for daemons in self.daemons.values():
            for daemon in reversed(daemons):
                daemon.stop()
        for agent in self.agents:
            agent.stop()
        for gobgpd in self.gobgpds:
            gobgpd.stop()
        for relay in self.relays:
            relay.stop()


def add_local_service(
    api: KubeAPI, system: System, namespace: str, name: str, nodes: list[str]
) -> None:
    """A LoadBalancer Service of `system`'s (externalTrafficPolicy Local, no node ports) and
    its EndpointSlice `NAME-1` with an endpoint on each of `nodes`."""
    api.create(
        objects.endpoint_slices(namespace),
        objects.endpoint_slice(f"{name}-1", namespace, name, nodes),
    )
    api.create(
        objects.services(namespace),
        objects.load_balancer_service(
            name, namespace, policy="Local", porter=system == "porter-lb", node_ports=False
        ),
    )


@dataclass(frozen=True)
class RouterBed:
    """What every side-by-side bed starts from (see router_bed)."""

    plane: ControlPlane
    api_client: Any
    topology: Topology
    router: Bird


@contextlib.contextmanager
def router_bed(
    root: Path, node_count: int, pools: tuple[str, ...], *, add_paths_rx: bool = False
) -> Iterator[RouterBed]:
    """A real API server with porter-lb's CRDs, `node_count` node namespaces and one BIRD
    router (AS 65000) peering with each node (AS 65001), accepting routes of `pools`; all
    of it stopped and removed after. bench/peers_scale.py builds its bed on it too."""
    plane = ControlPlane(root / "controlplane")
    topology = Topology(run_id(), node_count=node_count)
    router: Bird | None = None
    try:
        plane.start()
        from kubernetes import config

        api_client = config.new_client_from_config(config_file=str(plane.kubeconfig))
        apply_crds(api_client, sorted(CRD_DIR.glob("*.yaml")))
        topology.create()
        spec = RouterSpec(
            asn=ROUTER_ASN,
            router_id=topology.router_address,
            neighbors=tuple(Neighbor(n.address, NODE_ASN, n.name) for n in topology.nodes),
            pools=pools,
            add_paths_rx=add_paths_rx,
        )
        router = Bird(topology.router_ns, spec, root / "bird").start()
        yield RouterBed(plane, api_client, topology, router)
    finally:
        if router is not None:
            router.stop()
        topology.destroy()
        plane.stop()
        netns.remove_all(f"{PREFIX_ROOT}{topology.run}")


@contextlib.contextmanager
def peers_bed(
    workdir: Path | None = None, agent_args: tuple[str, ...] = ("--log-level", "warning")
) -> Iterator[PeersBed]:
    """The running bed (see the module docstring); everything is stopped and removed after.
    `agent_args`: added to each porter-lb agent's command line (e.g. a debug log level)."""
    root = workdir or Path(tempfile.mkdtemp(prefix="porter-peers-"))
    with router_bed(root, 4, (EIP_POOL,)) as base:
        made = PeersBed(
            root,
            base.plane,
            KubeAPI(base.api_client),
            base.topology,
            base.router,
            base.api_client,
            agent_args=agent_args,
        )
        try:
            made.base_objects()
            made.start()
            yield made
        finally:
            made.stop()
