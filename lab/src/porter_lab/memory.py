"""In-memory stand-ins for the runtime's three seams, for unit tests of the loops around the pure
core: the informers' caches (`kube.informers.Caches`), the API server (`kube.api.KubeClient`)
and gobgpd (`routing.bgp_config.GobgpdClient`). Each implements the whole Protocol, so mypy
checks them against it (`_conforms` below), and a test needs no `type: ignore` to pass one in.

They hold state and log calls; they decide nothing a test asserts. What a test expects comes
from the test itself.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from porter_lb.kube.api import KubeClient, KubeError
from porter_lb.kube.informers import Caches
from porter_lb.kube.watch_cache import Handler, IndexFunc, object_key
from porter_lb.model.resources import Obj
from porter_lb.routing.bgp_config import (
    GlobalConfig,
    GobgpdClient,
    PeerConfig,
    PeerExport,
    PeerStatus,
)
from porter_lb.routing.gobgp import GoBGPError
from porter_lb.routing.routes import Route


class MemoryCaches:
    """The cluster as the informers hold it. `put` and `delete` change it and call the
    subscribed handlers, as a watch event would."""

    def __init__(self, objects: Mapping[str, Iterable[Obj]] | None = None) -> None:
        self.objects: dict[str, dict[str, Obj]] = {}
        self._handlers: dict[str, list[Handler]] = {}
        self._index_funcs: dict[tuple[str, str], IndexFunc] = {}
        self._indices: dict[tuple[str, str], dict[str, set[str]]] = {}
        for kind, items in (objects or {}).items():
            self.objects[kind] = {}
            for obj in items:
                self.objects.setdefault(kind, {})[object_key(obj)] = obj

    def subscribe(self, kind: str, handler: Handler) -> None:
        self._handlers.setdefault(kind, []).append(handler)

    def get(self, kind: str, key: str) -> Obj | None:
        return self.objects.get(kind, {}).get(key)

    def items(self, kind: str) -> list[Obj]:
        return list(self.objects.get(kind, {}).values())

    def add_index(self, kind: str, name: str, index_func: IndexFunc) -> None:
        self._index_funcs[(kind, name)] = index_func
        index: dict[str, set[str]] = {}
        for key, obj in self.objects.get(kind, {}).items():
            for value in index_func(obj):
                index.setdefault(value, set()).add(key)
        self._indices[(kind, name)] = index

    def by_index(self, kind: str, name: str, value: str) -> list[Obj]:
        keys = self._indices[(kind, name)].get(value, set())
        return [self.objects[kind][key] for key in sorted(keys)]

    def _reindex(self, kind: str, key: str, old: Obj | None, new: Obj | None) -> None:
        for (indexed, name), index_func in self._index_funcs.items():
            if indexed != kind:
                continue
            index = self._indices[(kind, name)]
            for value in index_func(old) if old is not None else ():
                index.get(value, set()).discard(key)
            for value in index_func(new) if new is not None else ():
                index.setdefault(value, set()).add(key)

    def wait_synced(self, timeout: float) -> bool:
        return True

    def put(self, kind: str, obj: Obj) -> None:
        key = object_key(obj)
        old = self.objects.setdefault(kind, {}).get(key)
        self.objects[kind][key] = obj
        self._reindex(kind, key, old, obj)
        for handler in self._handlers.get(kind, []):
            handler(key, old, obj)

    def delete(self, kind: str, key: str) -> None:
        old = self.objects.get(kind, {}).pop(key, None)
        self._reindex(kind, key, old, None)
        for handler in self._handlers.get(kind, []):
            handler(key, old, None)


@dataclass
class MemoryKube:
    """An API server that stores what it is sent, by object path; a GET of anything else is a
    404. `writes` logs (verb, object path) of every write."""

    objects: dict[str, Obj] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)
    version: int = 100

    def _stamp(self, path: str, body: Obj) -> Obj:
        self.version += 1
        written = copy.deepcopy(body)
        written.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        self.objects[path] = written
        return copy.deepcopy(written)

    def get(self, path: str) -> Obj:
        if path not in self.objects:
            raise KubeError("GET", path, 404, "not found")
        return copy.deepcopy(self.objects[path])

    def create(self, path: str, body: Obj) -> Obj:
        path = f"{path}/{body.get('metadata', {}).get('name', '')}"
        self.writes.append(("create", path))
        return self._stamp(path, body)

    def replace(self, path: str, body: Obj) -> Obj:
        self.writes.append(("replace", path))
        return self._stamp(path, body)

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        self.writes.append(("merge_patch", path))
        merged = copy.deepcopy(self.objects.get(path, {}))
        _merge(merged, patch)
        return self._stamp(path, merged)

    def list(self, path: str, page_size: int = 500) -> tuple[list[Obj], str]:
        prefix = path.rstrip("/") + "/"
        found = [copy.deepcopy(o) for p, o in self.objects.items() if p.startswith(prefix)]
        return found, str(self.version)


def _merge(target: Obj, patch: Obj) -> None:
    """RFC 7386 JSON merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class MemoryGobgpd:
    """gobgpd as a speaker sees it: an instance (or none), configured peers, local paths and
    session states. Every change is logged in `calls` ("start", "add 2 paths", "add peer
    restarting", ...); pass a shared list to interleave it with other logs.

    As GoBGP 4: after StopBgp every call fails ("server stopped") until the process restarts
    (`restart_process`, what a speaker's `restart_gobgpd` asks for, or `crash`)."""

    target = "memory"

    def __init__(self, calls: list[str] | None = None) -> None:
        self.calls: list[str] = [] if calls is None else calls
        self.running: GlobalConfig | None = None
        self.configured: dict[str, PeerConfig] = {}
        self.paths: set[Route] = set()
        self.sessions: dict[str, str] = {}  # neighbour address -> session state
        self.stopped = False  # StopBgp ended the server loop
        self.export: tuple[PeerExport, ...] | None = None  # per-peer export filters

    def _serving(self) -> None:
        if self.stopped:
            raise GoBGPError("memory gobgpd: server stopped")

    def running_global(self) -> GlobalConfig | None:
        self._serving()
        return self.running

    def running_asn(self) -> int:
        self._serving()
        return self.running.asn if self.running is not None else 0

    def start_global(self, config: GlobalConfig) -> None:
        self._serving()
        self.calls.append("start")
        self.running = config

    def stop_bgp(self, *, allow_graceful_restart: bool = False) -> None:
        self._serving()
        self.calls.append("stop graceful" if allow_graceful_restart else "stop")
        self.running, self.configured, self.paths = None, {}, set()
        self.stopped = True

    def peer_configs(self) -> dict[str, PeerConfig]:
        self._serving()
        return dict(self.configured)

    def peers(self) -> list[PeerStatus]:
        self._serving()
        return [
            PeerStatus(address, config.peer_asn, self.sessions.get(address, "active"))
            for address, config in sorted(self.configured.items())
        ]

    def add_peer_config(self, config: PeerConfig, *, restarting: bool = False) -> None:
        # As GoBGP.add_peer_config: the Restart State bit only with graceful restart enabled.
        self._serving()
        marked = restarting and config.graceful_restart.enabled
        self.calls.append(f"add peer{' restarting' if marked else ''}")
        self.configured[config.neighbor_address] = config

    def update_peer(self, config: PeerConfig, previous: PeerConfig | None = None) -> None:
        self._serving()
        self.calls.append("update peer")
        if previous is not None and (previous.hold_time, previous.keepalive) != (
            config.hold_time,
            config.keepalive,
        ):
            self.calls.append("reset peer")
        self.configured[config.neighbor_address] = config

    def delete_peer(self, neighbor_address: str) -> None:
        self._serving()
        self.calls.append("delete peer")
        self.configured.pop(neighbor_address, None)

    def local_routes(self) -> list[Route]:
        self._serving()
        return sorted(self.paths)

    def add_routes(self, routes: Iterable[Route], batch: int = 1000) -> int:
        self._serving()
        added = list(routes)
        self.calls.append(f"add {len(added)} paths")
        # gobgpd keys paths by prefix and identifier: a new next hop replaces the old path.
        keys = {(r.prefix, r.identifier) for r in added}
        self.paths = {p for p in self.paths if (p.prefix, p.identifier) not in keys} | set(added)
        return len(added)

    def withdraw_routes(self, routes: Iterable[Route], batch: int = 1000) -> int:
        self._serving()
        withdrawn = list(routes)
        self.calls.append(f"withdraw {len(withdrawn)} paths")
        self.paths -= set(withdrawn)
        return len(withdrawn)

    def set_export_filters(self, filters: tuple[PeerExport, ...] | None) -> None:
        self._serving()
        self.calls.append("export filters" if filters else "no export filters")
        self.export = filters

    def close(self) -> None:
        pass

    def crash(self) -> None:
        """gobgpd restarted empty: no instance, no peers, no paths."""
        self.running, self.configured, self.paths = None, {}, set()
        self.export = None
        self.stopped = False

    def restart_process(self) -> str | None:
        """A speaker's `restart_gobgpd`: the supervisor starts a fresh gobgpd at once."""
        self.calls.append("restart")
        self.crash()
        return None


def _conforms() -> tuple[Caches, KubeClient, GobgpdClient]:
    """Never called: mypy checks here that each stand-in implements its whole Protocol."""
    return MemoryCaches(), MemoryKube(), MemoryGobgpd()
