"""The allocation controller against the real API server: Services get IPs from Eips, the
allocation is recorded in the Eip status and the Service status, with finalizers, Events and
conditions; restarts change nothing and racing controllers never hand out one IP twice."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from porter_lab.controlplane import ControlPlane
from porter_lab.topology import run_id
from porter_lab.waiting import wait_for
from porter_lb.allocation.controller import FINALIZER, AllocationController
from porter_lb.kube.api import KubeAPI, KubeError
from porter_lb.kube.events import EventRecorder
from porter_lb.kube.informers import Informers
from porter_lb.model.resources import GROUP_PATH, LOAD_BALANCER_CLASS, Obj

POOL_ANNOTATION = "eip.openelb.kubesphere.io/v1alpha2"
SHARING = "lb.porter-lb.io/allow-shared-ip"


@dataclass
class Running:
    controller: AllocationController
    informers: Informers
    thread: threading.Thread
    stop: threading.Event

    def halt(self) -> None:
        self.stop.set()
        self.controller.stop()
        self.thread.join(30)
        self.informers.stop()
        assert not self.thread.is_alive()


@dataclass
class Cluster:
    """What a test creates, removed afterwards in an order that leaves nothing stuck."""

    api: KubeAPI
    namespace: str
    pools: list[str] = field(default_factory=list)
    running: list[Running] = field(default_factory=list)

    def start_controller(self) -> Running:
        informers = Informers(self.api, ["Service", "Namespace", "Eip"], watch_timeout=30)
        controller = AllocationController(self.api, informers, EventRecorder(self.api, host="t"))
        controller.register()
        informers.start()
        assert informers.wait_synced(10)
        stop = threading.Event()
        thread = threading.Thread(target=controller.run, args=(stop,), daemon=True)
        thread.start()
        running = Running(controller, informers, thread, stop)
        self.running.append(running)
        return running

    def pool(self, name: str, address: str, **spec: Any) -> str:
        full = f"{self.namespace}-{name}"
        annotations = spec.pop("annotations", {})
        self.api.create(
            f"{GROUP_PATH}/eips",
            {
                "apiVersion": "network.kubesphere.io/v1alpha2",
                "kind": "Eip",
                "metadata": {"name": full, "annotations": annotations},
                "spec": {"address": address, "protocol": "bgp", **spec},
            },
        )
        self.pools.append(full)
        return full

    def service(
        self,
        name: str,
        pool: str | None = None,
        *,
        port: int = 80,
        annotations: dict[str, str] | None = None,
        load_balancer_class: str | None = None,
        porter_annotation: bool = True,
        **spec: Any,
    ) -> Obj:
        notes = dict(annotations or {})
        if pool:
            notes[POOL_ANNOTATION] = pool
        if porter_annotation and not load_balancer_class:
            notes["lb.kubesphere.io/v1alpha1"] = "porter"
        body_spec: dict[str, Any] = {
            "type": "LoadBalancer",
            "ports": [{"name": "p", "port": port, "protocol": "TCP"}],
            "selector": {"app": name},
            **spec,
        }
        if load_balancer_class:
            body_spec["loadBalancerClass"] = load_balancer_class
        return self.api.create(
            f"/api/v1/namespaces/{self.namespace}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "annotations": notes},
                "spec": body_spec,
            },
        )

    def get_service(self, name: str) -> Obj:
        return self.api.get(f"/api/v1/namespaces/{self.namespace}/services/{name}")

    def delete_service(self, name: str) -> None:
        self.api.delete(f"/api/v1/namespaces/{self.namespace}/services/{name}")

    def eip(self, name: str) -> Obj:
        return self.api.get(f"{GROUP_PATH}/eips/{name}")

    def ips(self, name: str) -> list[str]:
        ingress = (self.get_service(name).get("status") or {}).get("loadBalancer", {})
        return [i["ip"] for i in ingress.get("ingress") or []]

    def wait_ips(self, name: str, count: int = 1, timeout: float = 10) -> list[str]:
        return wait_for(
            lambda: (ips := self.ips(name)) and len(ips) == count and ips,
            timeout,
            f"Service {name} to get {count} IP(s)",
        )

    def events(self, name: str) -> list[tuple[str, str, str]]:
        items = self.api.get(
            f"/api/v1/namespaces/{self.namespace}/events?fieldSelector=involvedObject.name%3D{name}"
        ).get("items", [])
        return [(e["type"], e["reason"], e["message"]) for e in items]

    def services(self) -> list[Obj]:
        return self.api.get(f"/api/v1/namespaces/{self.namespace}/services").get("items", [])

    def cleanup(self) -> None:
        if not any(r.thread.is_alive() for r in self.running):
            self.start_controller()  # finalizers are released by a running controller
        for service in self.services():
            self.delete_service(service["metadata"]["name"])
        wait_for(lambda: not self.services(), 20, "Services deleted (finalizers released)")
        for name in self.pools:
            try:
                self.api.delete(f"{GROUP_PATH}/eips/{name}")
            except KubeError as error:
                assert error.status == 404
        for running in self.running:
            if running.thread.is_alive():
                running.halt()


@pytest.fixture
def cluster(api_client: client.ApiClient, crds: list[str]) -> Iterator[Cluster]:
    api = KubeAPI(api_client)
    namespace = f"plb-ctl-{run_id()}"
    api.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    made = Cluster(api, namespace)
    try:
        yield made
    finally:
        made.cleanup()


def test_allocates_publishes_and_releases(cluster: Cluster) -> None:
    cluster.start_controller()
    pool = cluster.pool("a", "198.18.1.0-198.18.1.2")
    cluster.service("web", pool)
    cluster.service("api", pool, load_balancer_class=LOAD_BALANCER_CLASS)
    cluster.service("other", pool, load_balancer_class="example.com/other")

    assert cluster.wait_ips("web") == ["198.18.1.0"]
    assert cluster.wait_ips("api") == ["198.18.1.1"]
    web = cluster.get_service("web")
    assert FINALIZER in web["metadata"]["finalizers"]
    assert web["status"]["loadBalancer"]["ingress"][0]["ipMode"] == "VIP"

    # A Service of another class is never touched.
    other = cluster.get_service("other")
    assert FINALIZER not in (other["metadata"].get("finalizers") or [])
    assert not (other.get("status") or {}).get("loadBalancer")

    status = wait_for(
        lambda: (s := cluster.eip(pool).get("status") or {}).get("usage") == 2 and s,
        10,
        "Eip status usage 2",
    )
    assert status["used"] == {
        "198.18.1.0": f"{cluster.namespace}/web",
        "198.18.1.1": f"{cluster.namespace}/api",
    }
    assert (status["poolSize"], status["firstIP"], status["lastIP"], status["v4"]) == (
        3,
        "198.18.1.0",
        "198.18.1.2",
        True,
    )
    ready = status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Ready")
    allocated = ("Normal", "AllocatedIP", f"allocated 198.18.1.0 from Eip {pool}")
    # Events go out from their own threads, beside the status writes: poll for it.
    wait_for(lambda: allocated in cluster.events("web"), 10, "the AllocatedIP Event")

    # Deleting the Service releases its IP, then its finalizer: the Service goes away.
    cluster.delete_service("web")
    wait_for(
        lambda: "198.18.1.0" not in (cluster.eip(pool).get("status") or {}).get("used", {}),
        10,
        "IP released in the Eip status",
    )
    wait_for(
        lambda: "web" not in {s["metadata"]["name"] for s in cluster.services()},
        10,
        "Service gone",
    )


def test_exhausted_pool_refuses_then_serves_when_an_ip_frees(cluster: Cluster) -> None:
    cluster.start_controller()
    pool = cluster.pool("small", "198.18.2.7")
    cluster.service("first", pool)
    assert cluster.wait_ips("first") == ["198.18.2.7"]
    cluster.service("second", pool)
    wait_for(
        lambda: any(e[1] == "PoolExhausted" for e in cluster.events("second")),
        10,
        "a PoolExhausted Event on the refused Service",
    )
    assert cluster.ips("second") == []
    wait_for(
        lambda: (cluster.eip(pool).get("status") or {}).get("occupied") is True,
        10,
        "Eip occupied",
    )
    cluster.delete_service("first")
    assert cluster.wait_ips("second") == ["198.18.2.7"]


def test_requested_ip_sharing_and_conflicts(cluster: Cluster) -> None:
    cluster.start_controller()
    pool = cluster.pool("b", "198.18.3.0/29")
    cluster.service("asked", pool, loadBalancerIP="198.18.3.5")
    assert cluster.wait_ips("asked") == ["198.18.3.5"]
    # Same IP without a sharing key: refused, said so, and the holder keeps it.
    cluster.service("thief", pool, loadBalancerIP="198.18.3.5", port=81)
    wait_for(lambda: any(e[1] == "IPInUse" for e in cluster.events("thief")), 10, "IPInUse Event")
    assert cluster.ips("thief") == []
    # With one sharing key and disjoint ports, two Services share one IP.
    cluster.service("tcp", pool, port=53, annotations={SHARING: "dns"})
    shared = cluster.wait_ips("tcp")
    cluster.service("tcp2", pool, port=54, annotations={SHARING: "dns"}, loadBalancerIP=shared[0])
    assert cluster.wait_ips("tcp2") == shared
    used = wait_for(
        lambda: (
            (u := (cluster.eip(pool).get("status") or {}).get("used", {})).get(shared[0])
            and ";" in u[shared[0]]
            and u
        ),
        10,
        "shared IP recorded with both holders",
    )
    assert used[shared[0]] == f"{cluster.namespace}/tcp;{cluster.namespace}/tcp2"
    # An IP outside every pool is refused with a reason naming the field.
    cluster.service("astray", pool, loadBalancerIP="198.18.99.1")
    wait_for(
        lambda: any(
            e[1] in ("IPNotInPool", "IPNotInRequestedPool") for e in cluster.events("astray")
        ),
        10,
        "IPNotInPool Event",
    )


def test_deleting_a_pool_moves_its_services(cluster: Cluster) -> None:
    cluster.start_controller()
    first = cluster.pool("first", "198.18.4.1")
    cluster.pool(
        "fallback", "198.18.5.1", annotations={"eip.openelb.kubesphere.io/is-default-eip": "true"}
    )
    cluster.service("moving", first)
    cluster.service("plain")  # no pool asked: the default pool
    assert cluster.wait_ips("moving") == ["198.18.4.1"]
    assert cluster.wait_ips("plain") == ["198.18.5.1"]
    cluster.api.delete(f"{GROUP_PATH}/eips/{first}")
    # Its pool is gone and the one it named does not exist: the IP is withdrawn, said so.
    wait_for(lambda: cluster.ips("moving") == [], 10, "IP of the deleted pool withdrawn")
    wait_for(
        lambda: any(e[1] == "PoolNotFound" for e in cluster.events("moving")),
        10,
        "PoolNotFound Event",
    )


def test_restart_changes_no_ip_and_writes_nothing(cluster: Cluster) -> None:
    running = cluster.start_controller()
    pool = cluster.pool("c", "198.18.6.0/28")
    for index in range(8):
        cluster.service(f"s{index}", pool)
    before = {
        s["metadata"]["name"]: cluster.wait_ips(s["metadata"]["name"]) for s in cluster.services()
    }
    wait_for(
        lambda: (cluster.eip(pool).get("status") or {}).get("usage") == 8, 10, "8 IPs in status"
    )
    versions = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in cluster.services()}
    eip_version = cluster.eip(pool)["metadata"]["resourceVersion"]
    running.halt()

    again = cluster.start_controller()
    wait_for(lambda: again.controller.reconciles >= 9, 10, "the restarted controller to resync")
    wait_for(lambda: len(again.controller.queue) == 0, 10, "queue drained")
    after = {s["metadata"]["name"]: cluster.ips(s["metadata"]["name"]) for s in cluster.services()}
    assert after == before
    assert {
        s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in cluster.services()
    } == versions
    assert cluster.eip(pool)["metadata"]["resourceVersion"] == eip_version


def test_racing_controllers_never_share_an_ip(cluster: Cluster) -> None:
    """Three controllers without leader election: the resourceVersion guard alone decides."""
    racing = [cluster.start_controller() for _ in range(3)]
    pool = cluster.pool("race", "198.18.7.0/26")
    names = [f"r{index}" for index in range(24)]
    for name in names:
        cluster.service(name, pool)
    ips = {name: cluster.wait_ips(name, timeout=30) for name in names}
    flat = [ip for found in ips.values() for ip in found]
    assert len(set(flat)) == len(flat) == len(names)
    used = wait_for(
        lambda: (
            (u := (cluster.eip(pool).get("status") or {}).get("used", {}))
            and len(u) == len(names)
            and u
        ),
        15,
        "every allocation recorded",
    )
    assert {ip: holder.split("/")[1] for ip, holder in used.items()} == {
        found[0]: name for name, found in ips.items()
    }
    # They usually hit conflicts here; correctness must not depend on it.
    assert all(r.controller.reconciles for r in racing)


def test_controller_process_with_leader_election(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """`porter-lb controller` as a process: allocates, hands the Lease over on SIGTERM, and
    a second process started afterwards changes no IP."""
    lease_namespace = cluster.namespace
    pool = cluster.pool("proc", "198.18.8.0/30")
    command = [
        sys.executable,
        "-m",
        "porter_lb",
        "controller",
        "--kubeconfig",
        str(control_plane.kubeconfig),
        "--namespace",
        lease_namespace,
        "--lease-duration",
        "4",
        "--renew-deadline",
        "3",
        "--retry-period",
        "0.5",
    ]
    metrics_port = _free_port()

    def start(name: str, extra: list[str] | None = None) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("wb")
        return subprocess.Popen(
            [*command, "--identity", name, *(extra or [])], stderr=log, stdout=log
        )

    first = start("first", ["--metrics-address", f"127.0.0.1:{metrics_port}"])
    try:
        cluster.service("p1", pool)
        ip = cluster.wait_ips("p1", timeout=20)
        exposition = wait_for(
            lambda: (
                f'porter_lb_pool_usage{{pool="{pool}"}} 1.0' in (m := _scrape(metrics_port)) and m
            ),
            10,
            "pool usage in /metrics",
        )
        assert f'porter_lb_pool_size{{pool="{pool}"}} 4.0' in exposition
        assert "porter_lb_leader 1.0" in exposition
        assert 'porter_lb_reconcile_duration_seconds_count{controller="allocation"}' in exposition
        first.terminate()
        assert first.wait(20) == 0
        lease = cluster.api.get(
            f"/apis/coordination.k8s.io/v1/namespaces/{lease_namespace}/leases/porter-lb-controller"
        )
        assert not lease["spec"].get("holderIdentity")  # released on SIGTERM

        second = start("second")
        try:
            cluster.service("p2", pool)
            assert len(cluster.wait_ips("p2", timeout=20)) == 1
            assert cluster.ips("p1") == ip
            cluster.delete_service("p1")
            cluster.delete_service("p2")
            wait_for(lambda: not cluster.services(), 20, "Services released by the process")
        finally:
            second.terminate()
            assert second.wait(20) == 0
    finally:
        if first.poll() is None:
            first.kill()
    logs = (tmp_path / "first.log").read_text()
    assert '"msg": "became leader"' in logs, logs[-2000:]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


def test_kubectl_columns_show_usage_and_readiness(cluster: Cluster) -> None:
    """`kubectl get eip`: the Table the API server renders from the CRD's printer columns."""
    cluster.start_controller()
    pool = cluster.pool("cols", "198.18.9.0/30")
    cluster.service("one", pool)
    cluster.wait_ips("one")

    def columns() -> dict[str, object]:
        configuration = cluster.api.api_client.configuration
        response = cluster.api.api_client.call_api(
            "GET",
            f"{configuration.host}{GROUP_PATH}/eips/{pool}",
            header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        ).response
        table = json.loads(response.data)
        names = [column["name"] for column in table["columnDefinitions"]]
        return dict(zip(names, table["rows"][0]["cells"], strict=True))

    cells = wait_for(lambda: (c := columns())["Usage"] == 1 and c, 10, "the Usage column at 1")
    assert (cells["CIDR"], cells["Total"], cells["Ready"], cells["Reason"]) == (
        "198.18.9.0/30",
        4,
        "True",
        "Ready",
    )


