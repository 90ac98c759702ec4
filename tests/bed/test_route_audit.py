"""The route audit on the bed: a real API server, gobgpd speakers driven by `porter-lb agent`
processes (or the central speaker), and a real BIRD or FRR router. The audit is clean once
converged; paths withdrawn or added in gobgpd behind the agents' backs (they re-read gobgpd
only every 300 s) show up as missing, stale or wrong next hops; `porter.lb.route_audit` with
`fail_on_drift: true` fails naming them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_lab import netns, objects
from porter_lab.agents import Agent
from porter_lab.ansible_run import environment, run_task
from porter_lab.controlplane import ControlPlane
from porter_lab.netns import CommandFailed
from porter_lab.routers import Bird, Router, established
from porter_lab.speakers import CentralSpeaker, Gobgpd
from porter_lab.topology import NODE_ASN, Topology, run_id
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI
from porter_lb.routing.gobgp import GoBGP
from porter_lb.routing.routes import Route, path_identifier

SECRET_NAMESPACE = "porter-lb-system"
BGP_POOL = "203.0.113.192/27"  # inside the router's accepted EIP_POOL
IP_WEB, IP_LOCAL, IP_STALE = "203.0.113.193", "203.0.113.194", "203.0.113.200"


class Objects:
    """One test's Kubernetes objects, created through the API server and deleted after."""

    def __init__(self, api: KubeAPI) -> None:
        self.api, self.tag = api, run_id()
        self.namespace = f"audit-{self.tag}"
        self.created: list[str] = []
        for namespace in (self.namespace, SECRET_NAMESPACE):
            objects.ensure_namespace(self.api, namespace)

    def create(self, collection: str, body: dict[str, Any]) -> None:
        self.api.create(collection, body)
        self.created.append(f"{collection}/{body['metadata']['name']}")

    def cleanup(self) -> None:
        for path in reversed(self.created):
            objects.delete_if_present(self.api, path)

    def cluster(self, topology: Topology, router_id: str = "") -> None:
        """The pool, the BgpConf, the nodes, one BgpPeer (the router) selecting them."""
        self.create(objects.EIPS, objects.eip(self.pool, BGP_POOL))
        self.create(objects.BGP_CONFS, objects.bgp_conf(NODE_ASN, router_id))
        for node in topology.nodes:
            self.create(objects.NODES, objects.node(self.node(node.name), {"audit": self.tag}))
            objects.set_node_status(self.api, self.node(node.name), address=node.address)
        peer = objects.bgp_peer(self.peer, topology.router_address, node_labels={"audit": self.tag})
        self.create(objects.BGP_PEERS, peer)

    def service(self, name: str, ip: str, policy: str = "Cluster", nodes: tuple[str, ...] = ()):
        body = objects.load_balancer_service(name, self.namespace, policy=policy)
        self.create(objects.services(self.namespace), body)
        path = f"{objects.services(self.namespace)}/{name}/status"
        self.api.merge_patch(path, objects.load_balancer_status(ip))
        if nodes:
            slice_body = objects.endpoint_slice(
                f"{name}-slice", self.namespace, name, [self.node(n) for n in nodes]
            )
            self.create(objects.endpoint_slices(self.namespace), slice_body)

    def node(self, name: str) -> str:
        return f"{self.tag}-{name}"

    @property
    def pool(self) -> str:
        return f"{self.tag}-bgp"

    @property
    def peer(self) -> str:
        return f"{self.tag}-tor"


@pytest.fixture
def cluster_objects(api_client: client.ApiClient, crds: list[str]) -> Iterator[Objects]:
    created = Objects(KubeAPI(api_client))
    try:
        yield created
    finally:
        created.cleanup()


def host(ip: str) -> str:
    return f"{ip}/32"


def router_args(router: Router) -> list[str]:
    if isinstance(router, Bird):
        return ["--router", "bird", "--socket", str(router.socket)]
    return ["--router", "frr", "--vty-socket", str(router.workdir)]


def router_output(router: Router) -> list[str]:
    """The router's routes as its own commands print them, read as a playbook reads them on
    the router (verify.yml) before porter.lb.route_audit compares them elsewhere."""
    if isinstance(router, Bird):
        show = ["show route all where source = RTS_BGP"]
        return [netns.run(["birdc", "-r", "-s", str(router.socket), *show], router.netns)]
    return [
        netns.run(["vtysh", "--vty_socket", str(router.workdir), "-c", show], router.netns)
        for show in ("show bgp ipv4 unicast json", "show bgp ipv6 unicast json")
    ]


