"""The allocation controller: every LoadBalancer Service porter-lb implements holds its IPs.

Level-triggered. Watches (porter_lb.kube.informers) queue keys; one worker takes a batch of keys
off the queue, decides in memory with the pure allocator (porter_lb.allocation.allocator), then
commits in this order, so that a crash at any point loses nothing and leaks nothing:

1. the finalizer is on every Service before it is given an IP (a Service deleted while the
   controller is down still comes back as "being deleted" and its IP is released);
2. the Eips whose holders changed get their `status.used` written, each guarded by the
   resourceVersion the decision was based on (PUT of the status subresource; 409 if anyone
   else wrote meanwhile). On a conflict the controller re-reads every Eip, rebuilds its
   allocations from them and from the Services' status, and runs the batch again: two
   controllers racing can never both hand out one IP;
3. only then the Services' `status.loadBalancer.ingress` (so an IP shows up in a Service,
   and gets announced, only once it is recorded as taken);
4. Events, last (best effort).

A restart rebuilds the allocations from the Eips' `status.used` and the Services' status
(allocator.rebuild), so no IP changes. Removing the finalizer is the last step of releasing
an IP: the Eip status no longer names the Service by then.

Cross-object rules the API server cannot check (overlapping pools, two default pools) are
checked here too, whatever the validating webhook did (it fails open): a losing Eip gives out
no address and says why in its Ready condition.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from porter_lb.allocation.allocator import Allocated, RefusalReason, Refused, allocate, rebuild
from porter_lb.allocation.eip_status import eip_spec_changed, eip_status, ready_event, same_status
from porter_lb.allocation.holdings import Allocations, release
from porter_lb.kube.api import KubeClient, KubeError
from porter_lb.kube.events import EventRecorder
from porter_lb.kube.informers import Caches
from porter_lb.kube.workqueue import WorkQueue
from porter_lb.model.resources import (
    GROUP_PATH,
    LOAD_BALANCER_CLASS,
    ModelError,
    Obj,
    Pool,
    ServiceRequest,
    being_deleted,
    load_balancer_ips,
    request_from_service,
    selects_porter,
    service_key,
)
from porter_lb.model.validation import effective_pools
from porter_lb.telemetry import metrics
from porter_lb.telemetry.health import Heartbeat

log = logging.getLogger(__name__)

FINALIZER = "lb.porter-lb.io/finalizer"
"""Held by every Service porter-lb gave an IP, until the IP is released."""

KINDS = ("Service", "Namespace", "Eip")

_SERVICE = "svc:"
_EIP = "eip:"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rv(obj: Obj | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion", "0"))
    except ValueError:
        return 0


def _used(eip: Obj) -> dict[str, str]:
    return dict((eip.get("status") or {}).get("used") or {})


def _service_path(key: str) -> str:
    namespace, name = key.split("/", 1)
    return f"/api/v1/namespaces/{namespace}/services/{name}"


@dataclass
class _Outcome:
    """What one Service's reconcile decided, to be committed after the Eips are written."""

    key: str
    service: Obj | None
    ips: tuple[str, ...] | None  # None: leave the status alone; () clears it
    add_finalizer: bool = False
    remove_finalizer: bool = False
    event: tuple[str, str, str] | None = None  # (type, reason, message)