def test_claims_another_writer_made_are_never_overwritten(cluster: Cluster) -> None:
    """Deterministic form of the race: the cache has seen another controller's claim, the
    allocations have not. The Eip write must not drop that claim nor hand out its IP."""
    informers = Informers(cluster.api, ["Service", "Namespace", "Eip"], watch_timeout=30)
    controller = AllocationController(cluster.api, informers, EventRecorder(cluster.api, host="t"))
    controller.register()
    pool = cluster.pool("claims", "198.18.8.0/29")
    informers.start()
    try:
        assert informers.wait_synced(10)
        wait_for(lambda: informers.get("Eip", pool), 10, "the pool in the cache")
        controller.start()  # allocations built now: the pool is empty
        for name in ("x", "y"):
            cluster.service(name, pool)
        keys = {name: f"{cluster.namespace}/{name}" for name in ("x", "y")}
        wait_for(lambda: all(informers.get("Service", k) for k in keys.values()), 10, "cache")

        # "Another controller" gives y the pool's first IP: Eip status first, then Service.
        eip = cluster.eip(pool)
        eip["status"] = {"used": {"198.18.8.0": keys["y"]}}
        cluster.api.replace(f"{GROUP_PATH}/eips/{pool}/status", eip)
        cluster.api.merge_patch(
            f"/api/v1/namespaces/{cluster.namespace}/services/y/status",
            {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.8.0", "ipMode": "VIP"}]}}},
        )
        wait_for(
            lambda: ((informers.get("Eip", pool) or {}).get("status") or {}).get("used"),
            10,
            "the foreign claim in the cache",
        )

        def run_queue() -> list[str]:
            controller.process([f"svc:{keys['x']}"])
            while keys_left := controller._take_batch(timeout=0):
                controller.process(keys_left)
            return cluster.ips("x")

        x_ips = wait_for(run_queue, 10, "x to get an IP")
        assert x_ips == ["198.18.8.1"]
        assert cluster.ips("y") == ["198.18.8.0"]
        used = wait_for(
            lambda: (
                (u := (cluster.eip(pool).get("status") or {}).get("used", {})) and len(u) == 2 and u
            ),
            10,
            "both claims recorded",
        )
        assert used == {"198.18.8.0": keys["y"], "198.18.8.1": keys["x"]}
        assert controller.conflicts >= 1
    finally:
        controller.stop()
        informers.stop()