def audit_cli(kubeconfig: Path, args: list[str]) -> tuple[int, dict[str, Any], str]:
    """`porter-lb audit ARGS` as a process: exit status, the JSON report, stderr."""
    run = subprocess.run(
        [sys.executable, "-m", "porter_lb", "audit", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode in (0, 1) and run.stdout, f"audit failed: {run.stderr}"
    return run.returncode, json.loads(run.stdout), run.stderr


def play(tmp_path: Path, kubeconfig: Path, args: dict[str, Any], *, check: bool = False):
    """porter.lb.route_audit through ansible-playbook (kubeconfig from K8S_AUTH_KUBECONFIG,
    as AWX's Kubernetes credential provides it): the registered result."""
    env = environment(drop=("ANSIBLE_", "K8S_AUTH_")) | {"K8S_AUTH_KUBECONFIG": str(kubeconfig)}
    result, _ = run_task("porter.lb.route_audit", args, tmp_path, check=check, env=env, timeout=180)
    return result


def rib(router: Router, prefix: str) -> set[str]:
    try:
        return router.rib_next_hops(prefix)
    except CommandFailed:  # birdc exits 1 on "Network not found"
        return set()


def wait_rib(router: Router, wanted: dict[str, set[str]], what: str) -> None:
    wait_for(
        lambda: all(rib(router, p) == hops for p, hops in wanted.items()),
        30,
        f"router RIB {what}: {wanted}",
        interval=0.05,
    )


def test_audit_node_speakers_against_the_router(  # noqa: PLR0917 - fixtures
    cluster_objects: Objects,
    topology: Topology,
    router: Router,
    start_gobgpd: Callable[[str], Gobgpd],
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    cluster = cluster_objects
    kubeconfig = control_plane.kubeconfig
    cluster.cluster(topology)
    n1, n2 = (n.address for n in topology.nodes)
    speakers: dict[str, GoBGP] = {}
    agents = []
    for node in topology.nodes:
        gobgpd = start_gobgpd(node.netns)
        assert gobgpd.client is not None
        speakers[node.name] = gobgpd.client
        agents.append(Agent(cluster.node(node.name), gobgpd.target, kubeconfig, tmp_path).start())
    try:
        established(router, timeout=60)
        cluster.service("web", IP_WEB)
        cluster.service("local", IP_LOCAL, "Local", nodes=("node1",))
        wait_rib(router, {host(IP_WEB): {n1, n2}, host(IP_LOCAL): {n1}}, "converged")

        scope = ["--pool", cluster.pool, "--bgp-peer", cluster.peer, "--fail-on-drift"]
        status, report, _ = audit_cli(kubeconfig, [*router_args(router), *scope])
        assert (status, report["in_sync"], report["counts"]["desired"]) == (0, True, 2), report
        assert report["warnings"] == []

        module_args: dict[str, Any] = {
            "pools": [cluster.pool],
            "bgp_peers": [cluster.peer],
            "fail_on_drift": True,
        }
        if isinstance(router, Bird):
            module_args |= {"router": "bird", "socket": str(router.socket)}
        else:
            module_args |= {"router": "frr", "vty_socket": str(router.workdir)}
        clean = play(tmp_path, kubeconfig, module_args, check=True)
        assert clean["in_sync"] is True and clean["changed"] is False, clean
        assert "failed" not in clean or clean["failed"] is False

        # Behind the agents' backs: node2 stops announcing web, node1 stops announcing
        # local, and node1 announces an address of the pool no Service holds.
        speakers["node2"].delete_route(Route(host(IP_WEB), "0.0.0.0"))
        speakers["node1"].delete_route(Route(host(IP_LOCAL), "0.0.0.0"))
        speakers["node1"].add_route(Route(host(IP_STALE), "0.0.0.0"))
        wait_rib(
            router,
            {host(IP_WEB): {n1}, host(IP_LOCAL): set(), host(IP_STALE): {n1}},
            "after the drift",
        )
        status, report, stderr = audit_cli(kubeconfig, [*router_args(router), *scope])
        assert status == 1 and report["in_sync"] is False
        assert report["missing"] == [
            {"prefix": host(IP_LOCAL), "want": [n1], "services": [f"{cluster.namespace}/local"]}
        ]
        assert report["stale"] == [{"prefix": host(IP_STALE), "have": [n1]}]
        assert report["wrong_next_hops"] == [
            {
                "prefix": host(IP_WEB),
                "want": [n1, n2],
                "have": [n1],
                "missing_next_hops": [n2],
                "unexpected_next_hops": [],
                "services": [f"{cluster.namespace}/web"],
            }
        ]
        assert f"1 missing ({host(IP_LOCAL)})" in stderr

        failed = play(tmp_path, kubeconfig, module_args)
        assert failed["failed"] is True and failed["changed"] is False
        assert failed["msg"] == (
            f"routes drift from the cluster: 1 missing ({host(IP_LOCAL)}); "
            f"1 stale ({host(IP_STALE)}); 1 wrong next hops ({host(IP_WEB)})"
        )
        assert failed["counts"] == {
            "desired": 2,
            "observed": 2,
            "missing": 1,
            "stale": 1,
            "wrong_next_hops": 1,
        }
        # The same, with the routes read on the router and given to the module
        given = {k: v for k, v in module_args.items() if k not in ("socket", "vty_socket")}
        elsewhere = play(tmp_path, kubeconfig, given | {"router_output": router_output(router)})
        assert elsewhere["failed"] is True and elsewhere["msg"] == failed["msg"], elsewhere
        both = play(tmp_path, kubeconfig, module_args | {"router_output": ["x"]})
        assert both["failed"] is True and "mutually exclusive" in both["msg"], both
        assert "router_output" in both["msg"], both
        gobgp = play(tmp_path, kubeconfig, {"router": "gobgp", "router_output": ["x"]})
        assert gobgp["msg"] == "router_output: given for router bird or frr only, not gobgp"

        # A BGP session lost: everything node2 announced loses it as a next hop.
        speakers["node1"].delete_route(Route(host(IP_STALE), "0.0.0.0"))
        speakers["node1"].add_route(Route(host(IP_LOCAL), "0.0.0.0"))
        speakers["node2"].add_route(Route(host(IP_WEB), "0.0.0.0"))
        wait_rib(router, {host(IP_WEB): {n1, n2}, host(IP_LOCAL): {n1}}, "repaired")
        assert audit_cli(kubeconfig, [*router_args(router), *scope])[1]["in_sync"] is True
        speakers["node2"].delete_peer(topology.router_address)  # not re-added before resync
        wait_rib(router, {host(IP_WEB): {n1}}, "node2's session down")
        _, report, _ = audit_cli(kubeconfig, [*router_args(router), *scope])
        assert [(e["prefix"], e["missing_next_hops"]) for e in report["wrong_next_hops"]] == [
            (host(IP_WEB), [n2])
        ]
        assert report["missing"] == [] and report["stale"] == []
        for each in agents:
            each.check_running()
    finally:
        for each in agents:
            each.stop()


def test_audit_central_speaker_gobgpd(
    cluster_objects: Objects,
    topology: Topology,
    start_gobgpd: Callable[[str], Gobgpd],
    control_plane: ControlPlane,
) -> None:
    """The central speaker's own gobgpd read over gRPC: third-party next hops, ADD-PATH."""
    cluster = cluster_objects
    cluster.cluster(topology, router_id=topology.nodes[0].address)
    n1, n2 = (n.address for n in topology.nodes)
    gobgpd = start_gobgpd(topology.nodes[0].netns)
    assert gobgpd.client is not None
    speaker = CentralSpeaker(cluster.api, gobgpd.target, "audit-bed", SECRET_NAMESPACE).start()
    try:
        cluster.service("web", IP_WEB)
        args = ["--router", "gobgp", "--gobgp", gobgpd.target, "--mode", "central"]
        args += ["--pool", cluster.pool, "--fail-on-drift"]

        def in_sync() -> dict[str, Any] | None:
            status, report, _ = audit_cli(control_plane.kubeconfig, args)
            return report if status == 0 and report["counts"]["desired"] == 1 else None

        wait_for(in_sync, 30, "central speaker's gobgpd in sync")
        gobgpd.client.delete_route(Route(host(IP_WEB), n2, path_identifier(n2)))
        status, report, _ = audit_cli(control_plane.kubeconfig, args)
        assert status == 1
        assert [(e["prefix"], e["have"], e["want"]) for e in report["wrong_next_hops"]] == [
            (host(IP_WEB), [n1], [n1, n2])
        ]
    finally:
        speaker.stop()