@dataclass
class AllocationController:
    api: KubeClient
    informers: Caches
    recorder: EventRecorder
    class_name: str = LOAD_BALANCER_CLASS
    batch_size: int = 500
    writers: int = 8
    # Events go out from their own threads, beside the writes that matter: a Service's IP
    # never waits for the Event about it. At most `events_pending` wait (about 0.5 kB each:
    # the Service is the cache's own object); more block the loop until there is room.
    event_writers: int = 2
    events_pending: int = 10_000
    queue: WorkQueue = field(default_factory=WorkQueue)
    allocations: Allocations = field(default_factory=Allocations)
    pools: dict[str, Pool] = field(default_factory=dict)
    pool_problems: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> reason, msg
    _written: dict[str, Obj] = field(default_factory=dict)  # Eip name -> our last write/read
    # Eip name -> the status.used our allocations were built on (rebuild) or last wrote. A
    # status write goes out only while the Eip still says exactly this: a claim written by
    # anyone else since (another controller) is never overwritten, it forces a rebuild.
    _basis: dict[str, dict[str, str]] = field(default_factory=dict)
    _refused: dict[str, Refused] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _pool: ThreadPoolExecutor | None = None
    _events: ThreadPoolExecutor | None = None
    _events_room: threading.BoundedSemaphore | None = None
    reconciles: int = 0
    conflicts: int = 0
    caught_up: threading.Event = field(default_factory=threading.Event)  # first pass done
    heartbeat: Heartbeat | None = None  # beaten each time round the work loop (liveness)
    _gauged_pools: set[str] = field(default_factory=set)  # Eips with metric series

    # -- watching -------------------------------------------------------------------------

    def register(self) -> None:
        """Subscribe to the informers; call before they start."""
        self.informers.subscribe("Service", self._on_service)
        self.informers.subscribe("Eip", self._on_eip)
        self.informers.subscribe("Namespace", self._on_namespace)

    def _ours(self, service: Obj | None) -> bool:
        if service is None:
            return False
        return selects_porter(service, self.class_name) or FINALIZER in (
            service.get("metadata", {}).get("finalizers") or []
        )

    def _on_service(self, key: str, old: Obj | None, new: Obj | None) -> None:
        if self._ours(old) or self._ours(new):
            self.queue.add(_SERVICE + key)

    def _on_eip(self, key: str, old: Obj | None, new: Obj | None) -> None:
        self.queue.add(_EIP + key)
        if old is None or new is None or eip_spec_changed(old, new):
            # Pools decide every Service's IP: re-run all of them (cheap when nothing changes).
            self._queue_all_services()
        # A status-only change (ours, echoed by the watch) needs only the Eip re-checked.

    def _on_namespace(self, key: str, old: Obj | None, new: Obj | None) -> None:
        def labels(obj: Obj | None) -> Any:
            return (obj or {}).get("metadata", {}).get("labels") or {}

        if old is not None and new is not None and labels(old) == labels(new):
            return
        for service in self.informers.items("Service"):
            if service["metadata"].get("namespace") == key and self._ours(service):
                self.queue.add(_SERVICE + service_key(service))

    def _queue_all_services(self) -> None:
        for service in self.informers.items("Service"):
            if self._ours(service):
                self.queue.add(_SERVICE + service_key(service))

    # -- state from the caches ------------------------------------------------------------

    def _namespace_labels(self, namespace: str) -> dict[str, str]:
        obj = self.informers.get("Namespace", namespace) or {}
        return dict(obj.get("metadata", {}).get("labels") or {})

    def _eip(self, name: str) -> Obj | None:
        """The freshest copy of an Eip we know: the cache's, or our own later write."""
        cached = self.informers.get("Eip", name)
        written = self._written.get(name)
        if cached is None:
            return None
        if written is not None and _rv(written) > _rv(cached):
            return written
        return cached

    def refresh_pools(self) -> None:
        """Pools from the Eip cache; invalid or conflicting Eips give out nothing."""
        effective = effective_pools(self.informers.items("Eip"))
        self.pools = effective.pools
        self.pool_problems = effective.problems
        # An Eip gone from the cache: forget our last write of it and the claims it held (a
        # leak per deleted Eip otherwise; a later Eip of that name starts from its own status).
        known = {e["metadata"]["name"] for e in self.informers.items("Eip")}
        for name in (self._written.keys() | self._basis.keys()) - known:
            self._written.pop(name, None)
            self._basis.pop(name, None)

    def _requests(self) -> dict[str, ServiceRequest]:
        requests = {}
        for service in self.informers.items("Service"):
            if not selects_porter(service, self.class_name) or being_deleted(service):
                continue
            try:
                namespace = service["metadata"].get("namespace", "default")
                requests[service_key(service)] = request_from_service(
                    service, self._namespace_labels(namespace)
                )
            except ModelError:
                continue
        return requests

    def rebuild(self, eips: Iterable[Obj] | None = None, *, keep_unknown: bool = False) -> None:
        """Allocations from the Eips' status.used and the Services' status (restart, conflict).

        At start the Service cache has just been listed: a holder it does not know is gone,
        and its claim is dropped. After a 409 the Eips come fresh from the API while the
        Service cache may lag behind another controller's creations: `keep_unknown` keeps the
        claims of holders the cache does not know yet (so their IPs are not handed out again)
        and re-checks those keys a little later, when the cache has caught up.
        """
        self.refresh_pools()
        eip_list = list(eips) if eips is not None else self.informers.items("Eip")
        persisted = {e["metadata"]["name"]: _used(e) for e in eip_list}
        self._basis = {name: dict(used) for name, used in persisted.items()}
        if eips is not None:
            # Fresh from the API: newer than the cache may be yet (see _eip).
            self._written.update((e["metadata"]["name"], e) for e in eip_list)
        statuses: dict[str, tuple[str, ...]] = {
            service_key(s): load_balancer_ips(s)
            for s in self.informers.items("Service")
            if selects_porter(s, self.class_name) and not being_deleted(s)
        }
        if keep_unknown:
            for used in persisted.values():
                for holders in used.values():
                    for holder in (h.strip() for h in str(holders).split(";")):
                        if (
                            holder
                            and holder not in statuses
                            and not self.informers.get("Service", holder)
                        ):
                            statuses[holder] = ()
                            self.queue.add_after_failure(_SERVICE + holder)
        self.allocations = rebuild(
            sorted(self.pools.values(), key=lambda p: p.name),
            persisted,
            statuses,
            self._requests(),
        )

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        """Rebuild from the (synced) caches and queue everything once."""
        self.rebuild()
        for eip in self.informers.items("Eip"):
            self.queue.add(_EIP + eip["metadata"]["name"])
        self._queue_all_services()

    def run(self, stop: threading.Event) -> None:
        """Process batches until `stop` is set; the caches must have synced.

        May be called again after it returned (a new leadership term): each run rebuilds
        the allocations from the caches first, as a freshly started process would.
        """
        self._pool = ThreadPoolExecutor(self.writers, thread_name_prefix="writer")
        self._events = ThreadPoolExecutor(self.event_writers, thread_name_prefix="events")
        self._events_room = threading.BoundedSemaphore(self.events_pending)
        started = time.monotonic()
        reconciles = self.reconciles
        caught_up = False
        try:
            self.start()
            while not stop.is_set() and not self._stop.is_set():
                if self.heartbeat is not None:
                    self.heartbeat.beat()
                keys = self._take_batch(timeout=0.5)
                if keys:
                    self.process(keys)
                if not caught_up and not len(self.queue):
                    caught_up = True
                    self.caught_up.set()
                    log.info(
                        "caught up",
                        extra={
                            "seconds": round(time.monotonic() - started, 3),
                            "keys": self.reconciles - reconciles,
                            "allocated": len(self.allocations.keys()),
                        },
                    )
        finally:
            if self.heartbeat is not None:
                self.heartbeat.stop()
            self.caught_up.clear()
            self._pool.shutdown(wait=True)
            self._pool = None
            self._events.shutdown(wait=True)  # the Events already decided still go out
            self._events = None

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()

    def _take_batch(self, timeout: float) -> list[str]:
        first = self.queue.get(timeout=timeout)
        if first is None:
            return []
        keys = [first]
        while len(keys) < self.batch_size:
            key = self.queue.get(timeout=0)
            if key is None:
                break
            keys.append(key)
        return keys

    def process(self, keys: list[str]) -> None:
        """Reconcile a batch of keys; failures are retried with backoff, never lost."""
        started = time.perf_counter()
        try:
            failed = self._process(keys)
        except Exception as error:  # every failure is retried with backoff
            log.warning("reconcile of %d keys failed: %s", len(keys), error, exc_info=True)
            failed = set(keys)
        for key in keys:
            if key in failed:
                self.queue.add_after_failure(key)
            else:
                self.queue.forget(key)
            self.queue.done(key)
        self.reconciles += len(keys)
        metrics.RECONCILE_SECONDS.labels("allocation").observe(time.perf_counter() - started)
        self._update_gauges()

    def _process(self, keys: list[str]) -> set[str]:
        """One batch; returns the keys whose writes failed (to retry)."""
        pools_before = set(self.pools)
        self.refresh_pools()
        service_keys = [k[len(_SERVICE) :] for k in keys if k.startswith(_SERVICE)]
        # What each Service held before, and from which pool: the delta decides which Eips
        # to write (comparing whole pools would cost O(addresses) per batch).
        held_before = {
            key: {ip: self.allocations.pool_of(ip) for ip in self.allocations.ips_of(key)}
            for key in service_keys
        }
        outcomes = [self._reconcile_service(key) for key in service_keys]
        eips = {k[len(_EIP) :] for k in keys if k.startswith(_EIP)}
        failed: set[str] = set()
        # 1. Finalizers before any IP is recorded for a Service. A Service whose finalizer
        # cannot be set keeps no new IP: it is released and retried. A Service getting its
        # first IPs now gets the finalizer in the same write as its status (step 3): the
        # API server keeps a Service's metadata from a status write (it resets only spec).
        failed |= self._write_all(
            [o for o in outcomes if o.add_finalizer and not o.ips],
            lambda o: self._set_finalizer(o, True),
        )
        for outcome in outcomes:
            if _SERVICE + outcome.key in failed:
                self._release(outcome.key)
        outcomes = [o for o in outcomes if _SERVICE + o.key not in failed]
        # 2. The Eips whose holders changed, and those asked for.
        changed: set[str] = set()
        freed = False
        for key, before in held_before.items():
            after = set(self.allocations.ips_of(key))
            if after == before.keys():
                continue
            for ip, pool in before.items():
                if ip not in after:
                    changed.add(pool or "")
                    freed = freed or not self.allocations.holders(ip)
            changed.update(self.allocations.pool_of(ip) or "" for ip in after - before.keys())
        changed.discard("")
        if not self._write_eips(sorted((changed & self.pools.keys()) | eips)):
            # Someone else wrote an Eip: our view is stale. Rebuild from the API and redo.
            self.conflicts += 1
            self.rebuild(self.api.list(f"{GROUP_PATH}/eips")[0], keep_unknown=True)
            for key in keys:
                self.queue.add(key)
            return failed
        # An address came free: Services refused for want of one may get it now.
        if freed or pools_before - self.pools.keys():
            for key in list(self._refused):
                self.queue.add(_SERVICE + key)
        # 3. Service status, then releasing finalizers, then 4. Events.
        failed |= self._write_all([o for o in outcomes if o.ips is not None], self._set_status)
        failed |= self._write_all(
            [o for o in outcomes if o.remove_finalizer and _SERVICE + o.key not in failed],
            lambda o: self._set_finalizer(o, False),
        )
        for outcome in outcomes:
            if outcome.event and outcome.service is not None:
                self._record(outcome)
        return failed

    def _record(self, outcome: _Outcome) -> None:
        """The outcome's Event, written by the event threads while the loop goes on (in
        line when not running: tests drive `process` directly). Best effort, as Events are."""
        assert outcome.event is not None and outcome.service is not None
        type_, reason, message = outcome.event
        service, events, room = outcome.service, self._events, self._events_room
        if events is None or room is None:
            self.recorder.event(service, type_, reason, message)
            return
        room.acquire()

        def write() -> None:
            try:
                self.recorder.event(service, type_, reason, message)
            finally:
                room.release()

        events.submit(write)

    def _write_all(self, outcomes: list[_Outcome], write: Callable[[_Outcome], None]) -> set[str]:
        """Run `write` for each outcome (in parallel); the queue keys of those that failed."""

        def attempt(outcome: _Outcome) -> str | None:
            try:
                write(outcome)
                return None
            except Exception as error:  # noqa: BLE001 - reported, retried with backoff
                log.warning("Service %s: write failed: %s", outcome.key, error)
                return _SERVICE + outcome.key

        if self._pool is None or len(outcomes) <= 1:
            results = [attempt(o) for o in outcomes]
        else:
            results = list(self._pool.map(attempt, outcomes))
        return {key for key in results if key is not None}

    # -- one Service ----------------------------------------------------------------------

    def _reconcile_service(self, key: str) -> _Outcome:
        service = self.informers.get("Service", key)
        if service is None:
            if self.allocations.ips_of(key) and self._exists(key):
                # The cache lags behind the API (another controller's Service, just created):
                # keep its IPs and look again shortly.
                self.queue.add_after_failure(_SERVICE + key)
                return _Outcome(key, None, None)
            # Gone for good (its finalizer was removed, by us or by hand): free its IPs, and
            # forget a refusal (deleted before it ever showed a deletionTimestamp to us).
            self._release(key)
            self._refused.pop(key, None)
            return _Outcome(key, None, None)
        finalizers = service.get("metadata", {}).get("finalizers") or []
        held = self.allocations.ips_of(key)
        if being_deleted(service) or not selects_porter(service, self.class_name):
            self._release(key)
            self._refused.pop(key, None)
            current = load_balancer_ips(service)
            # A Service that stopped being ours keeps no IP of ours in its status.
            clear = () if current and not being_deleted(service) else None
            event = None
            if held:
                event = ("Normal", "ReleasedIP", f"released {', '.join(held)}")
            return _Outcome(
                key,
                service,
                clear,
                remove_finalizer=FINALIZER in finalizers,
                event=event,
            )
        namespace = service["metadata"].get("namespace", "default")
        try:
            request = request_from_service(service, self._namespace_labels(namespace))
        except ModelError as error:
            # Keep whatever it holds; say what is wrong with it.
            return _Outcome(
                key,
                service,
                None,
                add_finalizer=FINALIZER not in finalizers,
                event=("Warning", "InvalidService", str(error)),
            )
        result = allocate(
            sorted(self.pools.values(), key=lambda p: p.name), self.allocations, request
        )
        outcome = _Outcome(key, service, None, add_finalizer=FINALIZER not in finalizers)
        current = load_balancer_ips(service)
        if isinstance(result, Allocated):
            self._refused.pop(key, None)
            if current != result.ips:
                outcome.ips = result.ips
                pools = ", ".join(sorted(set(result.pools)))
                outcome.event = (
                    "Normal",
                    "AllocatedIP",
                    f"allocated {', '.join(result.ips)} from Eip {pools}",
                )
        else:
            self._refused[key] = result
            if current:
                outcome.ips = ()
            message = result.message
            problem = self.pool_problems.get(request.requested_pool)
            if result.reason == RefusalReason.POOL_NOT_FOUND and problem:
                # The Eip exists but is unusable (Conflict, InvalidSpec): say so, not "no Eip".
                message = (
                    f"Service '{key}': {request.requested_pool_field} "
                    f"'{request.requested_pool}': the Eip gives out no address "
                    f"({problem[0]}): {problem[1]}"
                )
            outcome.event = ("Warning", str(result.reason), message)
        return outcome

    def _exists(self, key: str) -> bool:
        """Ask the API server itself whether the Service exists (the cache may lag)."""
        try:
            self.api.get(_service_path(key))
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    def _release(self, key: str) -> None:
        release(self.allocations, key)

    # -- writes ---------------------------------------------------------------------------

    def _set_finalizer(self, outcome: _Outcome, present: bool) -> None:
        service = outcome.service
        assert service is not None
        path = _service_path(outcome.key)
        for _ in range(5):
            finalizers = list(service.get("metadata", {}).get("finalizers") or [])
            if (FINALIZER in finalizers) == present:
                return
            finalizers = (
                [*finalizers, FINALIZER] if present else [f for f in finalizers if f != FINALIZER]
            )
            patch = {
                "metadata": {
                    "finalizers": finalizers,
                    "resourceVersion": service["metadata"]["resourceVersion"],
                }
            }
            try:
                self.api.merge_patch(path, patch)
                return
            except KubeError as error:
                if error.status == 404:
                    return
                if error.status != 409:
                    raise
                service = self.api.get(path)
        raise RuntimeError(f"Service {outcome.key}: finalizer update kept conflicting")

    def _set_status(self, outcome: _Outcome) -> None:
        ips = outcome.ips or ()
        ingress = [{"ip": ip, "ipMode": "VIP"} for ip in ips] if ips else None
        patch: Obj = {"status": {"loadBalancer": {"ingress": ingress}}}
        with_finalizer = outcome.add_finalizer and bool(ips) and outcome.service is not None
        if with_finalizer:
            assert outcome.service is not None
            metadata = outcome.service.get("metadata", {})
            patch["metadata"] = {
                "finalizers": [*(metadata.get("finalizers") or []), FINALIZER],
                "resourceVersion": metadata.get("resourceVersion"),
            }
        path = _service_path(outcome.key) + "/status"
        try:
            written = self.api.merge_patch(path, patch)
        except KubeError as error:
            if error.status == 404:
                return
            if error.status != 409 or not with_finalizer:
                raise
            # Changed since our cache saw it: the finalizer on its own (it re-reads and
            # retries), then the status.
            self._set_finalizer(outcome, True)
            del patch["metadata"]
            try:
                self.api.merge_patch(path, patch)
            except KubeError as again:
                if again.status != 404:  # deleted meanwhile: nothing to write
                    raise
            return
        if with_finalizer and FINALIZER not in (
            written.get("metadata", {}).get("finalizers") or []
        ):
            self._set_finalizer(outcome, True)  # an API server that drops it from /status

    def _write_eips(self, names: list[str]) -> bool:
        """Write each Eip's status when it differs; False on a resourceVersion conflict."""
        for name in names:
            eip = self._eip(name)
            if eip is None or being_deleted(eip):
                continue
            if _used(eip) != self._basis.get(name, {}):
                # Claims changed since our allocations were built (another controller wrote
                # them and our cache has already seen it): writing now would drop them.
                log.info("Eip %s: claims changed under us; rebuilding", name)
                self._written.pop(name, None)
                return False
            pool = self.pools.get(name)
            problem = self.pool_problems.get(name, ("Unknown", "not a usable pool"))
            status = eip_status(eip, pool, self.allocations, problem, _now())
            old = eip.get("status") or {}
            if same_status(old, status):
                continue
            body = copy.copy(eip)
            body["status"] = status
            try:
                written = self.api.replace(f"{GROUP_PATH}/eips/{name}/status", body)
            except KubeError as error:
                if error.status == 404:
                    continue
                if error.status == 409:
                    log.info("Eip %s changed under us (409); rebuilding", name)
                    self._written.pop(name, None)
                    return False
                raise
            self._written[name] = written
            self._basis[name] = _used(written)
            event = ready_event(old, status)
            if event is not None:
                kind, reason, message = event
                record = self.recorder.warning if kind == "Warning" else self.recorder.normal
                record(eip, reason, message)
        return True

    def _update_gauges(self) -> None:
        for name in self._gauged_pools - self.pools.keys() - self.pool_problems.keys():
            for gauge in (metrics.POOL_SIZE, metrics.POOL_USAGE, metrics.POOL_READY):
                with contextlib.suppress(KeyError):
                    gauge.remove(name)  # the Eip is gone: so is its series
        self._gauged_pools = set(self.pools) | set(self.pool_problems)
        for name, pool in self.pools.items():
            metrics.POOL_SIZE.labels(name).set(pool.addresses.size)
            metrics.POOL_USAGE.labels(name).set(len(self.allocations.ips_in_pool(name)))
            metrics.POOL_READY.labels(name).set(1)
        for name in self.pool_problems:
            metrics.POOL_READY.labels(name).set(0)
        allocated = len(self.allocations.keys())
        metrics.ALLOCATIONS.labels("allocated").set(allocated)
        metrics.ALLOCATIONS.labels("refused").set(len(self._refused))

    @property
    def refused(self) -> dict[str, Refused]:
        return dict(self._refused)


__all__ = ["FINALIZER", "KINDS", "AllocationController", "RefusalReason"]
