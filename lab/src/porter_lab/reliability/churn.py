"""Churn soak: thousands of random changes to a running system, then nothing may drift.

The system is the real thing: `porter-lb controller` allocating, one `porter-lb agent` and its
gobgpd per node in three node namespaces, a BIRD router putting what it learns into its
kernel FIB, all fed through a real kube-apiserver. A seeded random walk changes the cluster
as fast as the API server takes it, in bursts, never waiting for the system to follow:

* Services created (externalTrafficPolicy Local or Cluster; some ask for an IP, some for a
  pool, some carry a sharing key) and deleted (their finalizer is the controller's to lift);
* a Service's EndpointSlice rewritten: endpoints added, removed, moved between nodes, made
  not ready ("resize"); a Service's externalTrafficPolicy switched; its asks changed;
* Nodes flapping Ready/NotReady;
* Eips added (bound to the test's namespace, or only given on request), disabled and
  enabled again (`spec.disable`), deleted while Services hold their addresses;
* the BgpPeer changed: its hold time, or its nodeSelector (all nodes, rack a, rack b), so
  sessions go and come back.

Then the walk stops and the scenario polls (with a deadline) until the system is quiescent:
every check below passes, and keeps passing for a few seconds.

* **routes**: the router's kernel FIB (every /32 of the router's accepted EIP range)
  equals what the soak's own rule (`expected_fib`, a few lines, not porter-lb's functions)
  says the final cluster state must give;
* **leaks**: every Eip's `status.used` names existing Services that show that IP, `usage`
  counts them, every Service with an IP is recorded in its Eip, no two Services share an IP
  without the same sharing key, no Service is stuck being deleted;
* **settled** (`find_unsettled`, the soak's own rule again): no Service waits for an IP that
  is free for it, no Service holds an IP its request no longer allows.

Throughout, the RSS of the controller and the agents is sampled (/proc/PID/status VmRSS), and
at the end their logs are searched for tracebacks and ERROR lines. What is measured comes
back as a `ChurnResult`; tests/reliability/test_churn.py asserts, bench/churn_soak.py reports.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import queue
import random
import re
import socket
import threading
import time
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from porter_lab import netns, objects
from porter_lab.agents import Agent, start_node_speaker
from porter_lab.controllers import start_controller
from porter_lab.controlplane import ControlPlane
from porter_lab.kube import apply_crds
from porter_lab.objects import DEFAULT_EIP_ANNOTATION
from porter_lab.paths import CRD_DIR
from porter_lab.processes import Daemon
from porter_lab.routers import Bird, Neighbor, RouterSpec, established
from porter_lab.speakers import Gobgpd
from porter_lab.topology import EIP_POOL, NODE_ASN, ROUTER_ASN, Topology, run_id
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI, KubeError
from porter_lb.model.resources import (
    REQUESTED_IP_ANNOTATIONS,
    REQUESTED_POOL_ANNOTATIONS,
    SERVICE_NAME_LABEL,
    SHARING_KEY_ANNOTATION,
    ModelError,
    Obj,
    load_balancer_ips,
    pool_from_eip,
    selects_porter,
    service_key,
)
from porter_lb.routing import audit, audit_sources

SYSTEM_NAMESPACE = "porter-lb-system"
DEFAULT_POOL = "203.0.113.0/28"  # 16 addresses: with 40 Services, exhaustion is routine
EXTRA_POOLS = tuple(f"203.0.113.{16 * i}/28" for i in range(1, 5))  # the slots Eips come and go in
RACKS = {"node1": "a", "node2": "a", "node3": "b"}
SELECTORS: tuple[dict[str, str] | None, ...] = (None, {"rack": "a"}, {"rack": "b"})
STEP_KINDS = (
    "create_service",
    "delete_service",
    "resize",
    "switch_policy",
    "change_request",
    "node_flap",
    "pool_add",
    "pool_disable",
    "pool_delete",
    "peer_change",
)


@dataclass(frozen=True)
class ChurnConfig:
    steps: int = 10_000
    seed: int = 1
    max_seconds: float = 300.0  # the walk stops here even if `steps` are not all done
    max_services: int = 40
    workers: int = 4  # threads sending the walk's API calls (one object: always the same)
    burst_max: int = 40  # steps issued back to back ...
    pause_max: float = 0.05  # ... then a pause of up to this many seconds
    quiesce_timeout: float = 120.0
    stable_seconds: float = 3.0  # quiescent: every check passes for this long
    rss_interval: float = 0.5


@dataclass
class RssSeries:
    """VmRSS samples of one process: (seconds since start, steps done, KiB)."""

    samples: list[tuple[float, int, int]] = field(default_factory=list)

    def at_step(self, step: int) -> int:
        """The first sample taken once `step` steps were done (the last one if none)."""
        for _, done, kib in self.samples:
            if done >= step:
                return kib
        return self.samples[-1][2] if self.samples else 0

    def slope_kib_per_1000_steps(self, from_step: int) -> float:
        """Least-squares slope of RSS over steps, from `from_step` on."""
        points = [(done, kib) for _, done, kib in self.samples if done >= from_step]
        if len(points) < 2:
            return 0.0
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        var = sum((x - mean_x) ** 2 for x, _ in points)
        if not var:
            return 0.0
        cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
        return 1000 * cov / var


@dataclass
class Memory:
    """One process's RSS at the start, after warm-up (10% of the steps), half way, at the end
    of the walk; `growth` is end over half way, minus 1 (flat: < 0.10)."""

    start: int
    warm: int
    mid: int
    end: int
    slope: float  # KiB per 1000 steps over the second half

    @property
    def growth(self) -> float:
        return self.end / self.mid - 1 if self.mid else 0.0


@dataclass
class Checks:
    """The end-state checks; every list empty means the system is where it should be."""

    routes: dict[str, Any]  # compare_fib's report: the FIB against expected_fib
    leaks: list[str]
    unsettled: list[str]
    metrics: list[str]  # the controller's gauges against the cluster

    @property
    def ok(self) -> bool:
        return (
            bool(self.routes["in_sync"])
            and not self.leaks
            and not self.unsettled
            and not self.metrics
        )


@dataclass
class ChurnResult:
    config: ChurnConfig
    steps: int
    seconds: float
    by_kind: dict[str, int]
    api_errors: list[str]
    quiesce_seconds: float | None  # None: never quiescent before the deadline
    checks: Checks
    final: dict[str, int]  # Services, with an IP, prefixes desired, pools, ready nodes
    memory: dict[str, Memory]
    crashed: list[str]
    log_problems: list[str]

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0


class Sender:
    """API calls sent by `workers` threads, those about one object always by the same thread
    in the order given: the walk runs ahead of the API server by at most `depth` calls per
    thread, and a Service is never deleted before it was created."""

    def __init__(self, workers: int, depth: int = 20) -> None:
        self.queues: list[queue.Queue[Callable[[], None] | None]] = [
            queue.Queue(depth) for _ in range(workers)
        ]
        self.threads = [
            threading.Thread(target=self._run, args=(q,), daemon=True) for q in self.queues
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, calls: queue.Queue[Callable[[], None] | None]) -> None:
        while (call := calls.get()) is not None:
            try:
                call()
            finally:
                calls.task_done()

    def send(self, key: str, call: Callable[[], None]) -> None:
        self.queues[zlib.crc32(key.encode()) % len(self.queues)].put(call)

    def drain(self) -> None:
        """Wait until every call sent so far has been made."""
        for calls in self.queues:
            calls.join()

    def close(self) -> None:
        for calls in self.queues:
            calls.put(None)
        for thread in self.threads:
            thread.join(30)


# --- the walk's model of what it made -----------------------------------------------------------


@dataclass
class ServiceModel:
    name: str
    policy: str
    port: int
    sharing_key: str = ""
    requested_ip: str = ""
    requested_pool: str = ""


@dataclass
class PoolModel:
    name: str
    cidr: str
    disabled: bool = False
    namespaced: bool = True  # offered automatically to the test's namespace; else on request


@dataclass
class Walk:
    """A seeded random walk over the cluster; every step is one or two API calls."""

    api: KubeAPI
    namespace: str
    tag: str
    rng: random.Random
    config: ChurnConfig
    services: dict[str, ServiceModel] = field(default_factory=dict)
    pools: dict[str, PoolModel] = field(default_factory=dict)
    ready: dict[str, bool] = field(default_factory=dict)
    node_addresses: dict[str, str] = field(default_factory=dict)
    peer_name: str = ""
    peer_selector: int = 0
    peer_hold: int = 9
    default_disabled: bool = False
    counter: int = 0
    done: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    sender: Sender = field(default_factory=lambda: Sender(1))

    @property
    def default_pool(self) -> str:
        return f"churn-{self.tag}-default"

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    # Bodies.

    def service_body(self, model: ServiceModel) -> Obj:
        body = objects.load_balancer_service(
            model.name, self.namespace, policy=model.policy, node_ports=False
        )
        body["spec"]["ports"] = [{"port": model.port, "protocol": "TCP"}]
        annotations = {}
        if model.sharing_key:
            annotations[SHARING_KEY_ANNOTATION] = model.sharing_key
            # Local Services share an IP only with the same backends: one selector per key.
            body["spec"]["selector"] = {"app": model.sharing_key}
        if model.requested_ip:
            annotations[REQUESTED_IP_ANNOTATIONS[0]] = model.requested_ip
        if model.requested_pool:
            annotations[REQUESTED_POOL_ANNOTATIONS[0]] = model.requested_pool
        if annotations:
            body["metadata"]["annotations"] = annotations
        return body

    def slice_body(self, service: str) -> Obj:
        endpoints = []
        for i in range(self.rng.choice((0, 1, 1, 2, 2, 3, 4))):
            endpoints.append(
                {
                    "addresses": [f"10.244.{self.rng.randrange(250)}.{i + 1}"],
                    "nodeName": self.rng.choice(sorted(self.ready)),
                    "conditions": {"ready": self.rng.random() > 0.2},
                }
            )
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-1",
                "namespace": self.namespace,
                "labels": {SERVICE_NAME_LABEL: service},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }

    def pool_body(self, model: PoolModel) -> Obj:
        body = objects.eip(model.name, model.cidr)
        if model.namespaced:
            body["spec"]["namespaces"] = [self.namespace]
        if model.disabled:
            body["spec"]["disable"] = True
        return body

    def peer_body(self) -> Obj:
        selector = SELECTORS[self.peer_selector]
        body = objects.bgp_peer(self.peer_name, "198.51.100.1", node_labels=selector)
        body["spec"]["timers"]["config"]["holdTime"] = str(self.peer_hold)
        return body

    def random_ip(self) -> str:
        cidr = self.rng.choice((DEFAULT_POOL, DEFAULT_POOL, *EXTRA_POOLS))
        base = cidr.split("/")[0].rsplit(".", 1)
        return f"{base[0]}.{int(base[1]) + self.rng.randrange(16)}"

    def random_request(self, model: ServiceModel) -> None:
        roll = self.rng.random()
        model.sharing_key = model.requested_ip = model.requested_pool = ""
        if roll < 0.15:
            model.sharing_key = self.rng.choice(("shared-a", "shared-b"))
        elif roll < 0.25:
            model.requested_ip = self.random_ip()
        elif roll < 0.35:
            names = [*sorted(self.pools), f"churn-{self.tag}-gone"]
            model.requested_pool = self.rng.choice(names)

    # Steps. Each returns False when it does not apply now (the walk picks another).

    def create_service(self) -> bool:
        if len(self.services) >= self.config.max_services:
            return False
        number = self._next()
        model = ServiceModel(
            f"s{number}", self.rng.choice(("Local", "Cluster")), 1000 + number % 30000
        )
        self.random_request(model)
        self.call(
            "create_service",
            model.name,
            self.api.create,
            objects.endpoint_slices(self.namespace),
            self.slice_body(model.name),
        )
        self.call(
            "create_service",
            model.name,
            self.api.create,
            objects.services(self.namespace),
            self.service_body(model),
        )
        self.services[model.name] = model
        return True

    def delete_service(self) -> bool:
        if not self.services:
            return False
        name = self.rng.choice(sorted(self.services))
        del self.services[name]
        self.call(
            "delete_service", name, self.api.delete, f"{objects.services(self.namespace)}/{name}"
        )
        self.call(
            "delete_service",
            name,
            self.api.delete,
            f"{objects.endpoint_slices(self.namespace)}/{name}-1",
        )
        return True

    def resize(self) -> bool:
        if not self.services:
            return False
        name = self.rng.choice(sorted(self.services))
        body = self.slice_body(name)
        self.call(
            "resize",
            name,
            self.api.merge_patch,
            f"{objects.endpoint_slices(self.namespace)}/{name}-1",
            {"endpoints": body["endpoints"]},
        )
        return True

    def switch_policy(self) -> bool:
        if not self.services:
            return False
        model = self.services[self.rng.choice(sorted(self.services))]
        model.policy = "Cluster" if model.policy == "Local" else "Local"
        self.call(
            "switch_policy",
            model.name,
            self.api.merge_patch,
            f"{objects.services(self.namespace)}/{model.name}",
            {"spec": {"externalTrafficPolicy": model.policy}},
        )
        return True

    def change_request(self) -> bool:
        if not self.services:
            return False
        model = self.services[self.rng.choice(sorted(self.services))]
        self.random_request(model)
        body = self.service_body(model)
        annotations = dict.fromkeys(
            (SHARING_KEY_ANNOTATION, REQUESTED_IP_ANNOTATIONS[0], REQUESTED_POOL_ANNOTATIONS[0])
        )
        annotations.update(body["metadata"].get("annotations", {}))
        self.call(
            "change_request",
            model.name,
            self.api.merge_patch,
            f"{objects.services(self.namespace)}/{model.name}",
            {
                "metadata": {"annotations": annotations},
                "spec": {"selector": body["spec"]["selector"]},
            },
        )
        return True

    def node_flap(self) -> bool:
        down = sorted(n for n, ready in self.ready.items() if not ready)
        # Mostly back up again: the nodes spend most of the walk Ready, some of it not.
        node = self.rng.choice(down if down and self.rng.random() < 0.7 else sorted(self.ready))
        self.ready[node] = not self.ready[node]
        self.call(
            "node_flap",
            node,
            self.api.merge_patch,
            f"{objects.NODES}/{node}/status",
            objects.node_status(ready=self.ready[node], address=self.node_addresses[node]),
        )
        return True

    def pool_add(self) -> bool:
        taken = {p.cidr for p in self.pools.values()}
        free = [c for c in EXTRA_POOLS if c not in taken]
        if not free:
            return False
        cidr = self.rng.choice(free)
        slot = EXTRA_POOLS.index(cidr) + 1
        model = PoolModel(
            f"churn-{self.tag}-p{slot}-{self._next()}", cidr, namespaced=self.rng.random() < 0.7
        )
        self.pools[model.name] = model
        self.call("pool_add", model.name, self.api.create, objects.EIPS, self.pool_body(model))
        return True

    def pool_disable(self) -> bool:
        names = [self.default_pool, *sorted(self.pools)]
        name = self.rng.choice(names)
        model = self.pools.get(name)
        if model is not None:
            model.disabled = not model.disabled
            disabled = model.disabled
        else:
            self.default_disabled = not self.default_disabled
            disabled = self.default_disabled
        self.call(
            "pool_disable",
            name,
            self.api.merge_patch,
            f"{objects.EIPS}/{name}",
            {"spec": {"disable": True if disabled else None}},
        )
        return True

    def pool_delete(self) -> bool:
        if not self.pools:
            return False
        name = self.rng.choice(sorted(self.pools))
        del self.pools[name]
        self.call("pool_delete", name, self.api.delete, f"{objects.EIPS}/{name}")
        return True

    def peer_change(self) -> bool:
        if self.rng.random() < 0.5:
            self.peer_hold = 12 if self.peer_hold == 9 else 9
        else:
            self.peer_selector = self.rng.choice(
                [i for i in range(len(SELECTORS)) if i != self.peer_selector]
            )
        body = self.peer_body()
        self.call(
            "peer_change",
            self.peer_name,
            self.api.merge_patch,
            f"{objects.BGP_PEERS}/{self.peer_name}",
            {
                "spec": {
                    "timers": body["spec"]["timers"],
                    "nodeSelector": body["spec"].get("nodeSelector"),
                }
            },
        )
        return True

    def call(self, kind: str, key: str, request: Callable[..., object], *args: Any) -> None:
        """Send `request(*args)` (its arguments built now) through the sender of `key`."""
        self.sender.send(key, functools.partial(self._attempt, kind, request, *args))

    def _attempt(self, kind: str, request: Callable[..., object], *args: Any) -> None:
        try:
            request(*args)
        except KubeError as error:
            self.errors.append(f"{kind}: {error}")

    WEIGHTS: ClassVar[dict[str, int]] = {
        "create_service": 22,
        "delete_service": 14,
        "resize": 26,
        "switch_policy": 10,
        "change_request": 8,
        "node_flap": 8,
        "pool_add": 4,
        "pool_disable": 3,
        "pool_delete": 1,
        "peer_change": 1,
    }

    def step(self) -> str:
        kinds = list(self.WEIGHTS)
        weights = [self.WEIGHTS[k] for k in kinds]
        for _ in range(20):
            kind = self.rng.choices(kinds, weights)[0]
            if getattr(self, kind)():
                self.done[kind] += 1
                return kind
        raise RuntimeError("no step applies")  # cannot happen: node_flap always does


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the bed ------------------------------------------------------------------------------------


@dataclass
class ChurnBed:
    """Router, node namespaces, gobgpds, agents and the controller, around one control plane."""

    api: KubeAPI
    kubeconfig: Path
    workdir: Path
    tag: str = field(default_factory=run_id)
    topology: Topology = field(init=False)
    router: Bird | None = None
    speakers: list[Gobgpd] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    controller: Daemon | None = None
    metrics_address: str = field(default_factory=lambda: f"127.0.0.1:{_free_port()}")
    cluster_paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.topology = Topology(self.tag, node_count=3)

    @property
    def namespace(self) -> str:
        return f"churn-{self.tag}"

    def processes(self) -> dict[str, Daemon]:
        found = {}
        if self.controller is not None:
            found["controller"] = self.controller
        for agent in self.agents:
            if agent.daemon is not None:
                found[f"agent-{agent.node}"] = agent.daemon
        return found

    def _create(self, path: str, body: Obj) -> None:
        try:
            self.api.create(path, body)
        except KubeError as error:
            if error.status != 409:
                raise
            self.api.delete(f"{path}/{body['metadata']['name']}")  # a leftover: start clean
            self.api.create(path, body)
        self.cluster_paths.append(f"{path}/{body['metadata']['name']}")

    def start(self, walk: Walk) -> None:
        self.topology.create()
        spec = RouterSpec(
            asn=ROUTER_ASN,
            router_id=self.topology.router_address,
            neighbors=tuple(Neighbor(n.address, NODE_ASN, n.name) for n in self.topology.nodes),
            pools=(EIP_POOL,),
        )
        self.router = Bird(self.topology.router_ns, spec, self.workdir / "bird").start()
        for name in (self.namespace, SYSTEM_NAMESPACE):
            objects.ensure_namespace(self.api, name)
        for node in self.topology.nodes:
            self._create(objects.NODES, objects.node(node.name, {"rack": RACKS[node.name]}))
            objects.set_node_status(self.api, node.name, address=node.address)
            walk.ready[node.name] = True
            walk.node_addresses[node.name] = node.address
        walk.peer_name = f"churn-{self.tag}"
        self._create(objects.EIPS, objects.eip(walk.default_pool, DEFAULT_POOL, default=True))
        self._create(objects.BGP_CONFS, objects.bgp_conf(NODE_ASN))
        self._create(objects.BGP_PEERS, walk.peer_body())
        for node in self.topology.nodes:
            speaker, agent = start_node_speaker(
                node, self.kubeconfig, self.workdir, agent_args=("--log-level", "info")
            )
            self.speakers.append(speaker)
            assert agent is not None
            self.agents.append(agent)
        self.controller = start_controller(
            self.kubeconfig,
            self.workdir / "controller.log",
            "--retry-period",
            "0.5",
            "--log-format",
            "text",
            "--log-level",
            "info",
            "--metrics-address",
            self.metrics_address,
            identity=f"churn-{self.tag}",
            namespace=SYSTEM_NAMESPACE,
            name="controller",
        )
        established(self.router, timeout=30)

    def stop(self) -> None:
        """Delete what the soak made (Services first, while the controller lifts their
        finalizers), then stop every process and remove the namespaces."""
        with contextlib.suppress(Exception):
            self._delete_services()
        for path in reversed(self.cluster_paths):
            with contextlib.suppress(Exception):
                objects.delete_if_present(self.api, path)
        if self.controller is not None:
            self.controller.stop(20)
        for agent in self.agents:
            agent.stop()
        for speaker in self.speakers:
            speaker.stop()
        if self.router is not None:
            self.router.stop()
        self.topology.destroy()

    def _delete_services(self) -> None:
        services = objects.services(self.namespace)
        slices = objects.endpoint_slices(self.namespace)
        for obj in self.api.list(slices)[0]:
            objects.delete_if_present(self.api, f"{slices}/{obj['metadata']['name']}")
        for obj in self.api.list(services)[0]:
            objects.delete_if_present(self.api, f"{services}/{obj['metadata']['name']}")
        try:
            wait_for(lambda: not self.api.list(services)[0], 30, "the soak's Services gone")
        finally:
            for obj in self.api.list(services)[0]:  # the controller did not: let them go
                with contextlib.suppress(KeyError, KubeError):
                    self.api.merge_patch(
                        f"{services}/{obj['metadata']['name']}", {"metadata": {"finalizers": None}}
                    )


# --- the checks (pure, on one listing of the cluster) -------------------------------------------


def _holders(text: str) -> set[str]:
    return {h.strip() for h in str(text).split(";") if h.strip()}


def _eip_problems(eip: Obj, shown: dict[str, set[str]], recorded: dict[str, set[str]]) -> list[str]:
    """What is wrong with one Eip's status; notes its holders in `recorded` (IP -> keys)."""
    name = eip["metadata"]["name"]
    status = eip.get("status") or {}
    used = dict(status.get("used") or {})
    problems = []
    if status.get("usage", 0) != len(used):
        problems.append(f"Eip {name}: usage {status.get('usage')} but {len(used)} used")
    try:
        pool = pool_from_eip(eip)
    except ModelError as error:
        return [*problems, f"Eip {name}: {error}"]
    for ip, text in used.items():
        if ip not in pool.addresses:
            problems.append(f"Eip {name}: used IP {ip} outside its spec.address")
        for holder in _holders(text):
            recorded.setdefault(ip, set()).add(holder)
            if holder not in shown:
                problems.append(f"Eip {name}: {ip} held by {holder}, which does not exist")
            elif ip not in shown[holder]:
                problems.append(
                    f"Eip {name}: {ip} held by {holder}, whose status shows {sorted(shown[holder])}"
                )
    return problems


