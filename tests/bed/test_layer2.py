"""Layer 2 as stories: a client and three nodes on one bridge, real agents, real API server.

Each node namespace serves HTTP naming itself on plain sockets. Nothing else makes a node accept
the EIPs: the agents do it with their host rules (`--host-rules local`: mode `table` needs DNAT
or a transparent proxy, docs/agent.md), for the IPs they win only, and the tests read each
node's kernel for them. The agents run as processes in the host namespace with
`--layer2 --host-rules local --netns NODE`. No controller runs: the tests write Services'
status.loadBalancer.ingress themselves.

The client resolves the EIP by ARP/NDP and connects. When the announcer's agent stops, or its
link is cut, the client's neighbour entry moves to the next node in the rendezvous ranking and
HTTP reaches that node; when the node comes back it takes its IP back. A capture on the client's
link, asking "who has EIP" every 50 ms throughout, shows exactly one node answering each request
and the answering MAC changing only at those moments.
"""

from __future__ import annotations

import hashlib
import re
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_lab import netns, objects
from porter_lab.agents import Agent
from porter_lab.l2topology import EIP6_RANGE, EIP_RANGE, L2Topology, http_get
from porter_lab.l2watch import AnswerCapture, NeighborWatcher
from porter_lab.topology import run_id
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI, KubeError
from porter_lb.layer2.heartbeat import lease_name

SYSTEM_NAMESPACE = "porter-lb-system"
EIP = "198.51.100.200"
EIP6 = "2001:db8:100::200"
MOVE_TIMEOUT = 5.0  # generous for a 2-core machine shared with other tests; bench/ times it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class L2Bed:
    api: KubeAPI
    topology: L2Topology
    workdir: Path
    kubeconfig: Path
    tag: str
    namespace: str = field(init=False)
    agents: dict[str, Agent] = field(default_factory=dict)  # by Kubernetes node name
    metrics_ports: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.namespace = f"l2-{self.tag}"

    # Kubernetes objects.

    def create(self, collection: str, body: dict[str, Any]) -> None:
        try:
            self.api.create(collection, body)
        except KubeError as error:
            if error.status != 409:
                raise
            return
        self.created.append(f"{collection}/{body['metadata']['name']}")

    def node_name(self, node: str) -> str:
        return f"{self.tag}-{node}"

    def setup_cluster(self) -> None:
        for namespace in (SYSTEM_NAMESPACE, self.namespace):
            objects.ensure_namespace(self.api, namespace)
        for node in self.topology.nodes:
            name = self.node_name(node.name)
            self.create(objects.NODES, objects.node(name))
            objects.set_node_status(self.api, name, address=node.address)
        for name, address, interface in (
            (f"{self.tag}-v4", EIP_RANGE, "eth0"),
            # IPv6 through can_reach: the link the node's routes use toward the client.
            (f"{self.tag}-v6", EIP6_RANGE, f"can_reach:{self.topology.client_address6}"),
        ):
            self.create(objects.EIPS, objects.eip(name, address, layer2_interface=interface))

    def add_service(self, name: str, ip: str, policy: str = "Cluster") -> None:
        # The bed's API server has IPv4 ClusterIPs only; an IPv6 EIP is still written to status.
        collection = objects.services(self.namespace)
        self.create(collection, objects.load_balancer_service(name, self.namespace, policy=policy))
        self.api.merge_patch(f"{collection}/{name}/status", objects.load_balancer_status(ip))

    def set_endpoints(self, service: str, nodes: list[str]) -> None:
        body = objects.endpoint_slice(
            f"{service}-slice", self.namespace, service, [self.node_name(n) for n in nodes]
        )
        self.create(objects.endpoint_slices(self.namespace), body)

    def cleanup(self) -> None:
        for path in reversed(self.created):
            objects.delete_if_present(self.api, path)
        objects.delete_if_present(self.api, f"{objects.NAMESPACES}/{self.namespace}")
        for node in self.topology.nodes:
            objects.delete_if_present(
                self.api,
                f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM_NAMESPACE}/leases/"
                f"{lease_name(self.node_name(node.name))}",
            )

    # Agents.

    def start_agent(self, node: str) -> Agent:
        name = self.node_name(node)
        port = self.metrics_ports.setdefault(name, _free_port())
        agent = Agent(
            name,
            f"unix://{self.workdir}/no-gobgpd-{node}.sock",  # layer 2 needs no gobgpd
            self.kubeconfig,
            self.workdir,
            namespace=SYSTEM_NAMESPACE,
            extra_args=(
                "--layer2",
                "--host-rules",
                "local",
                "--netns",
                self.topology.node(node).netns,
                "--metrics-address",
                f"127.0.0.1:{port}",
            ),
        )
        self.agents[name] = agent.start()
        return agent

    def metric(self, node: str, metric: str, **labels: str) -> float:
        port = self.metrics_ports[self.node_name(node)]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        total = 0.0
        for line in text.splitlines():
            match = re.match(rf"^{metric}\{{(.*)\}} (\S+)$", line)
            if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
                total += float(match.group(2))
        return total

    # Expectations.

    def ranking(self, ip: str, nodes: list[str] | None = None) -> list[str]:
        """Topology node names ("node1") best first for `ip`, by the rule docs/layer2.md
        states: each node scores the first 8 bytes of SHA-256("<ip>\\0<node name>") read as a
        big-endian integer; the highest score answers; equal scores go by name."""
        names = nodes or [n.name for n in self.topology.nodes]

        def score(name: str) -> int:
            digest = hashlib.sha256(f"{ip}\0{self.node_name(name)}".encode()).digest()
            return int.from_bytes(digest[:8], "big")

        return sorted(names, key=lambda name: (-score(name), self.node_name(name)))

    def mac(self, node: str) -> str:
        return self.topology.mac(self.topology.node(node).netns)

    def accepts(self, node: str, ip: str) -> bool:
        """Whether `node`'s kernel holds porter-lb's local route (protocol 201) for `ip`."""
        family = "-6" if ":" in ip else "-4"
        entries = netns.ip_json(
            family,
            "route",
            "show",
            "table",
            "local",
            ip,
            "proto",
            "201",
            netns=self.topology.node(node).netns,
        )
        return bool(entries)

    def accepting(self, ip: str) -> list[str]:
        return [n.name for n in self.topology.nodes if self.accepts(n.name, ip)]

    def check_running(self) -> None:
        for agent in self.agents.values():
            if agent.daemon is not None and agent.daemon.running():
                agent.check_running()


