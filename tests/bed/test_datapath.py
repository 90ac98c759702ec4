"""The BGP data path, proven by real TCP: client -> router ECMP -> node, with host rules.

The real controller process allocates the Service's IP; one real `porter-lb agent` per node
announces it through that node's gobgpd and, with host rules on, makes the node accept it;
BIRD or FRR spreads the connections over the announcing nodes. Each node serves HTTP on every
address (0.0.0.0:80) and names itself, so an answer says which node took the connection —
and a node answers for the EIP only if its host rules accept it.

Per router, one story (BIRD with `--host-rules table`, FRR with `--host-rules local`):

1. Local Service with endpoints on node1 and node2: 120 connections from distinct source
   ports, each eligible node takes >= 20 %, node3 none — under the topology's
   fib_multipath_hash_policy=1;
2. an endpoint on node3 too: three-way spread, now under policy 3 hashing the 5-tuple
   (fib_multipath_hash_fields=0x0037) with a fixed seed, so which node a source port reaches
   is the same on every run (policy 1 on veth hashes a per-socket random value instead);
3. node1's endpoints removed: after convergence no connection reaches node1;
4. host rules after restarts: a crashed agent (SIGKILL) restarted with a stale entry of its
   own and a foreign rule planted meanwhile, and an agent stopped and started: `ip rule` and
   `ip route` show exactly the expected entries, nothing more, nothing twice;
5. the Service deleted (its EIP released): every node is back to its first state.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_lab import netns, objects
from porter_lab.agents import Agent
from porter_lab.controlplane import ControlPlane
from porter_lab.processes import Daemon
from porter_lab.routers import Bird, Frr, Neighbor, Router, RouterSpec, established
from porter_lab.speakers import Gobgpd
from porter_lab.topology import NODE_ASN, ROUTER_ASN, Topology, run_id
from porter_lab.traffic import count_answers, serve_node_name
from porter_lab.waiting import wait_for
from porter_lb.host.acceptance import DEFAULT_PRIORITY, DEFAULT_PROTOCOL, DEFAULT_TABLE
from porter_lb.kube.api import KubeAPI, KubeError

POOL = "203.0.113.144/28"  # inside the routers' accepted EIP pool; no other test uses it
SYSTEM_NAMESPACE = "porter-lb-system"
CONNECTIONS = 120
MIN_SHARE = 0.20
STALE_IP, FOREIGN_IP = "203.0.113.159", "203.0.113.158"  # never allocated: .144/28 has room


@dataclass
class DataPath:
    api: KubeAPI
    topology: Topology
    kubeconfig: Path
    workdir: Path
    router_kind: str
    mode: str
    tag: str = field(default_factory=run_id)
    created: list[str] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)
    speakers: list[Gobgpd] = field(default_factory=list)
    agents: dict[str, Agent] = field(default_factory=dict)
    router: Router | None = None
    baseline: dict[str, list[str]] = field(default_factory=dict)
    foreign: dict[str, list[str]] = field(default_factory=dict)  # entries the test added
    next_port: int = 20000

    @property
    def namespace(self) -> str:
        return f"dp-{self.tag}"

    def create(self, collection: str, body: dict[str, Any]) -> None:
        self.api.create(collection, body)
        self.created.append(f"{collection}/{body['metadata']['name']}")

    def start(self) -> None:
        self.baseline = {n.name: kernel_entries(n.netns) for n in self.topology.nodes}
        self.create_objects()
        nodes = self.topology.nodes
        spec = RouterSpec(
            asn=ROUTER_ASN,
            router_id=self.topology.router_address,
            neighbors=tuple(Neighbor(n.address, NODE_ASN, n.name) for n in nodes),
            pools=(POOL,),
        )
        self.router = (
            Bird(self.topology.router_ns, spec, self.workdir / "bird")
            if self.router_kind == "bird"
            else Frr(self.topology.router_ns, spec)
        ).start()
        for node in nodes:
            self.daemons.append(
                serve_node_name(
                    node.netns, node.name, self.workdir, transparent=self.mode == "table"
                )
            )
            speaker = Gobgpd(node.netns, self.workdir / f"gobgpd-{node.name}")
            speaker.start()
            self.speakers.append(speaker)
            self.agents[node.name] = self.agent(node.name, speaker.target).start()
        self.daemons.append(
            Daemon(
                "controller",
                [
                    sys.executable,
                    "-m",
                    "porter_lb",
                    "controller",
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--namespace",
                    SYSTEM_NAMESPACE,
                    "--no-leader-elect",
                    "--log-format",
                    "text",
                ],
                self.workdir / "controller.log",
            ).start()
        )
        established(self.router)
        for node in nodes:
            wait_for(
                lambda ns=node.netns: netns.run(["ss", "-Htln", "sport", "= :80"], netns=ns),
                10,
                f"HTTP listening in {node.netns}",
            )

    def restart_agent(
        self, node: str, *, crash: bool = False, meanwhile: Callable[[], None] = lambda: None
    ) -> None:
        """Stop (SIGTERM) or kill (SIGKILL) a node's agent, do `meanwhile`, start the agent
        again, and wait until the new one has reconciled once."""
        old = self.agents[node]
        if crash:
            old.kill()
        else:
            old.stop()
        meanwhile()
        done = old.log.read_text().count("full reconcile")
        self.agents[node] = self.agent(node, old.gobgp_target).start()
        wait_for(
            lambda: (
                self.agents[node].check_running()
                and self.agents[node].log.read_text().count("full reconcile") > done
            ),
            20,
            f"the restarted agent of {node} to reconcile",
        )

    def agent(self, node: str, target: str) -> Agent:
        return Agent(
            node,
            target,
            self.kubeconfig,
            self.workdir,
            extra_args=("--host-rules", self.mode, "--netns", self.topology.prefix + node),
        )

    def create_objects(self) -> None:
        for namespace in (self.namespace, SYSTEM_NAMESPACE):
            objects.ensure_namespace(self.api, namespace)
        for node in self.topology.nodes:
            self.create(objects.NODES, objects.node(node.name))
            objects.set_node_status(self.api, node.name, address=node.address)
        self.create(objects.EIPS, objects.eip(f"dp-{self.tag}", POOL, default=True))
        self.create(objects.BGP_CONFS, objects.bgp_conf(NODE_ASN))
        self.create(
            objects.BGP_PEERS, objects.bgp_peer(f"tor-{self.tag}", self.topology.router_address)
        )

    def service(self, name: str, endpoint_nodes: list[str]) -> str:
        """A Local Service with one ready endpoint on each of `endpoint_nodes`; its IP."""
        self.create(
            objects.endpoint_slices(self.namespace),
            objects.endpoint_slice(f"{name}-1", self.namespace, name, endpoint_nodes, port=80),
        )
        self.create(
            objects.services(self.namespace),
            objects.load_balancer_service(name, self.namespace, policy="Local"),
        )
        return str(wait_for(lambda: self.ip(name), 20, f"an IP for Service {name}"))

    def set_endpoints(self, name: str, endpoint_nodes: list[str]) -> None:
        body = objects.endpoint_slice(f"{name}-1", self.namespace, name, endpoint_nodes, port=80)
        self.api.merge_patch(
            f"{objects.endpoint_slices(self.namespace)}/{name}-1",
            {"endpoints": body["endpoints"]},
        )

    def ip(self, name: str) -> str:
        service = self.api.get(f"/api/v1/namespaces/{self.namespace}/services/{name}")
        ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        return str(ingress[0]["ip"]) if ingress else ""

    def converged(self, ip: str, nodes: list[str]) -> None:
        """The router routes `ip` to exactly `nodes`, and exactly they accept it."""
        address = {n.name: n.address for n in self.topology.nodes}
        wanted = {address[n] for n in nodes}
        wait_for(
            lambda: netns.next_hops(self.topology.router_ns, f"{ip}/32") == wanted,
            20,
            f"{ip}/32 via {sorted(wanted)} in the {self.router_kind} router's FIB",
        )
        for node in self.topology.nodes:
            self.host_rules_exactly(node.name, [ip] if node.name in nodes else [])

    def host_rules_exactly(self, node: str, accepted: list[str]) -> None:
        """`ip rule` and `ip route` in the node show its first state, the entries the test
        added itself, and those that accept `accepted`, each once: nothing more or stale."""
        mine = expected_entries(self.mode, accepted)
        wanted = sorted([*self.baseline[node], *self.foreign.get(node, []), *mine])
        ns = self.topology.prefix + node
        wait_for(
            lambda: sorted(kernel_entries(ns)) == wanted,
            10,
            f"host rules of {node} ({self.mode}) accepting exactly {accepted}: {wanted}",
        )

    def connections(self, ip: str) -> Counter[str]:
        """CONNECTIONS connections from the client, each from its own source port."""
        first, self.next_port = self.next_port, self.next_port + CONNECTIONS
        return count_answers(self.topology, ip, first, CONNECTIONS, budget=20, timeout=40)

    def stop(self) -> None:
        for daemon in self.daemons:
            if daemon.name == "controller":
                daemon.stop(20)
        for agent in self.agents.values():
            agent.stop()
        for speaker in self.speakers:
            speaker.stop()
        for daemon in self.daemons:
            daemon.stop()
        if self.router is not None:
            self.router.stop()
        for path in reversed(self.created):
            objects.delete_if_present(self.api, path)
            # A Service the stopped controller could not release: let it go.
            try:
                self.api.merge_patch(path, {"metadata": {"finalizers": None}})
            except KubeError as error:
                assert error.status == 404


def kernel_entries(ns: str) -> list[str]:
    """Every `ip rule` (IPv4 and IPv6) and every route of every table not made by the kernel
    for an address (`proto kernel`), as `ip` prints them, duplicates kept."""
    lines = []
    for family in ("-4", "-6"):
        lines += netns.ip(family, "rule", "show", netns=ns).splitlines()
        lines += [
            line
            for line in netns.ip(family, "route", "show", "table", "all", netns=ns).splitlines()
            if " proto kernel " not in f"{line} "
        ]
    return [line.strip() for line in lines if line.strip()]


def expected_entries(mode: str, accepted: list[str]) -> list[str]:
    """What porter-lb's host rules add to accept `accepted` (IPv4), as `ip` prints it."""
    if not accepted:
        return []
    if mode == "table":
        return [
            *(
                f"{DEFAULT_PRIORITY}:\tfrom all to {ip} lookup {DEFAULT_TABLE} "
                f"proto {DEFAULT_PROTOCOL}"
                for ip in accepted
            ),
            f"local default dev lo table {DEFAULT_TABLE} proto {DEFAULT_PROTOCOL} scope host",
        ]
    return [f"local {ip} dev lo table local proto {DEFAULT_PROTOCOL} scope host" for ip in accepted]