def find_leaks(state: audit.ClusterState, namespace: str) -> list[str]:
    """Every way the Eips' records and the Services' IPs disagree (see the module docstring)."""
    services = {
        service_key(s): s
        for s in state.services
        if s.get("metadata", {}).get("namespace") == namespace
    }
    shown = {key: set(load_balancer_ips(s)) for key, s in services.items()}
    recorded: dict[str, set[str]] = {}  # IP -> holders, over every Eip
    problems = [p for eip in state.eips for p in _eip_problems(eip, shown, recorded)]
    sharing: dict[str, list[str]] = {}
    for key, ips in shown.items():
        metadata = services[key]["metadata"]
        if metadata.get("deletionTimestamp"):
            problems.append(
                f"Service {key}: still being deleted (finalizers {metadata.get('finalizers')})"
            )
        for ip in ips:
            sharing.setdefault(ip, []).append(key)
            if key not in recorded.get(ip, set()):
                problems.append(f"Service {key}: shows {ip}, which no Eip records for it")
    for ip, keys in sharing.items():
        sharing_keys = {
            (services[k]["metadata"].get("annotations") or {}).get(SHARING_KEY_ANNOTATION, "")
            for k in keys
        }
        if len(keys) > 1 and (len(sharing_keys) != 1 or sharing_keys == {""}):
            problems.append(f"IP {ip} shared by {sorted(keys)} without one sharing key")
    return problems