@pytest.fixture
def l2bed(  # noqa: PLR0917 - pytest fixtures
    bed_prerequisites: None,
    session_run: str,
    crds: list[str],
    api_client: client.ApiClient,
    control_plane: Any,
    tmp_path: Path,
) -> Iterator[L2Bed]:
    topology = L2Topology(f"{session_run}{run_id()[:2]}", node_count=3)
    bed = L2Bed(KubeAPI(api_client), topology, tmp_path, control_plane.kubeconfig, run_id())
    try:
        topology.create()
        topology.serve_http(tmp_path)
        bed.setup_cluster()
        yield bed
    finally:
        for agent in bed.agents.values():
            agent.stop()
        bed.cleanup()
        topology.destroy()


def _http_names(bed: L2Bed, ip: str, node: str) -> bool:
    bed.check_running()
    return http_get(bed.topology.client_ns, ip, timeout=1.0).startswith(f"{node} ")


def test_one_node_answers_and_hands_over_on_agent_stop_and_link_cut(l2bed: L2Bed) -> None:
    bed = l2bed
    first, second, _third = bed.ranking(EIP)
    bed.add_service("web", EIP)
    capture = AnswerCapture(bed.topology.client_ns, frozenset({EIP}), probe_ip=EIP).start()
    neighbors = NeighborWatcher(bed.topology.client_ns)
    try:
        for node in bed.topology.nodes:
            bed.start_agent(node.name)

        # The client resolves the EIP to the first-ranked node's MAC and gets its answer.
        wait_for(lambda: _http_names(bed, EIP, first), 15, f"HTTP to {EIP} answered by {first}")
        neighbors.wait(EIP, bed.mac(first), 2)  # the watcher thread may lag the HTTP answer
        bed.topology.forget(EIP)  # asked again now, answered by ARP (not by a gratuitous one)
        assert _http_names(bed, EIP, first)
        assert bed.metric(first, "porter_lb_layer2_announced", ip=EIP) == 1
        assert bed.metric(second, "porter_lb_layer2_announced", ip=EIP) == 0
        assert bed.metric(first, "porter_lb_layer2_answers_total", protocol="arp") >= 1
        assert bed.metric(first, "porter_lb_layer2_gratuitous_packets_total", protocol="arp") >= 2
        # Only the node that answers accepts the EIP: its agent's local route, nobody else's.
        assert bed.accepting(EIP) == [first]

        # Its agent stops (SIGTERM: it stops answering, then releases its heartbeat Lease).
        bed.agents[bed.node_name(first)].stop()
        neighbors.wait(EIP, bed.mac(second), MOVE_TIMEOUT)
        wait_for(lambda: _http_names(bed, EIP, second), 5, f"HTTP answered by {second}")
        # The stopped agent took its route away with it; the new answerer has its own.
        wait_for(lambda: bed.accepting(EIP) == [second], 5, f"only {second} accepts {EIP}")

        # It comes back: after its join delay it takes its IP back, the other stops first.
        bed.start_agent(first)
        neighbors.wait(EIP, bed.mac(first), MOVE_TIMEOUT + 15)
        wait_for(lambda: _http_names(bed, EIP, first), 5, f"HTTP answered by {first} again")

        # Its cable is pulled (carrier lost; its agent, on the host, still heartbeats).
        bed.topology.cut(first)
        neighbors.wait(EIP, bed.mac(second), MOVE_TIMEOUT)
        wait_for(lambda: _http_names(bed, EIP, second), 5, f"HTTP via {second} after the cut")

        bed.topology.mend(first)
        neighbors.wait(EIP, bed.mac(first), MOVE_TIMEOUT)
        wait_for(lambda: _http_names(bed, EIP, first), 5, f"HTTP via {first} after mending")
        # A few more probes after the last move.
        probes = len(capture.probes)
        wait_for(lambda: len(capture.probes) >= probes + 10, 5, "ten more probes")
    finally:
        capture.stop()
        neighbors.close()

    assert len(capture.probes) > 50
    assert len(capture.probes) < capture.max_probes, "probe budget exhausted: test ran too long"
    multiple = [sorted(macs) for macs in capture.replies_per_probe() if len(macs) > 1]
    assert not multiple, f"requests answered by more than one node: {multiple[:5]}"
    # Exactly the moves made, never two nodes interleaving (gratuitous packets included).
    mac = {bed.mac(n.name): n.name for n in bed.topology.nodes}
    assert [mac[m] for m in capture.speakers()] == [first, second, first, second, first]


