"""List+watch caches against the real API server: events, resume, relist on 410 Gone."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from kubernetes import client

from porter_lab.controlplane import ControlPlane
from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI
from porter_lb.kube.watch_cache import WatchCache
from porter_lb.model.resources import Obj


@dataclass
class Recorder:
    changes: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, key: str, old: Obj | None, new: Obj | None) -> None:
        kind = "deleted" if new is None else ("added" if old is None else "modified")
        self.changes.append((kind, key))


def service(name: str, port: int = 80) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"port": port}]},
    }


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    api = KubeAPI(api_client)
    name = f"watch-{uuid.uuid4().hex[:6]}"
    api.create("/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    api.delete(f"/api/v1/namespaces/{name}")


def running(cache: WatchCache) -> threading.Thread:
    thread = threading.Thread(target=cache.run, daemon=True)
    thread.start()
    return thread


def stopped(cache: WatchCache, thread: threading.Thread) -> None:
    """Stopping must not wait out the open watch."""
    cache.stop()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_cache_follows_creates_updates_deletes_and_resumes_without_relisting(
    api_client: client.ApiClient, namespace: str
) -> None:
    api = KubeAPI(api_client)
    path = f"/api/v1/namespaces/{namespace}/services"
    api.create(path, service("before"))
    recorder = Recorder()
    cache = WatchCache(api, path, recorder, watch_timeout=1)
    thread = running(cache)
    try:
        wait_for(cache.synced.is_set, 10, "initial list")
        assert recorder.changes == [("added", f"{namespace}/before")]
        api.create(path, service("svc"))
        api.merge_patch(f"{path}/svc", {"metadata": {"labels": {"x": "y"}}})
        # Outlive several server-side watch timeouts: the cache must resume, not relist.
        wait_for(lambda: cache.get(f"{namespace}/svc") is not None, 10, "svc in the cache")
        opened = cache.watches
        wait_for(lambda: cache.watches >= opened + 2, 10, "two more 1-second watches")
        api.delete(f"{path}/svc")
        wait_for(lambda: ("deleted", f"{namespace}/svc") in recorder.changes, 10, "delete seen")
        assert recorder.changes == [
            ("added", f"{namespace}/before"),
            ("added", f"{namespace}/svc"),
            ("modified", f"{namespace}/svc"),
            ("deleted", f"{namespace}/svc"),
        ]
        assert cache.lists == 1
        assert [o["metadata"]["name"] for o in cache.items()] == ["before"]
    finally:
        stopped(cache, thread)


def test_expired_resource_version_relists_and_reports_what_vanished_meanwhile(
    api_client: client.ApiClient, control_plane: ControlPlane, namespace: str
) -> None:
    """ConfigMaps bypass the API server's watch cache in the bed, so compacting etcd makes an
    old resourceVersion expire exactly as it does in a long-running cluster."""
    api = KubeAPI(api_client)
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    for name in ("stays", "goes"):
        api.create(path, {"metadata": {"name": name}, "data": {"k": "v"}})
    recorder = Recorder()
    cache = WatchCache(api, path, recorder, watch_timeout=30)
    cache.relist()
    stale = cache.resource_version
    api.delete(f"{path}/goes")
    api.create(path, {"metadata": {"name": "new"}})
    control_plane.compact_etcd()
    assert cache.resource_version == stale
    thread = running(cache)
    try:
        wait_for(
            lambda: ("deleted", f"{namespace}/goes") in recorder.changes,
            10,
            "the relist to report the deletion",
        )
        wait_for(lambda: cache.get(f"{namespace}/new") is not None, 10, "new in the cache")
        assert cache.lists == 2
        names = sorted(o["metadata"]["name"] for o in cache.items())
        assert names == ["new", "stays"]
    finally:
        stopped(cache, thread)