# The soak's own rules for the end state. They read the objects as plain JSON and say in a few
# lines what must hold; they never call porter-lb's allocator or route computation, so a wrong
# rule there cannot pass by grading itself.


def _live(obj: Obj) -> bool:
    return not (obj.get("metadata") or {}).get("deletionTimestamp")


def _annotations(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _shown(service: Obj) -> list[str]:
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(entry["ip"]) for entry in ingress if entry.get("ip")]


def _eip_range(eip: Obj) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(eip["spec"]["address"])  # the soak's Eips are all CIDRs


def _our_services(state: audit.ClusterState, namespace: str) -> list[Obj]:
    """The soak's LoadBalancer Services that are not being deleted."""
    return [
        s
        for s in state.services
        if (s.get("metadata") or {}).get("namespace") == namespace
        and (s.get("spec") or {}).get("type") == "LoadBalancer"
        and _live(s)
    ]


def find_unsettled(state: audit.ClusterState, namespace: str) -> list[str]:
    """Services whose IPs are not where the allocation rules put them. The rules, as the soak
    states them (a Service asks for an IP with REQUESTED_IP_ANNOTATIONS[0], for an Eip with
    REQUESTED_POOL_ANNOTATIONS[0]; an Eip serves a namespace it lists in spec.namespaces, and
    every namespace when it carries the default annotation):

    * an IP a Service shows lies in an Eip that exists and is not being deleted; it is the IP
      asked for, if one is; it lies in the Eip asked for, if one is;
    * a Service that shows no IP asks for nothing that could be given: no address of the Eips
      it may get one from (the one it asks for, else those serving its namespace), when they
      are not disabled, is free (shown by no Service), and the IP it asks for, if any, is not
      free in such an Eip.
    """
    eips = {e["metadata"]["name"]: e for e in state.eips if _live(e)}
    services = _our_services(state, namespace)
    taken = {ip for s in state.services for ip in _shown(s)}
    problems = []
    for service in services:
        name = service_key(service)
        ns = service["metadata"].get("namespace", "")
        asks = _annotations(service)
        asked_ip = asks.get(REQUESTED_IP_ANNOTATIONS[0], "")
        asked_pool = asks.get(REQUESTED_POOL_ANNOTATIONS[0], "")
        shown = _shown(service)
        for ip in shown:
            homes = [n for n, e in eips.items() if ipaddress.ip_address(ip) in _eip_range(e)]
            if not homes:
                problems.append(f"Service {name}: shows {ip}, in no Eip")
            elif asked_ip and ip != asked_ip:
                problems.append(f"Service {name}: shows {ip}, asks for {asked_ip}")
            elif asked_pool and asked_pool not in homes:
                problems.append(f"Service {name}: shows {ip}, asks for Eip {asked_pool}")
        if shown:
            continue
        if asked_pool:
            candidates = [eips[asked_pool]] if asked_pool in eips else []
        else:
            candidates = [
                e
                for e in eips.values()
                if ns in ((e.get("spec") or {}).get("namespaces") or [])
                or _annotations(e).get(DEFAULT_EIP_ANNOTATION) == "true"
            ]
        open_pools = [e for e in candidates if not (e.get("spec") or {}).get("disable")]
        if asked_ip:
            free = [
                asked_ip
                for e in open_pools
                if ipaddress.ip_address(asked_ip) in _eip_range(e) and asked_ip not in taken
            ]
        else:
            free = [str(ip) for e in open_pools for ip in _eip_range(e) if str(ip) not in taken]
        if free:
            problems.append(f"Service {name}: shows no IP, though {free[0]} is free for it")
    return problems


