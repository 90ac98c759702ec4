"""The speaker as stories: Kubernetes objects in, a real router's RIB and kernel FIB out.

Per-node mode runs one `porter-lb agent` process per node (in the host namespace, driving the
gobgpd in the node's namespace); central mode runs `agent.run_central` in this process against
one gobgpd in node1's namespace, announcing every node as a third-party next hop by ADD-PATH.
Both against BIRD and FRR. No allocation controller runs: the tests write the Services'
`status.loadBalancer.ingress` themselves, as the controller would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_lab import netns, objects
from porter_lab.agents import Agent
from porter_lab.controlplane import ControlPlane
from porter_lab.netns import CommandFailed
from porter_lab.routers import Bird, Frr, Neighbor, Router, RouterSpec, established
from porter_lab.speakers import CentralSpeaker, Gobgpd
from porter_lab.topology import EIP_POOL, NODE_ASN, ROUTER_ASN, Topology, run_id
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI, KubeError

SECRET_NAMESPACE = "porter-lb-system"
BGP_POOL = "203.0.113.192/27"  # inside the router's accepted EIP_POOL
LAYER2_POOL = "203.0.113.224/28"
IP_A, IP_B, IP_L2, IP_FOREIGN = "203.0.113.193", "203.0.113.194", "203.0.113.225", "203.0.113.195"


@dataclass
class Cluster:
    """The objects of one scenario, created through the real API server and removed after."""

    api: KubeAPI
    tag: str  # unique per test: names, the node label every BgpPeer selects
    namespace: str = field(init=False)
    created: list[str] = field(default_factory=list)  # object paths, deleted in reverse

    def __post_init__(self) -> None:
        self.namespace = f"spk-{self.tag}"

    def create(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        stored = self.api.create(collection, body)
        self.created.append(f"{collection}/{body['metadata']['name']}")
        return stored

    def delete(self, path: str) -> None:
        objects.delete_if_present(self.api, path)

    def cleanup(self) -> None:
        for path in reversed(self.created):
            self.delete(path)

    # Objects.

    def node_name(self, node: str) -> str:
        return f"{self.tag}-{node}"

    def add_node(self, node: str, address: str) -> None:
        self.create(objects.NODES, objects.node(self.node_name(node), {"spk": self.tag}))
        self.set_node_ready(node, True, address)

    def set_node_ready(self, node: str, ready: bool, address: str | None = None) -> None:
        objects.set_node_status(self.api, self.node_name(node), ready=ready, address=address)

    def label_node(self, node: str, labels: dict[str, str | None]) -> None:
        self.api.merge_patch(
            f"/api/v1/nodes/{self.node_name(node)}", {"metadata": {"labels": labels}}
        )

    def add_service(
        self, name: str, ip: str, policy: str = "Cluster", *, porter: bool = True
    ) -> None:
        self.create(
            objects.services(self.namespace),
            objects.load_balancer_service(name, self.namespace, policy=policy, porter=porter),
        )
        self.api.merge_patch(f"{self.service_path(name)}/status", objects.load_balancer_status(ip))

    def service_path(self, name: str) -> str:
        return f"{objects.services(self.namespace)}/{name}"

    def set_endpoints(self, service: str, nodes: list[str]) -> None:
        """The Service's one EndpointSlice: one ready endpoint on each of `nodes`."""
        name = f"{service}-slice"
        body = objects.endpoint_slice(
            name, self.namespace, service, [self.node_name(n) for n in nodes]
        )
        collection = objects.endpoint_slices(self.namespace)
        try:
            self.api.replace(f"{collection}/{name}", body)
        except KubeError as error:
            if error.status != 404:
                raise
            self.create(collection, body)

    def add_bgppeer(self, name: str, neighbor: str, **spec: Any) -> None:
        body = objects.bgp_peer(
            f"{self.tag}-{name}", neighbor, node_labels={"spk": self.tag}, **spec
        )
        self.create(objects.BGP_PEERS, body)

    def bgppeer(self, name: str) -> dict[str, Any]:
        return self.api.get(f"{objects.BGP_PEERS}/{self.tag}-{name}")


