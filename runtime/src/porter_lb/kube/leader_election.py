"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it.

Only the leader reconciles; a standby takes over when the leader releases the Lease (graceful
shutdown) or stops renewing it for `lease_duration` seconds (crash, partition). Expiry is judged
by when *this* process last saw the Lease change, on its own monotonic clock, never by comparing
the timestamps written in the Lease with the local wall clock: nodes' clocks may disagree.
Every write carries the resourceVersion read just before it, so two candidates can never both
believe they won (the loser gets 409 Conflict).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from porter_lb.kube.api import KubeAPI, KubeError
from porter_lb.model.resources import Obj

log = logging.getLogger(__name__)


def _now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElector:
    api: KubeAPI
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    _observed: tuple[str, str] = ("", "")  # (holderIdentity, renewTime) last seen
    _observed_at: float = 0.0  # monotonic time it was first seen
    _stop: threading.Event = field(default_factory=threading.Event)
    leading: threading.Event = field(default_factory=threading.Event)
    # Called (on the elector's thread) with the holder's identity whenever a Lease read shows
    # a holder other than this process that it had not seen before (client-go's OnNewLeader).
    on_new_leader: Callable[[str], None] | None = None

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    def _spec(self, transitions: int, acquire_time: str | None) -> Obj:
        now = _now_micro()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this process holds the Lease afterwards."""
        try:
            lease = self.api.get(self._path)
        except KubeError as error:
            if error.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(0, None),
            }
            try:
                self.api.create(
                    f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases", body
                )
            except KubeError as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True

        spec = lease.get("spec", {})
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime", "")))
        if record != self._observed:
            if holder and holder not in (self.identity, self._observed[0]) and self.on_new_leader:
                self.on_new_leader(holder)
            self._observed, self._observed_at = record, time.monotonic()
        expired = time.monotonic() - self._observed_at >= float(
            spec.get("leaseDurationSeconds") or self.lease_duration
        )
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            new_spec = self._spec(transitions, spec.get("acquireTime"))
        else:
            new_spec = self._spec(transitions + 1, None)
        lease["spec"] = new_spec
        try:
            self.api.replace(self._path, lease)  # guarded by the resourceVersion just read
        except KubeError as error:
            if error.status == 409:
                return False
            raise
        self._observed, self._observed_at = (self.identity, new_spec["renewTime"]), time.monotonic()
        return True

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except Exception as error:  # noqa: BLE001 - API unreachable: counts as a failed attempt
            log.warning("lease %s/%s: %s", self.namespace, self.name, error)
            return False

    def run(
        self, on_started_leading: Callable[[], None], on_stopped_leading: Callable[[], None]
    ) -> None:
        """Campaign until elected, then renew; returns when leadership is lost or stop() called.

        A leader that cannot renew within `renew_deadline` stops leading (on_stopped_leading)
        and `run` returns; the caller may call `run` again to campaign anew, provided that it
        rebuilds its state from fresh caches when elected again (porter-lb's manager does).
        """
        while not self._stop.is_set():
            if self._attempt():
                break
            self._stop.wait(self.retry_period)
        else:
            return
        log.info("lease %s/%s: %s is the leader", self.namespace, self.name, self.identity)
        self.leading.set()
        on_started_leading()
        last_renewed = time.monotonic()
        while not self._stop.wait(self.retry_period):
            if self._attempt():
                last_renewed = time.monotonic()
            elif time.monotonic() - last_renewed >= self.renew_deadline:
                log.error(
                    "lease %s/%s: could not renew for %.1fs; stepping down",
                    self.namespace,
                    self.name,
                    self.renew_deadline,
                )
                break
        self.leading.clear()
        on_stopped_leading()
        if self._stop.is_set():
            self.release()

    def stop(self) -> None:
        self._stop.set()

    def release(self) -> None:
        """Give the Lease up at once (graceful shutdown): a standby need not wait for expiry."""
        try:
            lease = self.api.get(self._path)
            if lease.get("spec", {}).get("holderIdentity") != self.identity:
                return
            lease["spec"].update(holderIdentity="", leaseDurationSeconds=1, renewTime=_now_micro())
            self.api.replace(self._path, lease)
        except KubeError as error:
            log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, error)
