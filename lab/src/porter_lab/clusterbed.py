"""The real-cluster bed of the tests (tests/cluster/) and benchmarks: a Cluster
(porter_lab.cluster) with the lab's images, a BIRD router peering with every node, and the
commands users run against it (kubectl, helm), plus the few objects every scenario needs.

    with cluster_bed(run, workdir) as bed:
        bed.helm("install", "porter-lb", "charts/porter-lb", *bed.image_values(), "--wait")
        bed.apply(bed.bgp_objects())
        ...

porter-lb is not installed by the bed: each scenario installs it the way it tests (Helm, the
static manifest, the roles) and removes it again.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from porter_lab import images, netns, testapp, traffic
from porter_lab.cluster import Cluster
from porter_lab.helm import helm_binary
from porter_lab.paths import REPO
from porter_lab.routers import Bird, Neighbor, RouterSpec
from porter_lab.topology import EIP_POOL, NODE_ASN, ROUTER_ASN, Topology
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI

Obj = dict[str, Any]
POOL = "lab-pool"
POOL_RANGE = "203.0.113.100-203.0.113.199"
NAMESPACE = "porter-lb-system"
GROUP = "network.kubesphere.io/v1alpha2"
# The names deploy/porter-lb.yaml gives the images (the chart's and roles' defaults).
RELEASE_IMAGES = {
    "controller": "ghcr.io/porter-lb/porter-lb-controller:0.1.0",
    "agent": "ghcr.io/porter-lb/porter-lb-agent:0.1.0",
}


@dataclass
class ClusterBed:
    topology: Topology
    cluster: Cluster
    router: Bird
    built: images.BuiltImages
    workdir: Path

    @property
    def api(self) -> KubeAPI:
        from kubernetes import config

        return KubeAPI(config.new_client_from_config(str(self.cluster.kubeconfig)))

    @property
    def addresses(self) -> dict[str, str]:
        return {n.name: n.address for n in self.topology.nodes}

    def node_netns(self, name: str) -> str:
        return next(n.netns for n in self.topology.nodes if n.name == name)

    # the user's commands

    def kubectl(self, *args: str, timeout: float = 120, check: bool = True, stdin: str = "") -> str:
        try:
            return self.cluster.kubectl(*args, timeout=timeout, check=check, stdin=stdin)
        except RuntimeError as error:  # a test's failure, with kubectl's words
            raise AssertionError(str(error)) from None

    def helm(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [str(helm_binary()), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)}:\n{result.stdout}{result.stderr}")
        return result.stdout

    def image_values(self) -> list[str]:
        """helm --set arguments naming the lab's images."""
        return [
            "--set",
            f"controller.image={self.built['controller']}",
            "--set",
            f"agent.image={self.built['agent']}",
        ]

    def apply(self, objects: list[Obj]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    # what every scenario needs

    def bgp_objects(self) -> list[Obj]:
        """The nodes' BGP (AS 65001, the router as peer, short timers) and the lab's pool."""
        return [
            {
                "apiVersion": GROUP,
                "kind": "BgpConf",
                "metadata": {"name": "default"},
                "spec": {"as": NODE_ASN, "listenPort": 179},
            },
            {
                "apiVersion": GROUP,
                "kind": "BgpPeer",
                "metadata": {"name": "lab-router"},
                "spec": {
                    "conf": {
                        "neighborAddress": self.topology.router_address,
                        "peerAs": ROUTER_ASN,
                    },
                    "timers": {
                        "config": {"holdTime": "9", "keepaliveInterval": "3", "connectRetry": "1"}
                    },
                },
            },
            {
                "apiVersion": GROUP,
                "kind": "Eip",
                "metadata": {"name": POOL},
                "spec": {"address": POOL_RANGE, "protocol": "bgp"},
            },
        ]

    def deploy_app(self, name: str, namespace: str, replicas: int, policy: str = "Local") -> None:
        self.apply(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                testapp.deployment(name, namespace, self.built["test-app"], replicas),
                testapp.service(name, namespace, policy=policy, pool=POOL),
            ]
        )

    def service_ip(self, name: str, namespace: str, timeout: float = 60) -> str:
        return str(
            wait_for(
                lambda: testapp.service_ip(self.api, namespace, name),
                timeout,
                f"an IP for Service {namespace}/{name}",
            )
        )

    def hops(self, ip: str) -> set[str]:
        return netns.next_hops(self.topology.router_ns, f"{ip}/32")

    def wait_hops(
        self, ip: str, wanted: Callable[[], set[str]] | set[str], timeout: float, what: str
    ) -> set[str]:
        """Wait until the router's kernel next hops for ip/32 equal `wanted` (node addresses;
        a callable is evaluated at each look)."""

        def equal() -> set[str] | bool:
            want = wanted() if callable(wanted) else wanted
            have = self.hops(ip)
            return (have or True) if have == want else False

        found = wait_for(equal, timeout, what, interval=0.1)
        return found if isinstance(found, set) else set()

    def ready_node_addresses(self, namespace: str, app: str) -> set[str]:
        """The rule for externalTrafficPolicy Local: the nodes hosting a Ready pod."""
        return {self.addresses[n] for n in testapp.ready_nodes(self.api, namespace, app)}

    def answers(self, ip: str, count: int, first_port: int) -> dict[str, int]:
        """`count` TCP connections from the client namespace, by who answered."""
        return dict(
            traffic.count_answers(self.topology, ip, first_port, count, budget=30, timeout=60)
        )

    def wait_reachable(self, ip: str, timeout: float = 60) -> None:
        traffic.wait_answered(self.topology, ip, timeout)

    def porter_pods(self) -> list[Obj]:
        return list(self.get_json("pods", "-n", NAMESPACE)["items"])

    def wait_porter_ready(self, timeout: float = 180) -> list[Obj]:
        """Every porter-lb pod Running with every container Ready (the controller's and each
        node's agent)."""

        def ready() -> list[Obj] | None:
            pods = self.porter_pods()
            agents = [p for p in pods if "agent" in p["metadata"]["name"]]
            if len(agents) != len(self.topology.nodes) or not pods:
                return None
            for pod in pods:
                if pod["metadata"].get("deletionTimestamp"):
                    return None
                statuses = pod.get("status", {}).get("containerStatuses") or []
                if not statuses or not all(s.get("ready") for s in statuses):
                    return None
            return pods

        return list(wait_for(ready, timeout, "every porter-lb pod Ready", interval=0.5))

    def leftovers(self) -> list[str]:
        """porter-lb's objects still in the cluster (CRDs and the custom resources apart)."""
        found = []
        for kind in ("validatingwebhookconfigurations", "clusterroles", "clusterrolebindings"):
            for item in self.get_json(kind)["items"]:
                if item["metadata"]["name"].startswith("porter-lb"):
                    found.append(f"{kind}/{item['metadata']['name']}")
        namespaces = {i["metadata"]["name"] for i in self.get_json("namespaces")["items"]}
        if NAMESPACE in namespaces:
            found.append(f"namespaces/{NAMESPACE}")
        for service in self.get_json("services", "-A")["items"]:
            if "lb.porter-lb.io/finalizer" in (service["metadata"].get("finalizers") or []):
                meta = service["metadata"]
                found.append(f"finalizer on services/{meta['namespace']}/{meta['name']}")
        return found


def start_router(topology: Topology, workdir: Path) -> Bird:
    spec = RouterSpec(
        asn=ROUTER_ASN,
        router_id=topology.router_address,
        pools=(EIP_POOL,),
        neighbors=tuple(Neighbor(n.address, NODE_ASN, n.name) for n in topology.nodes),
    )
    return Bird(topology.router_ns, spec, workdir / "bird").start()


@contextlib.contextmanager
def cluster_bed(
    run: str, workdir: Path, nodes: int = 3, log: Callable[[str], None] = print
) -> Iterator[ClusterBed]:
    """A cluster of `nodes` nodes with the lab's images and a BIRD router; torn down after."""
    started = time.monotonic()
    built = images.current(log=lambda line: None)
    topology = Topology(run, node_count=nodes)
    cluster = Cluster(topology, workdir / "cluster", built)
    router: Bird | None = None
    try:
        cluster.start(log=log)
        router = start_router(topology, workdir)
        log(f"cluster bed up in {time.monotonic() - started:.1f}s")
        yield ClusterBed(topology, cluster, router, built, workdir)
    finally:
        if router is not None:
            router.stop()
        cluster.stop()
