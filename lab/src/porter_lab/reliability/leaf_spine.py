"""porter-lb on the leaf-spine fabric (porter_lab.fabric): the real control plane, the
fabric's three routers, and porter-lb's processes in either speaker mode.

Node mode: a gobgpd and a `porter-lb agent` (host rules `local`, so each node accepts the EIPs
it announces) on every node; the BgpConf gives each rack its AS (asPerRack) and each BgpPeer
(one per leaf) selects its rack. Central mode: one gobgpd on node1 driven by the controller's
central speaker, BgpPeer leaf1 (direct) and leaf2 (eBGP multihop) each selecting its rack, so
per-peer export keeps each leaf to its own rack's next hops; with no agent there, the test
makes each node accept the EIPs as kube-proxy would (`accept_on_nodes`).

Every node serves HTTP naming itself (porter_lab.traffic), for real TCP from the client.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from porter_lab import netns, objects
from porter_lab.agents import Agent, start_node_speaker
from porter_lab.controllers import start_controller
from porter_lab.controlplane import ControlPlane
from porter_lab.fabric import (
    GATEWAYS,
    LEAF_ASNS,
    RACK_ASNS,
    RACK_LABEL,
    RACKS,
    UPLINKS,
    UPLINKS6,
    Fabric,
    FabricRouters,
    Mode,
)
from porter_lab.kube import apply_crds
from porter_lab.paths import CRD_DIR
from porter_lab.processes import Daemon
from porter_lab.speakers import Gobgpd
from porter_lab.topology import run_id
from porter_lab.traffic import serve_node_name
from porter_lb.kube.api import KubeAPI

POOL = "203.0.113.160/28"
POOL6 = "2001:db8:203:1::/120"  # with `ipv6`; routed only inside the bed's namespaces
NAMESPACE = "fabric"
SYSTEM_NAMESPACE = "porter-lb-system"
CENTRAL_ASN = 65001


@dataclass
class LeafSpineBed:
    workdir: Path
    mode: Mode
    api: KubeAPI
    fabric: Fabric
    routers: FabricRouters
    kubeconfig: Path
    speakers: list[Gobgpd] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)
    services: dict[str, list[str]] = field(default_factory=dict)  # name -> endpoint nodes
    accepted: list[tuple[str, str]] = field(default_factory=list)  # (node netns, ip)
    _controller_args: tuple[str, ...] = ()

    def rack_of(self) -> dict[str, str]:
        return {n.node.name: n.rack for n in self.fabric.nodes}

    def base_objects(self) -> None:
        for namespace in (NAMESPACE, SYSTEM_NAMESPACE):
            objects.ensure_namespace(self.api, namespace)
        for racked in self.fabric.nodes:
            node = racked.node
            self.api.create(objects.NODES, objects.node(node.name, {RACK_LABEL: racked.rack}))
            objects.set_node_status(self.api, node.name, address=node.addresses)
        self.api.create(objects.EIPS, objects.eip("fabric", POOL, default=True))
        if self.fabric.ipv6:
            self.api.create(objects.EIPS, objects.eip("fabric-v6", POOL6, default=True))
        conf = objects.bgp_conf(CENTRAL_ASN, self.fabric.nodes[0].node.address)
        if self.mode == "node":
            conf = objects.bgp_conf(CENTRAL_ASN)
            conf["spec"]["asPerRack"] = dict(RACK_ASNS)
        self.api.create(objects.BGP_CONFS, conf)
        for index, rack in enumerate(RACKS):
            peer = objects.bgp_peer(
                f"leaf{index + 1}",
                GATEWAYS[index],
                peer_as=LEAF_ASNS[index],
                node_labels={RACK_LABEL: rack},
            )
            if self.mode == "central" and index == 1:
                peer["spec"]["ebgpMultihop"] = {"enabled": True, "multihopTtl": 4}
            if self.fabric.ipv6:  # MP-BGP: IPv6 unicast on the IPv4 sessions too
                peer["spec"]["afiSafis"] = [
                    {"config": {"family": {"afi": afi, "safi": "SAFI_UNICAST"}, "enabled": True}}
                    for afi in ("AFI_IP", "AFI_IP6")
                ]
            self.api.create(objects.BGP_PEERS, peer)

    def start(self) -> None:
        nodes = [n.node for n in self.fabric.nodes]
        for node in nodes:
            self.daemons.append(
                serve_node_name(node.netns, node.name, self.workdir, dual_stack=self.fabric.ipv6)
            )
        extra: tuple[str, ...] = ()
        if self.mode == "node":
            for node in nodes:
                speaker, agent = start_node_speaker(
                    node,
                    self.kubeconfig,
                    self.workdir,
                    agent_args=("--host-rules", "local", "--log-format", "json"),
                )
                self.speakers.append(speaker)
                assert agent is not None
                self.agents.append(agent)
        else:
            speaker, _ = start_node_speaker(
                nodes[0], self.kubeconfig, self.workdir, with_agent=False
            )
            self.speakers.append(speaker)
            extra = ("--speaker", "central", "--gobgp", speaker.target)
        self._controller_args = extra
        self.daemons.append(self._start_controller())

    def _start_controller(self) -> Daemon:
        return start_controller(
            self.kubeconfig,
            self.workdir / "controller.log",
            "--retry-period",
            "0.5",
            *self._controller_args,
            identity="fabric",
            namespace=SYSTEM_NAMESPACE,
        )

    def restart_controller(self) -> None:
        """SIGTERM the controller and start it again; its gobgpd (central) keeps running."""
        controller = next(d for d in self.daemons if d.name == "controller")
        controller.stop(30)
        self.daemons[self.daemons.index(controller)] = self._start_controller()

    def add_service(self, name: str, nodes: list[str], families: tuple[str, ...] = ()) -> None:
        """A Local Service with endpoints on `nodes`; `families` ("IPv4", "IPv6"), when given,
        are required (two: RequireDualStack), with one EndpointSlice per family."""
        for family in families or ("IPv4",):
            slice_name = f"{name}-1" if family == "IPv4" else f"{name}-{family.lower()}"
            self.api.create(
                objects.endpoint_slices(NAMESPACE),
                objects.endpoint_slice(slice_name, NAMESPACE, name, nodes, address_type=family),
            )
        self.api.create(
            objects.services(NAMESPACE),
            objects.load_balancer_service(
                name, NAMESPACE, policy="Local", node_ports=False, ip_families=families
            ),
        )
        self.services[name] = nodes

    def all_ips(self) -> dict[str, list[str]]:
        """Service -> every IP in its status.loadBalancer.ingress."""
        items, _ = self.api.list(objects.services(NAMESPACE))
        return {
            service["metadata"]["name"]: [
                str(i["ip"])
                for i in (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
            ]
            for service in items
        }

    def ips(self) -> dict[str, str]:
        """Service -> its first IP ("" while it has none)."""
        return {name: ips[0] if ips else "" for name, ips in self.all_ips().items()}

    def accept_on_nodes(self, ips: dict[str, str] | dict[str, list[str]]) -> None:
        """Central mode has no agent: make each endpoint node accept its Services' EIPs, as
        kube-proxy's rules would on a real node (a local route, as `--host-rules local`)."""
        for name, nodes in self.services.items():
            given = ips[name]
            for ip in [given] if isinstance(given, str) else given:
                v6 = ":" in ip
                for racked in self.fabric.nodes:
                    if racked.node.name in nodes:
                        netns.ip(
                            "-6" if v6 else "-4", "route", "add", "local",
                            f"{ip}/{128 if v6 else 32}", "dev", "lo", netns=racked.node.netns,
                        )  # fmt: skip
                        self.accepted.append((racked.node.netns, ip))

    def desired(
        self, ips: dict[str, str] | dict[str, list[str]]
    ) -> dict[str, dict[str, frozenset[str]]]:
        """The rule: router -> prefix -> next hops. A leaf routes each EIP to its rack's
        endpoint nodes (their address of the EIP's family); the spine to the leaves whose
        rack has one (their uplink address of that family)."""
        rack = self.rack_of()
        node = {n.node.name: n.node for n in self.fabric.nodes}
        leaves: dict[str, dict[str, frozenset[str]]] = {"leaf1": {}, "leaf2": {}, "spine": {}}
        for name, nodes in self.services.items():
            given = ips[name]
            for ip in [given] if isinstance(given, str) else given:
                v6 = ":" in ip
                prefix = f"{ip}/{128 if v6 else 32}"
                uplinks = set()
                for index, leaf_rack in enumerate(RACKS):
                    hops = frozenset(
                        node[n].address6 if v6 else node[n].address
                        for n in nodes
                        if rack[n] == leaf_rack
                    )
                    if hops:
                        leaves[f"leaf{index + 1}"][prefix] = hops
                        uplinks.add((UPLINKS6 if v6 else UPLINKS)[index][1])
                leaves["spine"][prefix] = frozenset(uplinks)
        return leaves

    def fib(self, router: str) -> dict[str, frozenset[str]]:
        """`router`'s kernel routes inside the pool."""
        namespace = {
            "spine": self.fabric.spine_ns,
            "leaf1": self.fabric.leaf_ns[0],
            "leaf2": self.fabric.leaf_ns[1],
        }[router]
        pools = [ipaddress.ip_network(POOL), ipaddress.ip_network(POOL6)]
        found = {}
        for prefix, hops in netns.host_routes(namespace).items():
            network = ipaddress.ip_network(prefix)
            if any(
                network.version == pool.version and network.subnet_of(pool)  # type: ignore[arg-type]
                for pool in pools
            ):
                found[prefix] = frozenset(hops)
        return found

    def stop(self) -> None:
        self.daemons.reverse()
        for agent in self.agents:
            agent.stop()
        for daemon in self.daemons:
            daemon.stop()
        for speaker in self.speakers:
            speaker.stop()