def stale_entry(mode: str, ns: str) -> str:
    """Plant an entry porter-lb owns for an IP nobody holds (what a crash could leave)."""
    if mode == "table":
        netns.ip(
            "rule", "add", "to", STALE_IP, "lookup", str(DEFAULT_TABLE),
            "priority", str(DEFAULT_PRIORITY), "protocol", str(DEFAULT_PROTOCOL), netns=ns,
        )  # fmt: skip
    else:
        netns.ip(
            "route", "add", "local", STALE_IP, "dev", "lo", "table", "local",
            "proto", str(DEFAULT_PROTOCOL), netns=ns,
        )  # fmt: skip
    return STALE_IP


def spread(answers: Counter[str], eligible: list[str], all_nodes: list[str]) -> None:
    errors = {a: n for a, n in answers.items() if a not in all_nodes}
    assert errors == {}, f"failed connections: {errors} (answers {dict(answers)})"
    assert sum(answers.values()) == CONNECTIONS
    for node in all_nodes:
        if node in eligible:
            assert answers[node] >= MIN_SHARE * CONNECTIONS, f"{node}: {dict(answers)}"
        else:
            assert answers[node] == 0, f"ineligible {node} answered: {dict(answers)}"


@pytest.fixture(params=[("bird", "table"), ("frr", "local")], ids=["bird-table", "frr-local"])
def datapath(
    request: pytest.FixtureRequest,
    api_client: client.ApiClient,
    session_run: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> Iterator[DataPath]:
    kind, mode = request.param
    request.getfixturevalue("bed_prerequisites")
    request.getfixturevalue("crds")
    topology = Topology(f"{session_run}{run_id()[:2]}", node_count=3).create()
    made = DataPath(KubeAPI(api_client), topology, control_plane.kubeconfig, tmp_path, kind, mode)
    try:
        made.start()
        yield made
    finally:
        try:
            made.stop()
        finally:
            topology.destroy()


def test_ecmp_spreads_over_eligible_nodes_that_accept_by_host_rules(datapath: DataPath) -> None:
    bed, names = datapath, [n.name for n in datapath.topology.nodes]
    router_ns = bed.topology.router_ns

    ip = bed.service("web", ["node1", "node2"])
    bed.converged(ip, ["node1", "node2"])
    first = bed.connections(ip)
    print(f"\n{bed.router_kind} {bed.mode} policy 1, node1+node2 eligible: {dict(first)}")
    spread(first, ["node1", "node2"], names)

    netns.sysctl(router_ns, "net.ipv4.fib_multipath_hash_policy", 3)
    netns.sysctl(router_ns, "net.ipv4.fib_multipath_hash_fields", "0x0037")
    netns.sysctl(router_ns, "net.ipv4.fib_multipath_hash_seed", 2019)
    bed.set_endpoints("web", ["node1", "node2", "node3"])
    bed.converged(ip, names)
    three = bed.connections(ip)
    print(f"{bed.router_kind} {bed.mode} policy 3, all eligible: {dict(three)}")
    spread(three, names, names)

    bed.set_endpoints("web", ["node2", "node3"])
    bed.converged(ip, ["node2", "node3"])
    after = bed.connections(ip)
    print(f"{bed.router_kind} {bed.mode} policy 3, node1's endpoints removed: {dict(after)}")
    spread(after, ["node2", "node3"], names)

    # node2's agent crashes; meanwhile an entry of porter-lb's for an IP nobody holds (what a
    # crash between two steps could leave) and someone else's rule appear. node3's agent is
    # stopped and started. Each new agent reconciles: the stale entry goes, the foreign rule
    # stays, nothing is added twice.
    node2_ns = bed.topology.prefix + "node2"

    def plant() -> None:
        stale_entry(bed.mode, node2_ns)
        netns.ip(
            "rule", "add", "to", FOREIGN_IP, "lookup", "main", "priority", "100", netns=node2_ns
        )
        bed.foreign["node2"] = [f"100:\tfrom all to {FOREIGN_IP} lookup main"]

    bed.restart_agent("node2", crash=True, meanwhile=plant)
    bed.restart_agent("node3")
    bed.converged(ip, ["node2", "node3"])
    # The settings check named what this namespace lacks (forwarding is off in the lab).
    assert "net.ipv4.ip_forward is 0; want 1" in bed.agents["node2"].log.read_text()
    spread(bed.connections(ip), ["node2", "node3"], names)

    # The EIP released: nothing of porter-lb's is left on any node.
    bed.api.delete(f"/api/v1/namespaces/{bed.namespace}/services/web")
    wait_for(
        lambda: not netns.next_hops(router_ns, f"{ip}/32"), 20, f"{ip}/32 withdrawn from the FIB"
    )
    for node in names:
        bed.host_rules_exactly(node, [])
    for agent in bed.agents.values():
        agent.check_running()
