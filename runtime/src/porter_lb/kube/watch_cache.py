"""List+watch caches of Kubernetes collections (what client-go calls an informer).

A cache lists its collection once, then watches from the list's resourceVersion: it resumes a
closed watch from the last resourceVersion it saw (bookmarks keep that fresh on quiet
collections) and relists only when the server says the version is gone (410). After a relist
it reports the difference against what it held, deletions included, so a consumer never misses
an object that vanished while the watch was down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from porter_lb.kube.api import KubeAPI, KubeError, Watch
from porter_lb.model.resources import Obj

log = logging.getLogger(__name__)

Handler = Callable[[str, Obj | None, Obj | None], None]  # (key, old, new); new None = deleted

IndexFunc = Callable[[Obj], Iterable[str]]
"""The index values of an object (client-go's IndexFunc): an EndpointSlice -> its Service key."""


def object_key(obj: Obj) -> str:
    """`namespace/name` for namespaced objects, `name` for cluster-scoped ones."""
    metadata = obj["metadata"]
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else str(metadata["name"])


@dataclass
class WatchCache:
    """One collection, at a path such as `/api/v1/services`."""

    api: KubeAPI
    path: str
    on_change: Handler
    watch_timeout: int = 300
    retry_delay: float = 1.0
    _objects: dict[str, Obj] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    resource_version: str = ""
    synced: threading.Event = field(default_factory=threading.Event)
    lists: int = 0  # how many full lists were made: 1 unless versions expired
    watches: int = 0  # how many watches were opened (each resumes where the last ended)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _watch: Watch | None = None
    _index_funcs: dict[str, IndexFunc] = field(default_factory=dict)
    _indices: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # name -> value -> keys

    def add_index(self, name: str, index_func: IndexFunc) -> None:
        """Keep index `name`: the keys of the objects per value of `index_func` (client-go's
        Indexer). Built from what the cache holds now and kept with every change, before the
        change's handlers run, so a handler reading the index sees the change."""
        with self._lock:
            self._index_funcs[name] = index_func
            index: dict[str, set[str]] = {}
            for key, obj in self._objects.items():
                for value in index_func(obj):
                    index.setdefault(value, set()).add(key)
            self._indices[name] = index

    def by_index(self, name: str, value: str) -> list[Obj]:
        """The objects whose index `name` has `value`."""
        with self._lock:
            keys = self._indices[name].get(value, ())
            return [self._objects[key] for key in keys]

    def _reindex(self, key: str, old: Obj | None, new: Obj | None) -> None:
        """Move `key` in every index from `old`'s values to `new`'s (lock held)."""
        for name, index_func in self._index_funcs.items():
            index = self._indices[name]
            for value in index_func(old) if old is not None else ():
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
            for value in index_func(new) if new is not None else ():
                index.setdefault(value, set()).add(key)

    def get(self, key: str) -> Obj | None:
        with self._lock:
            return self._objects.get(key)

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._objects.values())

    def relist(self) -> None:
        items, version = self.api.list(self.path)
        self.lists += 1
        fresh = {object_key(obj): _slim(obj) for obj in items}
        with self._lock:
            old = self._objects
            self._objects = fresh
            self.resource_version = version
            for name, index_func in self._index_funcs.items():
                index: dict[str, set[str]] = {}
                for key, obj in fresh.items():
                    for value in index_func(obj):
                        index.setdefault(value, set()).add(key)
                self._indices[name] = index
        for key, obj in fresh.items():
            previous = old.get(key)
            if previous is None or _version(previous) != _version(obj):
                self.on_change(key, previous, obj)
        for key in old.keys() - fresh.keys():
            self.on_change(key, old[key], None)
        self.synced.set()

    def watch_once(self) -> None:
        """Follow one watch until the server closes it. Raises KubeError(410) when expired."""
        self._watch = self.api.watch(self.path, self.resource_version, self.watch_timeout)
        self.watches += 1
        if self._stopped.is_set():
            self._watch.close()
        for event in self._watch:
            version = _version(event.object)
            if event.type == "BOOKMARK":
                self.resource_version = version
                continue
            key = object_key(_slim(event.object))
            with self._lock:
                previous = self._objects.get(key)
                if event.type == "DELETED":
                    self._objects.pop(key, None)
                else:
                    self._objects[key] = event.object
                self._reindex(key, previous, None if event.type == "DELETED" else event.object)
                self.resource_version = version
            self.on_change(key, previous, None if event.type == "DELETED" else event.object)

    def stop(self) -> None:
        """End run() promptly, also in the middle of a watch (from any thread)."""
        self._stopped.set()
        if self._watch is not None:
            self._watch.close()

    def run(self) -> None:
        """List, then watch until stop(); never gives up on transient errors."""
        stop = self._stopped
        while not stop.is_set():
            try:
                if not self.synced.is_set():
                    self.relist()
                self.watch_once()
            except KubeError as error:
                if stop.is_set():
                    return
                if error.status == 410:
                    log.info(
                        "watch %s: resourceVersion %s expired, relisting",
                        self.path,
                        self.resource_version,
                    )
                    self.synced.clear()
                    continue
                log.warning("watch %s: %s; retrying", self.path, error)
                stop.wait(self.retry_delay)
            except Exception as error:  # noqa: BLE001 - connection errors of every kind
                log.warning("watch %s: %s: %s; retrying", self.path, type(error).__name__, error)
                stop.wait(self.retry_delay)


def _version(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


def _slim(obj: Obj) -> Obj:
    """Drop what porter-lb never reads and what costs most memory: managedFields (often half
    of an object's JSON). 10,000 Services and EndpointSlices are held in every cache."""
    obj.get("metadata", {}).pop("managedFields", None)
    return obj