def expected_fib(
    state: audit.ClusterState, namespace: str, node_addresses: dict[str, str], peer: str
) -> dict[str, set[str]]:
    """What the router's FIB must hold, by the soak's rule: every IP a Service of `namespace`
    shows (`_our_services`), inside an Eip that exists and is not being deleted, is a /32
    whose next hops are the addresses of the nodes that

    * are Ready and not labelled node.kubernetes.io/exclude-from-external-load-balancers,
    * are picked by BgpPeer `peer`'s nodeSelector (its matchLabels; none: every node),
    * with externalTrafficPolicy Local: host an endpoint of the Service (an EndpointSlice
      labelled with its name) whose `conditions.ready` is not false.

    No such node: no route.
    """
    nodes = {n["metadata"]["name"]: n for n in state.nodes}
    bgp_peer = next(p for p in state.bgppeers if p["metadata"]["name"] == peer)
    selector = ((bgp_peer["spec"].get("nodeSelector") or {}).get("matchLabels")) or {}

    def serves(name: str) -> bool:
        node = nodes.get(name)
        if node is None:
            return False
        labels = node["metadata"].get("labels") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (node.get("status") or {}).get("conditions") or []
        )
        excluded = "node.kubernetes.io/exclude-from-external-load-balancers" in labels
        picked = all(labels.get(k) == v for k, v in selector.items())
        return ready and not excluded and picked

    ranges = [_eip_range(e) for e in state.eips if _live(e)]
    expected: dict[str, set[str]] = {}
    for service in _our_services(state, namespace):
        name = service["metadata"]["name"]
        if (service.get("spec") or {}).get("externalTrafficPolicy") == "Local":
            hosting = {
                endpoint.get("nodeName")
                for endpoint_slice in state.endpoint_slices
                if endpoint_slice["metadata"].get("namespace") == namespace
                and (endpoint_slice["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == name
                for endpoint in endpoint_slice.get("endpoints") or []
                if (endpoint.get("conditions") or {}).get("ready") is not False
            }
        else:
            hosting = set(nodes)
        hops = {node_addresses[n] for n in hosting if n in node_addresses and serves(n)}
        for ip in _shown(service):
            if hops and any(ipaddress.ip_address(ip) in r for r in ranges):
                expected.setdefault(f"{ip}/32", set()).update(hops)
    return expected


def compare_fib(expected: dict[str, set[str]], fib: dict[str, set[str]], scope: str) -> Obj:
    """The FIB's /32s inside `scope` against `expected`: missing, stale, wrong next hops."""
    network = ipaddress.ip_network(scope)
    observed = {
        p: hops
        for p, hops in fib.items()
        if ipaddress.ip_network(p).version == network.version
        and ipaddress.ip_network(p).subnet_of(network)  # type: ignore[arg-type]
    }
    missing = sorted(set(expected) - set(observed))
    stale = sorted(set(observed) - set(expected))
    wrong = [
        {"prefix": p, "want": sorted(expected[p]), "have": sorted(observed[p])}
        for p in sorted(set(expected) & set(observed))
        if expected[p] != observed[p]
    ]
    return {
        "in_sync": not (missing or stale or wrong),
        "counts": {"desired": len(expected), "observed": len(observed)},
        "missing": missing,
        "stale": stale,
        "wrong_next_hops": wrong,
    }


def fib_summary(report: Obj) -> str:
    """One line naming what differs (for an assertion message)."""
    return (
        f"{len(report['missing'])} missing {report['missing'][:5]}, "
        f"{len(report['stale'])} stale {report['stale'][:5]}, "
        f"{len(report['wrong_next_hops'])} with wrong next hops {report['wrong_next_hops'][:3]}"
    )


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text exposition -> (name, labels) -> value."""
    found = {}
    for line in text.splitlines():
        matched = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if matched and not line.startswith("#"):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', matched.group(2) or ""))
            found[(matched.group(1), labels)] = float(matched.group(3))
    return found


def metric_problems(text: str, state: audit.ClusterState) -> list[str]:
    """The controller's gauges against the cluster: Services allocated and refused, and one
    pool_size/pool_usage series per existing Eip, with the usage its status shows."""
    samples = _samples(text)
    ours = [
        s
        for s in state.services
        if selects_porter(s) and not s.get("metadata", {}).get("deletionTimestamp")
    ]
    with_ip = sum(1 for s in ours if load_balancer_ips(s))
    problems = []
    for outcome, want in (("allocated", with_ip), ("refused", len(ours) - with_ip)):
        have = samples.get(("porter_lb_allocations", frozenset({("state", outcome)})))
        if have != want:
            problems.append(f"porter_lb_allocations{{state={outcome!r}}} is {have}, want {want}")
    usage = {e["metadata"]["name"]: (e.get("status") or {}).get("usage", 0) for e in state.eips}
    for name in ("porter_lb_pool_size", "porter_lb_pool_usage"):
        series = {dict(labels)["pool"]: v for (n, labels), v in samples.items() if n == name}
        if set(series) != set(usage):
            problems.append(f"{name}: series for {sorted(series)}, Eips {sorted(usage)}")
        elif name == "porter_lb_pool_usage" and series != usage:
            problems.append(f"{name}: {series}, Eips' status.usage {usage}")
    return problems


def read_metrics(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        return str(response.read().decode())


def check(bed: ChurnBed, peer: str) -> Checks:
    """One listing of the cluster, one read of the router's FIB and of the controller's
    metrics, compared with the soak's rules."""
    state = audit_sources.read_cluster(bed.api, SYSTEM_NAMESPACE)
    addresses = {node.name: node.address for node in bed.topology.nodes}
    expected = expected_fib(state, bed.namespace, addresses, peer)
    # The whole range the router accepts: a route left behind by a deleted Eip counts too.
    report = compare_fib(expected, netns.host_routes(bed.topology.router_ns), EIP_POOL)
    return Checks(
        report,
        find_leaks(state, bed.namespace),
        find_unsettled(state, bed.namespace),
        metric_problems(read_metrics(bed.metrics_address), state),
    )


# --- running it ---------------------------------------------------------------------------------


class RssSampler:
    """VmRSS of some processes every `interval` seconds, tagged with the steps done so far."""

    def __init__(self, pids: dict[str, int], interval: float, progress: Callable[[], int]):
        self.pids, self.interval, self.progress = pids, interval, progress
        self.series = {name: RssSeries() for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def sample(self) -> None:
        now, done = time.monotonic() - self._started, self.progress()
        for name, pid in self.pids.items():
            kib = rss_kib(pid)
            if kib:
                self.series[name].samples.append((now, done, kib))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB; 0 when it is gone."""
    return status_kib(pid, "VmRSS")


def status_kib(pid: int, field: str) -> int:
    """A KiB field of /proc/PID/status (VmRSS, VmHWM, ...); 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def log_problems(logs: dict[str, Path]) -> list[str]:
    """Lines of porter-lb's logs that say something crashed or failed: tracebacks, ERROR."""
    found = []
    for name, path in logs.items():
        with contextlib.suppress(FileNotFoundError):
            for line in path.read_text(errors="replace").splitlines():
                if "Traceback" in line or " ERROR " in line or " CRITICAL " in line:
                    found.append(f"{name}: {line[:300]}")
    return found


def _memory(series: RssSeries, steps: int) -> Memory:
    return Memory(
        start=series.samples[0][2] if series.samples else 0,
        warm=series.at_step(steps // 10),
        mid=series.at_step(steps // 2),
        end=series.at_step(steps),
        slope=series.slope_kib_per_1000_steps(steps // 2),
    )


def _wait_quiescent(bed: ChurnBed, config: ChurnConfig, peer: str) -> tuple[float | None, Checks]:
    """Poll the checks until they pass for `stable_seconds` in a row; (seconds until the
    passing run began or None, the last checks)."""
    started = time.monotonic()
    deadline = started + config.quiesce_timeout
    passing_since: float | None = None
    while True:
        checks = check(bed, peer)
        now = time.monotonic()
        if checks.ok:
            passing_since = passing_since if passing_since is not None else now
            if now - passing_since >= config.stable_seconds:
                return passing_since - started, checks
        else:
            passing_since = None
        if now >= deadline:
            return None, checks
        for process in bed.processes().values():
            if not process.running():
                return None, checks  # a crash: waiting longer cannot help
        time.sleep(0.2)


def _final_counts(api: KubeAPI, namespace: str, checks: Checks) -> dict[str, int]:
    state = audit_sources.read_cluster(api, SYSTEM_NAMESPACE)
    ours = [s for s in state.services if s.get("metadata", {}).get("namespace") == namespace]
    return {
        "services": len(ours),
        "services_with_ip": sum(1 for s in ours if load_balancer_ips(s)),
        "desired_prefixes": int(checks.routes["counts"]["desired"]),
        "fib_prefixes": int(checks.routes["counts"]["observed"]),
        "pools": len(state.eips),
        "ready_nodes": sum(
            1
            for n in state.nodes
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (n.get("status") or {}).get("conditions") or []
            )
        ),
    }


@contextlib.contextmanager
def churn_bed(config: ChurnConfig, workdir: Path) -> Iterator[tuple[ChurnBed, Walk]]:
    """A control plane of its own (no other test's objects), the bed on it, and the walk;
    everything stopped and removed after."""
    plane = ControlPlane(workdir / "controlplane")
    try:
        plane.start()
        from kubernetes import config as kube_config

        api_client = kube_config.new_client_from_config(config_file=str(plane.kubeconfig))
        apply_crds(api_client, sorted(CRD_DIR.glob("*.yaml")))
        api = KubeAPI(api_client)
        bed = ChurnBed(api, plane.kubeconfig, workdir)
        walk = Walk(
            api,
            bed.namespace,
            bed.tag,
            random.Random(config.seed),
            config,
            sender=Sender(config.workers),
        )
        try:
            bed.start(walk)
            yield bed, walk
        finally:
            walk.sender.close()
            bed.stop()
    finally:
        plane.stop()


def run_churn(
    config: ChurnConfig,
    workdir: Path,
    progress: Callable[[int, float], None] | None = None,
) -> ChurnResult:
    """Build the bed, walk `config.steps` random steps (or until `config.max_seconds`), wait
    until quiescent, check, tear the bed down. `progress(steps, seconds)` is called after
    each thousand steps."""
    with churn_bed(config, workdir) as (bed, walk):
        api = bed.api
        # The system is up when the BGP sessions are; the controller holds its Lease when
        # the default Eip carries a status.
        wait_for(
            lambda: api.get(f"{objects.EIPS}/{walk.default_pool}").get("status") or {},
            60,
            "the controller to write the default Eip's status",
        )
        pids = {name: daemon.pid for name, daemon in bed.processes().items()}
        done = reported = 0
        rng = walk.rng
        with RssSampler(pids, config.rss_interval, lambda: done) as sampler:
            started = time.monotonic()
            stop_at = started + config.max_seconds
            while done < config.steps and time.monotonic() < stop_at:
                for _ in range(rng.randint(1, config.burst_max)):
                    walk.step()
                    done += 1
                    if done >= config.steps:
                        break
                if progress is not None and done // 1000 > reported:
                    reported = done // 1000
                    progress(done, time.monotonic() - started)
                time.sleep(rng.uniform(0, config.pause_max))  # pacing between bursts
            walk.sender.drain()
            seconds = time.monotonic() - started
        quiesce_seconds, checks = _wait_quiescent(bed, config, walk.peer_name)
        crashed = [name for name, daemon in bed.processes().items() if not daemon.running()]
        logs = {name: daemon.log for name, daemon in bed.processes().items()}
        return ChurnResult(
            config=config,
            steps=done,
            seconds=seconds,
            by_kind=dict(walk.done),
            api_errors=walk.errors,
            quiesce_seconds=quiesce_seconds,
            checks=checks,
            final=_final_counts(api, bed.namespace, checks),
            memory={name: _memory(s, done) for name, s in sampler.series.items()},
            crashed=crashed,
            log_problems=log_problems(logs),
        )


__all__ = [
    "STEP_KINDS",
    "Checks",
    "ChurnConfig",
    "ChurnResult",
    "Memory",
    "check",
    "find_leaks",
    "find_unsettled",
    "run_churn",
]