@contextlib.contextmanager
def leaf_spine_bed(
    mode: Mode, workdir: Path | None = None, *, ipv6: bool = False
) -> Iterator[LeafSpineBed]:
    """The bed (see the module docstring); `ipv6`: a dual-stack fabric, an IPv6 Eip beside
    the IPv4 one, the BgpPeers carrying IPv6 unicast on their IPv4 sessions (MP-BGP)."""
    own = workdir is None
    root = workdir or Path(tempfile.mkdtemp(prefix="porter-fabric-"))
    plane = ControlPlane(root / "controlplane")
    fabric = Fabric(run_id(), ipv6=ipv6)
    routers: FabricRouters | None = None
    bed: LeafSpineBed | None = None
    try:
        plane.start()
        from kubernetes import config

        api_client = config.new_client_from_config(config_file=str(plane.kubeconfig))
        apply_crds(api_client, sorted(CRD_DIR.glob("*.yaml")))
        fabric.create()
        routers = FabricRouters(
            fabric, mode, POOL, root / "routers", pool6=POOL6 if ipv6 else ""
        ).start()
        bed = LeafSpineBed(
            workdir=root,
            mode=mode,
            api=KubeAPI(api_client),
            fabric=fabric,
            routers=routers,
            kubeconfig=plane.kubeconfig,
        )
        bed.base_objects()
        bed.start()
        yield bed
    finally:
        if bed is not None:
            bed.stop()
        if routers is not None:
            routers.stop()
        fabric.destroy()
        plane.stop()
        if own:
            shutil.rmtree(root, ignore_errors=True)