@pytest.fixture
def cluster(api_client: client.ApiClient, crds: list[str]) -> Iterator[Cluster]:
    api = KubeAPI(api_client)
    created = Cluster(api, run_id())
    # Namespaces are never deleted: without a controller-manager they would stay Terminating.
    for namespace in (created.namespace, SECRET_NAMESPACE):
        objects.ensure_namespace(api, namespace)
    try:
        yield created
    finally:
        created.cleanup()


def base_objects(cluster: Cluster, router_id: str | None = None) -> None:
    """Pools (one announced over BGP, one layer2), the BgpConf."""
    cluster.create(objects.EIPS, objects.eip(f"{cluster.tag}-bgp", BGP_POOL))
    cluster.create(
        objects.EIPS, objects.eip(f"{cluster.tag}-l2", LAYER2_POOL, layer2_interface="eth0")
    )
    # gobgpd listens (port 179): the router connects in as soon as a peer is added. With
    # listenPort -1 only gobgpd connects out, and sessions took 6-8 s to come back.
    cluster.create(objects.BGP_CONFS, objects.bgp_conf(NODE_ASN, router_id or ""))


def host(ip: str) -> str:
    return f"{ip}/32"


def expect(topology: Topology, router: Router, routes: dict[str, set[str]], what: str) -> None:
    """Wait until the router's kernel FIB and its BGP RIB have exactly these next hops
    (node names) for each prefix; an empty set means the route must be gone."""
    address = {n.name: n.address for n in topology.nodes}
    wanted = {host(ip): {address[n] for n in nodes} for ip, nodes in routes.items()}

    def matches() -> bool:
        return all(netns.next_hops(topology.router_ns, p) == hops for p, hops in wanted.items())

    wait_for(matches, 15, f"router FIB {what}: {wanted}", interval=0.02)
    for prefix, hops in wanted.items():
        assert rib_next_hops(router, prefix) == hops, f"{what}: RIB of {prefix}"


def rib_next_hops(router: Router, prefix: str) -> set[str]:
    try:
        return router.rib_next_hops(prefix)
    except CommandFailed:  # birdc exits 1 on "Network not found"
        return set()


