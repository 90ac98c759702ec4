"""Per-node heartbeats on coordination.k8s.io Leases: which agents are alive, within a second.

Kubernetes' own node Leases are renewed every 10 s and a node is NotReady only after 40 s;
layer-2 failover needs to know in well under a second. Each agent therefore renews a Lease of
its own, `porter-lb-node-<node>` in porter-lb's namespace (label `porter-lb.io/heartbeat`),
every `interval` (0.25 s), and watches all of them.

**Expiry is judged by each observer on its own monotonic clock**, as `leader_election` does:
a node is alive while its Lease changed less than `timeout` (0.75 s: three renewals) ago by
the time THIS process saw it change. Timestamps written in the Lease are never compared with
the local clock (nodes' clocks may disagree). A released Lease (empty `holderIdentity`: the
agent stopped gracefully) is dead at once.

The Lease also carries, in annotation `layer2.porter-lb.io/unavailable`, the Eips the node
cannot answer for right now (interface missing, or without carrier), so a node with a cut link
hands its IPs over as soon as it notices (~0.1 s), even though its heartbeat, going over
another path, still arrives.

Cost: one PATCH per node per interval (4 writes/s per node) and each agent receives every
node's renewals. That suits clusters of tens of nodes; see docs/layer2.md.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from porter_lb.kube.api import KubeAPI, KubeError
from porter_lb.kube.watch_cache import WatchCache
from porter_lb.model.resources import Obj

log = logging.getLogger(__name__)

HEARTBEAT_LABEL = "porter-lb.io/heartbeat"
UNAVAILABLE_ANNOTATION = "layer2.porter-lb.io/unavailable"
LEASE_PREFIX = "porter-lb-node-"
DEFAULT_INTERVAL = 0.25
DEFAULT_TIMEOUT = 0.75


def lease_name(node: str) -> str:
    return f"{LEASE_PREFIX}{node}"


def _now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _leases_path(namespace: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


@dataclass(frozen=True)
class Beat:
    """What an observer reads from one heartbeat Lease."""

    node: str  # holderIdentity; "" once released
    renew_time: str
    unavailable: frozenset[str]


def beat_from_lease(lease: Mapping[str, object]) -> Beat:
    spec = lease.get("spec")
    metadata = lease.get("metadata")
    spec = spec if isinstance(spec, Mapping) else {}
    metadata = metadata if isinstance(metadata, Mapping) else {}
    annotations = metadata.get("annotations")
    annotations = annotations if isinstance(annotations, Mapping) else {}
    text = str(annotations.get(UNAVAILABLE_ANNOTATION) or "")
    return Beat(
        node=str(spec.get("holderIdentity") or ""),
        renew_time=str(spec.get("renewTime") or ""),
        unavailable=frozenset(name for name in text.split(",") if name),
    )


def alive_nodes(
    seen: Mapping[str, tuple[Beat, float]], now: float, timeout: float
) -> dict[str, frozenset[str]]:
    """The nodes alive at monotonic time `now`: node -> the Eips it cannot answer for.

    `seen` maps each Lease's node to its latest Beat and the monotonic time this process first
    saw that Beat. Pure, so that expiry can be tested by tables.
    """
    return {
        node: beat.unavailable
        for node, (beat, at) in seen.items()
        if beat.node and now - at < timeout
    }


class NodeLiveness:
    """Watches every heartbeat Lease; calls `on_change()` (from its thread) when one changes."""

    def __init__(
        self,
        api: KubeAPI,
        namespace: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        on_change: Callable[[], None] = lambda: None,
        watch_timeout: int = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.on_change = on_change
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[Beat, float]] = {}  # node -> (beat, first seen)
        self.cache = WatchCache(
            api,
            f"{_leases_path(namespace)}?labelSelector={HEARTBEAT_LABEL}",
            self._on_lease,
            watch_timeout=watch_timeout,
            retry_delay=0.2,
        )
        self._thread: threading.Thread | None = None

    def _on_lease(self, key: str, _old: Obj | None, new: Obj | None) -> None:
        node = key.rsplit("/", 1)[-1].removeprefix(LEASE_PREFIX)
        with self._lock:
            if new is None:
                self._seen.pop(node, None)
            else:
                beat = beat_from_lease(new)
                if beat.node and beat.node != node:
                    beat = Beat(node, beat.renew_time, beat.unavailable)
                previous = self._seen.get(node)
                if previous is None or previous[0] != beat:
                    self._seen[node] = (beat, self.clock())
        self.on_change()

    def alive(self) -> dict[str, frozenset[str]]:
        with self._lock:
            return alive_nodes(self._seen, self.clock(), self.timeout)

    def last_seen(self, node: str) -> float | None:
        """Monotonic time the node's latest live Beat was first seen (None: none/released)."""
        with self._lock:
            entry = self._seen.get(node)
        return entry[1] if entry and entry[0].node else None

    def next_expiry(self) -> float | None:
        """The monotonic time the next currently-alive node would expire, if none renews."""
        now = self.clock()
        with self._lock:
            times = [at + self.timeout for beat, at in self._seen.values() if beat.node]
        pending = [t for t in times if t > now]
        return min(pending) if pending else None

    @property
    def synced(self) -> threading.Event:
        return self.cache.synced

    def start(self) -> None:
        self._thread = threading.Thread(target=self.cache.run, name="watch-Lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.cache.stop()
        if self._thread is not None:
            self._thread.join(5)


class NodeHeartbeat:
    """Renews this node's heartbeat Lease every `interval` while `wanted()` says so.

    One merge PATCH per renewal (no read first): `spec.renewTime`, `holderIdentity` and the
    unavailable-Eips annotation. `poke()` renews at once (the unavailable set changed).
    `release()` empties holderIdentity so observers drop the node without waiting.
    """

    def __init__(
        self,
        api: KubeAPI,
        namespace: str,
        node: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        unavailable: Callable[[], frozenset[str]] = frozenset,
        wanted: Callable[[], bool] = lambda: True,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.node = node
        self.interval = interval
        self.unavailable = unavailable
        self.wanted = wanted
        self.renewals = 0
        self.failures = 0
        self._poke = threading.Event()
        self._holding = False

    @property
    def _path(self) -> str:
        return f"{_leases_path(self.namespace)}/{lease_name(self.node)}"

    def _body(self) -> Obj:
        return {
            "metadata": {
                "labels": {HEARTBEAT_LABEL: "true"},
                "annotations": {UNAVAILABLE_ANNOTATION: ",".join(sorted(self.unavailable()))},
            },
            "spec": {
                "holderIdentity": self.node,
                "leaseDurationSeconds": 1,
                "renewTime": _now_micro(),
            },
        }

    def renew(self) -> None:
        body = self._body()
        try:
            self.api.merge_patch(self._path, body)
        except KubeError as error:
            if error.status != 404:
                raise
            body["metadata"]["name"] = lease_name(self.node)
            body["metadata"]["namespace"] = self.namespace
            body["spec"]["acquireTime"] = body["spec"]["renewTime"]
            self.api.create(
                _leases_path(self.namespace),
                {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **body},
            )
        self._holding = True
        self.renewals += 1

    def release(self) -> None:
        if not self._holding:
            return
        try:
            self.api.merge_patch(
                self._path, {"spec": {"holderIdentity": "", "renewTime": _now_micro()}}
            )
            self._holding = False
            log.info("heartbeat %s released", lease_name(self.node))
        except Exception as error:  # noqa: BLE001 - observers then wait for expiry
            log.warning("heartbeat %s: release failed: %s", lease_name(self.node), error)

    def poke(self) -> None:
        self._poke.set()

    def run(self, stop: threading.Event) -> None:
        """Renew until `stop`; then release the Lease (a graceful stop hands over at once)."""
        next_at = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if (now >= next_at or self._poke.is_set()) and not stop.is_set():
                self._poke.clear()
                next_at = now + self.interval
                if self.wanted():
                    try:
                        self.renew()
                    except Exception as error:  # noqa: BLE001 - retried next interval
                        self.failures += 1
                        log.warning("heartbeat %s: %s", lease_name(self.node), error)
                elif self._holding:
                    self.release()
            self._poke.wait(max(0.0, next_at - time.monotonic()))
            if stop.is_set():
                break
        self.release()