def test_ipv6_ndp_and_local_traffic_policy(l2bed: L2Bed) -> None:
    """IPv6 (interface by can_reach): the client resolves by NDP; with externalTrafficPolicy
    Local only a node with a ready endpoint answers, and a crashed agent is replaced once its
    heartbeat expires."""
    bed = l2bed
    # Endpoints on the two nodes ranked last: the first-ranked node must NOT answer.
    _best, middle, last = bed.ranking(EIP6)
    bed.add_service("web6", EIP6, policy="Local")
    bed.set_endpoints("web6", [middle, last])
    capture = AnswerCapture(bed.topology.client_ns, frozenset({EIP6})).start()
    neighbors = NeighborWatcher(bed.topology.client_ns)
    try:
        for node in bed.topology.nodes:
            bed.start_agent(node.name)
        wait_for(lambda: _http_names(bed, EIP6, middle), 15, f"HTTP to [{EIP6}] via {middle}")
        neighbors.wait(EIP6, bed.mac(middle), 2)
        bed.topology.forget(EIP6)  # asked again now, answered by NDP (not unsolicited)
        assert _http_names(bed, EIP6, middle)
        assert bed.metric(middle, "porter_lb_layer2_answers_total", protocol="ndp") >= 1
        assert bed.accepting(EIP6) == [middle]  # its local route, nobody else's

        # SIGKILL: no release; the others wait for the heartbeat to expire.
        bed.agents[bed.node_name(middle)].kill()
        neighbors.wait(EIP6, bed.mac(last), MOVE_TIMEOUT)
        wait_for(lambda: _http_names(bed, EIP6, last), 5, f"HTTP via {last}")
        # A killed agent cannot remove its route: the kernel keeps it until the agent's next
        # start reads it back as its own (docs/layer2.md says why arp_ignore matters here).
        assert last in bed.accepting(EIP6)
    finally:
        capture.stop()
        neighbors.close()
    mac = {bed.mac(n.name): n.name for n in bed.topology.nodes}
    assert [mac[m] for m in capture.speakers()] == [middle, last]
