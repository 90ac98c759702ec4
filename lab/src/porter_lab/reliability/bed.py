"""The bed the fault scenarios share: a cluster of its own and the network beside it.

Its own etcd and kube-apiserver; BIRD or FRR in a router namespace; three node namespaces.
Per-node mode: a gobgpd and a `porter-lb agent` on every node. Central mode: a gobgpd on each
of the first `central_speakers` nodes, for controllers to drive (`--speaker central`); the
scenario starts those. N LoadBalancer Services (externalTrafficPolicy Local, endpoints on two
of the three nodes, so each /32 has its own pair of next hops) come from one pool.

`ServiceBed` holds what every scenario needs (objects, Services, the desired FIB, waiting for
convergence); a scenario's bed subclasses it with its own processes (`running_bed` builds one).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from porter_lab import objects
from porter_lab.agents import Agent, start_node_speaker
from porter_lab.apiproxy import APIProxy
from porter_lab.controlplane import ControlPlane
from porter_lab.fib import FibLog
from porter_lab.kube import apply_crds
from porter_lab.paths import CRD_DIR
from porter_lab.routers import BfdTimers, Bird, Frr, Neighbor, Router, RouterSpec
from porter_lab.speakers import Gobgpd
from porter_lab.topology import NODE_ASN, ROUTER_ASN, Node, Topology, run_id
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI

SYSTEM_NAMESPACE = "porter-lb-system"
EIP_NAME = "bed"

Mode = Literal["node", "central"]
RouterKind = Literal["bird", "frr"]
# How a dual-stack bed's router learns IPv6 routes: over the IPv4 sessions (MP-BGP), or over
# IPv6 sessions of their own beside them (router 2001:db8:198::1, each node's IPv6 address).
IPv6Sessions = Literal["mp-bgp", "v6-session"]


@dataclass
class ServiceBed:
    workdir: Path
    plane: ControlPlane
    api: KubeAPI  # straight to the API server: the scenario's own view
    topology: Topology
    router: Router
    mode: Mode
    pool: str
    namespace: str  # where the Services live
    kubeconfig: Path  # what porter-lb's processes use (through `proxy` when there is one)
    proxy: APIProxy | None = None
    speakers: list[Gobgpd] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    services: dict[str, list[str]] = field(default_factory=dict)  # name -> endpoint nodes

    # -- cluster objects ------------------------------------------------------------------

    def base_objects(self, router_id: str = "") -> None:
        for namespace in (self.namespace, SYSTEM_NAMESPACE):
            objects.ensure_namespace(self.api, namespace)
        for node in self.topology.nodes:
            self.api.create(objects.NODES, objects.node(node.name))
            objects.set_node_status(self.api, node.name, address=node.addresses)
        self.api.create(objects.EIPS, objects.eip(EIP_NAME, self.pool, default=True))
        self.api.create(objects.BGP_CONFS, objects.bgp_conf(NODE_ASN, router_id))
        self.api.create(objects.BGP_PEERS, objects.bgp_peer("tor", self.topology.router_address))

    def endpoint_nodes(self, index: int) -> list[str]:
        names = [n.name for n in self.topology.nodes]
        return [names[index % len(names)], names[(index + 1) % len(names)]]

    def add_service(self, name: str, nodes: list[str]) -> None:
        self.api.create(
            objects.endpoint_slices(self.namespace),
            objects.endpoint_slice(f"{name}-1", self.namespace, name, nodes),
        )
        self.api.create(
            objects.services(self.namespace),
            objects.load_balancer_service(name, self.namespace, policy="Local", node_ports=False),
        )
        self.services[name] = nodes

    def add_services(self, count: int, prefix: str = "s", start: int = 0) -> list[str]:
        names = [f"{prefix}{i:05d}" for i in range(start, start + count)]
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda n: self.add_service(n[1], self.endpoint_nodes(n[0])),
                    enumerate(names, start),
                )
            )
        return names

    def delete_service(self, name: str) -> None:
        self.api.delete(f"{objects.services(self.namespace)}/{name}")
        objects.delete_if_present(self.api, f"{objects.endpoint_slices(self.namespace)}/{name}-1")
        self.services.pop(name, None)

    def move_endpoints(self, name: str, nodes: list[str]) -> None:
        body = objects.endpoint_slice(f"{name}-1", self.namespace, name, nodes)
        self.api.merge_patch(
            f"{objects.endpoint_slices(self.namespace)}/{name}-1",
            {"endpoints": body["endpoints"]},
        )
        self.services[name] = nodes

    def ips(self) -> dict[str, str]:
        """Service name -> its published IP ("" while it has none), from one list."""
        items, _ = self.api.list(objects.services(self.namespace))
        found = {}
        for service in items:
            ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
            found[service["metadata"]["name"]] = str(ingress[0]["ip"]) if ingress else ""
        return found

    def desired_fib(self, ips: dict[str, str]) -> dict[str, frozenset[str]]:
        address = {n.name: n.address for n in self.topology.nodes}
        return {
            f"{ips[name]}/32": frozenset(address[n] for n in nodes)
            for name, nodes in self.services.items()
            if ips.get(name)
        }

    # -- processes ------------------------------------------------------------------------

    def start_speakers(self, central_speakers: int, agent_args: tuple[str, ...]) -> None:
        """Per-node: gobgpd and an agent (with `agent_args`) on every node. Central: gobgpd
        on the first `central_speakers` nodes, no agent."""
        nodes = self.topology.nodes
        if self.mode == "central":
            nodes = nodes[:central_speakers]
        for node in nodes:
            speaker, agent = start_node_speaker(
                node,
                self.kubeconfig,
                self.workdir,
                agent_args=agent_args,
                with_agent=self.mode == "node",
            )
            self.speakers.append(speaker)
            if agent is not None:
                self.agents.append(agent)

    def check_running(self) -> None:
        """Raise (with the log's tail) if an agent has exited; subclasses add their own."""
        for agent in self.agents:
            agent.check_running()

    def converged(self, fib: FibLog, timeout: float) -> dict[str, str]:
        """Wait until every Service has an IP and the FIB holds exactly the desired routes."""

        def done() -> dict[str, str] | None:
            self.check_running()
            ips = self.ips()
            if len(ips) != len(self.services) or not all(ips.values()):
                return None
            return ips if fib.snapshot() == self.desired_fib(ips) else None

        return wait_for(done, timeout, "every Service allocated and exactly routed", 0.2)

    def stop(self) -> None:
        """Stop the agents and gobgpds; subclasses stop their controllers first."""
        for agent in self.agents:
            agent.stop()
        for speaker in self.speakers:
            speaker.stop()


B = TypeVar("B", bound=ServiceBed)


def router_neighbors(
    speakers: list[Node],
    port: int,
    ipv6: IPv6Sessions | None,
    asns: Mapping[str, int] | None = None,
) -> tuple[Neighbor, ...]:
    """The router's sessions with `speakers`: one with each node's IPv4 address, carrying
    IPv4 (and IPv6 too with "mp-bgp"); with "v6-session" one more with each node's IPv6
    address, carrying IPv6. Each node's AS is NODE_ASN unless `asns` (node name -> AS) says."""
    families = (4, 6) if ipv6 == "mp-bgp" else ()
    asn = {n.name: (asns or {}).get(n.name, NODE_ASN) for n in speakers}
    sessions = [
        Neighbor(n.address, asn[n.name], n.name, port=port, families=families) for n in speakers
    ]
    if ipv6 == "v6-session":
        sessions += [Neighbor(n.address6, asn[n.name], f"{n.name}_v6", port=port) for n in speakers]
    return tuple(sessions)


@contextlib.contextmanager
def running_bed(
    make: Callable[..., B],
    mode: Mode,
    *,
    pool: str,
    namespace: str,
    router_kind: RouterKind = "bird",
    central_speakers: int = 1,
    stalepath_time: int | None = None,
    router_bfd: BfdTimers | None = None,
    neighbor_port: int = 179,
    proxy: bool = False,
    workdir: Path | None = None,
    ipv6: IPv6Sessions | None = None,
    ipv6_pool: str = "",
    node_asns: Mapping[str, int] | None = None,
) -> Iterator[B]:
    """Start the control plane, the network and the router; `make(**fields)` builds the bed
    (a ServiceBed subclass), which is yielded; everything is stopped and removed after.
    With `ipv6` the network is dual-stack and the router takes /128s of `ipv6_pool` over the
    sessions `ipv6` says (the BgpPeers that match them are the scenario's to make);
    `node_asns` gives nodes another AS than NODE_ASN on the router (a `localAs` per node)."""
    own = workdir is None
    root = workdir or Path(tempfile.mkdtemp(prefix="porter-bed-"))
    plane = ControlPlane(root / "controlplane")
    topology = Topology(run_id(), node_count=3, ipv6=ipv6 is not None)
    router: Router | None = None
    relay: APIProxy | None = None
    bed: B | None = None
    try:
        plane.start()
        from kubernetes import config

        api_client = config.new_client_from_config(config_file=str(plane.kubeconfig))
        apply_crds(api_client, sorted(CRD_DIR.glob("*.yaml")))
        topology.create()
        speakers = topology.nodes[:central_speakers] if mode == "central" else topology.nodes
        spec = RouterSpec(
            asn=ROUTER_ASN,
            router_id=topology.router_address,
            neighbors=router_neighbors(speakers, neighbor_port, ipv6, node_asns),
            pools=(pool, ipv6_pool) if ipv6_pool else (pool,),
            add_paths_rx=mode == "central",
            bfd=router_bfd,
            **({} if stalepath_time is None else {"stalepath_time": stalepath_time}),
        )
        router = (
            Bird(topology.router_ns, spec, root / "bird")
            if router_kind == "bird"
            else Frr(topology.router_ns, spec, kernel_nexthop_groups=False)
        ).start()
        kubeconfig = plane.kubeconfig
        if proxy:
            assert plane.port
            relay = APIProxy(plane.port).start()
            kubeconfig = relay.kubeconfig(plane.kubeconfig, root / "kubeconfig-proxied")
        bed = make(
            workdir=root,
            plane=plane,
            api=KubeAPI(api_client),
            topology=topology,
            router=router,
            mode=mode,
            pool=pool,
            namespace=namespace,
            kubeconfig=kubeconfig,
            proxy=relay,
        )
        yield bed
    finally:
        if bed is not None:
            bed.stop()
        if router is not None:
            router.stop()
        if relay is not None:
            relay.close()
        topology.destroy()
        plane.stop()
        if own:
            shutil.rmtree(root, ignore_errors=True)