class FibWatch:
    """Samples the router's FIB for a prefix in the background: did it ever lose a hop?"""

    def __init__(self, router_ns: str, prefix: str, hops: set[str]) -> None:
        self.router_ns, self.prefix, self.hops = router_ns, prefix, hops
        self.samples = 0
        self.missing: list[set[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            seen = netns.next_hops(self.router_ns, self.prefix)
            self.samples += 1
            if seen != self.hops:
                self.missing.append(seen)

    def __enter__(self) -> FibWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def scenario(
    cluster: Cluster,
    topology: Topology,
    router: Router,
    restart: Callable[[], None],
    peer_status_key: Callable[[str], str],
) -> None:
    """The story both modes tell; `restart` restarts the speaker(s) under test."""
    node1, node2 = "node1", "node2"
    cluster.add_service("web", IP_A)  # Cluster: every Ready node
    cluster.add_service("local", IP_B, "Local")
    cluster.set_endpoints("local", [node1])
    cluster.add_service("l2", IP_L2)  # layer2 pool: not routed
    cluster.add_service("foreign", IP_FOREIGN, porter=False)  # not porter-lb's Service
    expect(
        topology,
        router,
        {IP_A: {node1, node2}, IP_B: {node1}, IP_L2: set(), IP_FOREIGN: set()},
        "first announcement",
    )

    def established_status() -> bool:
        status = cluster.bgppeer("tor").get("status", {}).get("nodesPeerStatus", {})
        keys = {peer_status_key(n) for n in (node1, node2)}
        return all(
            status.get(k, {}).get("peerState", {}).get("sessionState") == "ESTABLISHED"
            for k in keys
        )

    wait_for(established_status, 10, "BgpPeer status.nodesPeerStatus ESTABLISHED")

    cluster.set_endpoints("local", [node2])
    expect(topology, router, {IP_B: {node2}}, "endpoint moved to node2")
    cluster.set_endpoints("local", [])
    expect(topology, router, {IP_B: set()}, "no endpoint left: withdrawn (OpenELB #458)")
    cluster.set_endpoints("local", [node1])
    expect(topology, router, {IP_B: {node1}}, "endpoint back on node1")

    cluster.api.merge_patch(
        cluster.service_path("local"), {"spec": {"externalTrafficPolicy": "Cluster"}}
    )
    expect(topology, router, {IP_B: {node1, node2}}, "externalTrafficPolicy Cluster")
    cluster.api.merge_patch(
        cluster.service_path("local"), {"spec": {"externalTrafficPolicy": "Local"}}
    )
    expect(topology, router, {IP_B: {node1}}, "externalTrafficPolicy Local again")

    cluster.set_node_ready(node2, False)
    expect(topology, router, {IP_A: {node1}, IP_B: {node1}}, "node2 NotReady")
    cluster.set_node_ready(node2, True)
    expect(topology, router, {IP_A: {node1, node2}}, "node2 Ready again")

    exclude = "node.kubernetes.io/exclude-from-external-load-balancers"
    cluster.label_node(node1, {exclude: ""})
    expect(topology, router, {IP_A: {node2}, IP_B: set()}, "node1 excluded")
    cluster.label_node(node1, {exclude: None})
    expect(topology, router, {IP_A: {node1, node2}, IP_B: {node1}}, "node1 included again")

    cluster.delete(cluster.service_path("web"))
    expect(topology, router, {IP_A: set(), IP_B: {node1}}, "Service deleted")
    cluster.created.remove(cluster.service_path("web"))
    cluster.add_service("web", IP_A)
    expect(topology, router, {IP_A: {node1, node2}}, "Service re-created")

    # A peer change: the BgpPeer no longer selects node2; then the BgpPeer goes, then returns.
    peer_path = f"{objects.BGP_PEERS}/{cluster.tag}-tor"
    cluster.label_node(node2, {"spk": "elsewhere"})
    expect(topology, router, {IP_A: {node1}, IP_B: {node1}}, "peer no longer selects node2")
    cluster.label_node(node2, {"spk": cluster.tag})
    expect(topology, router, {IP_A: {node1, node2}}, "peer selects node2 again")
    spec = cluster.api.get(peer_path)["spec"]
    cluster.delete(peer_path)
    expect(topology, router, {IP_A: set(), IP_B: set()}, "BgpPeer deleted")
    cluster.created.remove(peer_path)
    cluster.add_bgppeer("tor", spec["conf"]["neighborAddress"], **spec)
    expect(topology, router, {IP_A: {node1, node2}, IP_B: {node1}}, "BgpPeer re-created")

    # A newer Eip announced over BGP overlapping the layer-2 pool loses the conflict (the
    # older Eip owns the addresses): the layer-2 Service's address is still not routed. The
    # endpoint change after it shows the speaker has read the Eip by then.
    overlap = cluster.create(
        objects.EIPS,
        objects.eip(f"{cluster.tag}-overlap", "203.0.113.224-203.0.113.239"),
    )
    cluster.set_endpoints("local", [node2])
    expect(topology, router, {IP_B: {node2}, IP_L2: set()}, "newer overlapping BGP Eip")
    cluster.set_endpoints("local", [node1])
    expect(topology, router, {IP_B: {node1}, IP_L2: set()}, "and still")
    cluster.delete(f"{objects.EIPS}/{overlap['metadata']['name']}")
    cluster.created.remove(f"{objects.EIPS}/{overlap['metadata']['name']}")

    # A restart of the speaker withdraws nothing: the router keeps both next hops throughout.
    # The watch samples before the restart begins and again after the new speaker is live, so
    # the whole restart lies between samples it took (a sample count would depend on load).
    with FibWatch(topology.router_ns, host(IP_A), {n.address for n in topology.nodes}) as watch:
        wait_for(lambda: watch.samples >= 3, 10, "the FIB watch sampling before the restart")
        restart()
        cluster.set_endpoints("local", [node2])  # and the new speaker is live
        expect(topology, router, {IP_B: {node2}}, "endpoint moved after the restart")
        live = watch.samples
        wait_for(lambda: watch.samples >= live + 3, 10, "FIB samples after the restart")
    assert watch.missing == [], "a route was withdrawn while the speaker restarted"


def missing_secret_warning(cluster: Cluster) -> None:
    """A BgpPeer whose password Secret does not exist: a Warning Event, and no crash."""
    cluster.add_bgppeer(
        "no-secret",
        "198.51.100.254",
        conf={
            "neighborAddress": "198.51.100.254",
            "peerAs": ROUTER_ASN,
            "authPasswordSecretRef": {"name": f"{cluster.tag}-missing"},
        },
    )
    name = f"{cluster.tag}-no-secret"

    def warned() -> bool:
        events = cluster.api.get("/api/v1/namespaces/default/events")["items"]
        return any(
            e["involvedObject"].get("name") == name
            and e["type"] == "Warning"
            and e["reason"] == "InvalidBgpPeer"
            and "Secret not found" in e["message"]
            for e in events
        )

    wait_for(warned, 10, f"Warning Event on BgpPeer {name}")
    cluster.delete(f"{objects.BGP_PEERS}/{name}")
    cluster.created.remove(f"{objects.BGP_PEERS}/{name}")


# --- per-node mode --------------------------------------------------------------------------------


def test_node_speakers_follow_the_cluster(  # noqa: PLR0917 - fixtures
    cluster: Cluster,
    topology: Topology,
    router: Router,
    start_gobgpd: Callable[[str], Gobgpd],
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    base_objects(cluster)
    for node in topology.nodes:
        cluster.add_node(node.name, node.address)
    cluster.add_bgppeer("tor", topology.router_address)
    agents = {}
    for node in topology.nodes:
        speaker = start_gobgpd(node.netns)
        agents[node.name] = Agent(
            cluster.node_name(node.name), speaker.target, control_plane.kubeconfig, tmp_path
        ).start()
    try:
        established(router)
        missing_secret_warning(cluster)

        def restart() -> None:
            for each in agents.values():
                each.stop()
                each.start()

        scenario(cluster, topology, router, restart, cluster.node_name)
        for each in agents.values():
            each.check_running()
            assert "Traceback" not in each.log.read_text()
    finally:
        for each in agents.values():
            each.stop()


# --- central mode -------------------------------------------------------------------------------


@pytest.fixture(params=["bird", "frr"])
def central_router(
    request: pytest.FixtureRequest, topology: Topology, tmp_path: Path
) -> Iterator[Router]:
    """A router with one neighbour, the central speaker in node1's namespace, ADD-PATH rx."""
    spec = RouterSpec(
        asn=ROUTER_ASN,
        router_id=topology.router_address,
        neighbors=(Neighbor(topology.nodes[0].address, NODE_ASN, "central"),),
        pools=(EIP_POOL,),
        add_paths_rx=True,
    )
    instance: Router = (
        Bird(topology.router_ns, spec, tmp_path / "bird")
        if request.param == "bird"
        else Frr(topology.router_ns, spec)
    )
    try:
        yield instance.start()
    finally:
        instance.stop()


def test_central_speaker_follows_the_cluster(
    cluster: Cluster,
    topology: Topology,
    central_router: Router,
    start_gobgpd: Callable[[str], Gobgpd],
) -> None:
    base_objects(cluster, router_id=topology.nodes[0].address)
    for node in topology.nodes:
        cluster.add_node(node.name, node.address)
    cluster.add_bgppeer("tor", topology.router_address)
    gobgpd = start_gobgpd(topology.nodes[0].netns)
    speaker = CentralSpeaker(cluster.api, gobgpd.target, "bed-controller", SECRET_NAMESPACE)
    speaker.start()
    try:
        established(central_router)

        def restart() -> None:
            speaker.stop()
            assert not speaker.running(), "the central speaker did not stop"
            speaker.start()

        scenario(cluster, topology, central_router, restart, lambda _node: "central")
    finally:
        speaker.stop()
        assert not speaker.running(), "the central speaker did not stop"
