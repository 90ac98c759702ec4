"""Kubernetes Events on Services, Eips and BgpPeers: what operators see in `kubectl describe`.

The same (object, type, reason, message) repeated is one Event whose `count` rises, as
client-go's recorder does it, so a Service refused on every resync does not flood the API.
As there, the count lives in the process: each recorder names its Events with a suffix of
its own, so a restarted controller starts new Events with one request each (not a create
refused as a duplicate, a read and a patch for each, which on a first start after a restart
were two thirds of its writes). Recording never raises: losing an Event must not fail a
reconcile.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from porter_lb.kube.api import KubeClient, KubeError
from porter_lb.model.resources import GROUP_VERSION, Obj

log = logging.getLogger(__name__)

COMPONENT = "porter-lb"

API_VERSIONS = {
    "Eip": GROUP_VERSION,
    "BgpConf": GROUP_VERSION,
    "BgpPeer": GROUP_VERSION,
    "EndpointSlice": "discovery.k8s.io/v1",
}
"""apiVersion of the kinds porter-lb warns about, when an object does not carry its own (items
of a list do not); every other kind here (Service, Node, Secret) is core v1."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class EventRecorder:
    api: KubeClient
    component: str = COMPONENT
    host: str = ""
    cluster_namespace: str = "default"  # where Events on cluster-scoped objects go
    max_remembered: int = 4096  # distinct Events whose counts are kept (oldest forgotten)
    _seen: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _suffix: str = field(default_factory=lambda: secrets.token_hex(3))  # this recorder's

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """Record a `Normal` or `Warning` Event about `obj` (a Kubernetes object as JSON)."""
        metadata = obj.get("metadata", {})
        namespace = metadata.get("namespace") or self.cluster_namespace
        involved = {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": obj.get("kind", ""),
            "name": metadata.get("name", ""),
            "namespace": metadata.get("namespace", ""),
            "uid": metadata.get("uid", ""),
        }
        digest = hashlib.sha256(
            "\0".join(
                [involved["uid"], involved["kind"], involved["name"], type_, reason, message]
            ).encode()
        ).hexdigest()[:16]
        now = _now()
        try:
            with self._lock:
                seen = self._seen.get(digest)
            if seen is not None:
                name, count = seen
                self.api.merge_patch(
                    f"/api/v1/namespaces/{namespace}/events/{name}",
                    {"count": count + 1, "lastTimestamp": now},
                )
                with self._lock:
                    self._remember(digest, (name, count + 1))
                return
            name = f"{involved['name'][:200]}.{digest}{self._suffix}"
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {k: v for k, v in involved.items() if v},
                "type": type_,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": self.component, "host": self.host}
                if self.host
                else {"component": self.component},
                "reportingComponent": self.component,
                "reportingInstance": self.host or self.component,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            try:
                self.api.create(f"/api/v1/namespaces/{namespace}/events", body)
                count = 1
            except KubeError as error:
                if error.status != 409:
                    raise
                # Recorded before and forgotten since (see _remember): continue its count.
                existing = self.api.get(f"/api/v1/namespaces/{namespace}/events/{name}")
                count = int(existing.get("count") or 1) + 1
                self.api.merge_patch(
                    f"/api/v1/namespaces/{namespace}/events/{name}",
                    {"count": count, "lastTimestamp": now},
                )
            with self._lock:
                self._remember(digest, (name, count))
        except Exception as error:  # noqa: BLE001 - an Event is best effort
            with self._lock:
                self._seen.pop(digest, None)
            log.warning("could not record Event %s on %s: %s", reason, involved["name"], error)

    def _remember(self, digest: str, seen: tuple[str, int]) -> None:
        """Keep the newest `max_remembered` Events: a long-running controller with churning
        Services must not grow without bound. A forgotten Event that recurs is found again
        through the 409 on create, and its count continues."""
        self._seen[digest] = seen
        self._seen.move_to_end(digest)
        while len(self._seen) > self.max_remembered:
            self._seen.popitem(last=False)

    def normal(self, obj: Obj, reason: str, message: str) -> None:
        self.event(obj, "Normal", reason, message)

    def warning(self, obj: Obj, reason: str, message: str) -> None:
        self.event(obj, "Warning", reason, message)


class WarningRecorder(Protocol):
    """Where `Warnings` sends its Events: an `EventRecorder`, or a test's list."""

    def warning(self, obj: Obj, reason: str, message: str) -> None: ...


class Warnings:
    """Warning Events (and log lines) about objects porter-lb cannot use, once per (kind,
    object, message): the same problem seen at every resync is reported once; a different
    message for the object is reported again; `clear` forgets the object, so the problem is
    reported again if it comes back after a fix. The speakers' and layer 2's one de-duplicator.
    """

    def __init__(self, recorder: WarningRecorder | None, logger: logging.Logger) -> None:
        self.recorder = recorder
        self.logger = logger
        self._reported: dict[tuple[str, str], str] = {}  # (kind, namespace/name) -> message

    @staticmethod
    def key(obj: Obj) -> str:
        """namespace/name, or name for a cluster-scoped object."""
        metadata = obj.get("metadata") or {}
        name = str(metadata.get("name", ""))
        namespace = metadata.get("namespace")
        return f"{namespace}/{name}" if namespace else name

    def warn(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        key = (kind, self.key(obj))
        if self._reported.get(key) == message:
            return
        self._reported[key] = message
        self.logger.warning("%s", message, extra={"kind": kind, "reason": reason})
        if self.recorder is not None:
            api_version = obj.get("apiVersion") or API_VERSIONS.get(kind, "v1")
            self.recorder.warning({**obj, "kind": kind, "apiVersion": api_version}, reason, message)

    def clear(self, kind: str, key: str) -> None:
        """Forget the object `key` (namespace/name, or name) of `kind`."""
        self._reported.pop((kind, key), None)
