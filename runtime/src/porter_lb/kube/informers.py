"""The cluster as the controller and the agent see it: one list+watch cache per kind.

`Informers` starts one `WatchCache` per kind in its own thread and fans every change out to the
handlers subscribed to that kind. Handlers run on the watch thread: they must only look at the
change and queue keys (never call the API), so a slow reconcile never delays the watch.

Secrets are watched in one namespace only (porter-lb's own, where BgpPeer password Secrets
live): reading Secrets cluster-wide would be far more than porter-lb needs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from porter_lb.kube.api import KubeAPI
from porter_lb.kube.watch_cache import Handler, IndexFunc, WatchCache
from porter_lb.model.resources import GROUP_PATH, SERVICE_NAME_LABEL, Obj

log = logging.getLogger(__name__)

PATHS: dict[str, str] = {
    "Service": "/api/v1/services",
    # Only slices that belong to a Service (the label the EndpointSlice controller sets).
    "EndpointSlice": (
        f"/apis/discovery.k8s.io/v1/endpointslices?labelSelector={SERVICE_NAME_LABEL}"
    ),
    "Node": "/api/v1/nodes",
    "Namespace": "/api/v1/namespaces",
    "Eip": f"{GROUP_PATH}/eips",
    "BgpConf": f"{GROUP_PATH}/bgpconfs",
    "BgpPeer": f"{GROUP_PATH}/bgppeers",
    "Secret": "/api/v1/namespaces/{namespace}/secrets",
}
"""Collection path of each kind porter-lb watches (Secrets: formatted with the namespace)."""


class Caches(Protocol):
    """What the controllers and speakers read of the cluster (`Informers` is the real one;
    `porter_lab.memory.MemoryCaches` the in-memory one of the unit tests)."""

    def subscribe(self, kind: str, handler: Handler) -> None: ...
    def get(self, kind: str, key: str) -> Obj | None: ...
    def items(self, kind: str) -> list[Obj]: ...
    def add_index(self, kind: str, name: str, index_func: IndexFunc) -> None: ...
    def by_index(self, kind: str, name: str, value: str) -> list[Obj]: ...
    def wait_synced(self, timeout: float) -> bool: ...


@dataclass
class Informers:
    api: KubeAPI
    kinds: Iterable[str]
    secret_namespace: str = "porter-lb-system"
    watch_timeout: int = 300
    caches: dict[str, WatchCache] = field(default_factory=dict)
    _handlers: dict[str, list[Handler]] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for kind in self.kinds:
            if kind not in PATHS:
                raise ValueError(f"unknown kind {kind!r}: one of {sorted(PATHS)}")
            path = PATHS[kind].format(namespace=self.secret_namespace)
            self._handlers[kind] = []
            self.caches[kind] = WatchCache(
                self.api, path, self._fan_out(kind), watch_timeout=self.watch_timeout
            )

    def _fan_out(self, kind: str) -> Handler:
        handlers = self._handlers[kind]

        def on_change(key: str, old: Obj | None, new: Obj | None) -> None:
            for handler in handlers:
                try:
                    handler(key, old, new)
                except Exception:  # a handler bug must not stop the watch
                    log.exception("handler for %s %s failed", kind, key)

        return on_change

    def subscribe(self, kind: str, handler: Handler) -> None:
        """Call `handler(key, old, new)` on every change of `kind` (new None: deleted)."""
        self._handlers[kind].append(handler)

    def get(self, kind: str, key: str) -> Obj | None:
        return self.caches[kind].get(key)

    def add_index(self, kind: str, name: str, index_func: IndexFunc) -> None:
        """Index the objects of `kind` by `index_func` (see `WatchCache.add_index`); at any
        time, also after `start`."""
        self.caches[kind].add_index(name, index_func)

    def by_index(self, kind: str, name: str, value: str) -> list[Obj]:
        """The objects of `kind` whose index `name` has `value`."""
        return self.caches[kind].by_index(name, value)

    def items(self, kind: str) -> list[Obj]:
        return self.caches[kind].items()

    def start(self) -> None:
        for kind, cache in self.caches.items():
            thread = threading.Thread(target=cache.run, name=f"watch-{kind}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_synced(self, timeout: float) -> bool:
        """True once every cache has listed its collection (within `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        for cache in self.caches.values():
            if not cache.synced.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    @property
    def synced(self) -> bool:
        return all(cache.synced.is_set() for cache in self.caches.values())

    def stop(self, timeout: float = 5.0) -> None:
        for cache in self.caches.values():
            cache.stop()
        for thread in self._threads:
            thread.join(timeout)
