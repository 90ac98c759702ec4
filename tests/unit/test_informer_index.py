"""The informers' index (client-go's Indexer): EndpointSlices by the Service they belong to.
Kept at every change, before the handlers run, so a handler reading it sees the change."""

from __future__ import annotations

from typing import Any

from porter_lab import objects
from porter_lab.memory import MemoryKube
from porter_lb.kube.watch_cache import WatchCache
from porter_lb.model.resources import slice_service_key

SLICES = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"


def by_service(obj: dict[str, Any]) -> list[str]:
    service = slice_service_key(obj)
    return [service] if service else []


def names(found: list[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in found)


def test_slices_are_found_by_their_service_and_follow_a_relist() -> None:
    api = MemoryKube()
    api.create(SLICES, objects.endpoint_slice("web-a", "shop", "web", ["n1"]))
    api.create(SLICES, objects.endpoint_slice("web-b", "shop", "web", ["n2"]))
    api.create(SLICES, objects.endpoint_slice("db-a", "shop", "db", ["n1"]))
    seen: list[list[str]] = []
    cache = WatchCache(api, SLICES, lambda *_: None)  # type: ignore[arg-type]
    cache.add_index("service", by_service)  # before anything is listed: built as it fills
    cache.on_change = lambda key, old, new: seen.append(
        names(cache.by_index("service", "shop/web"))
    )
    cache.relist()
    # The rule: a Service's slices are those whose kubernetes.io/service-name label names it.
    assert names(cache.by_index("service", "shop/web")) == ["web-a", "web-b"]
    assert names(cache.by_index("service", "shop/db")) == ["db-a"]
    assert cache.by_index("service", "shop/none") == []
    assert seen[0] == ["web-a", "web-b"]  # the first handler call saw the whole list indexed

    # web-b moves to db, web-a goes: after the next list the index says so.
    del api.objects[f"{SLICES}/web-a"]
    api.replace(f"{SLICES}/web-b", objects.endpoint_slice("web-b", "shop", "db", ["n2"]))
    cache.relist()
    assert cache.by_index("service", "shop/web") == []
    assert names(cache.by_index("service", "shop/db")) == ["db-a", "web-b"]


def test_an_index_added_late_is_built_from_what_the_cache_holds() -> None:
    api = MemoryKube()
    api.create(SLICES, objects.endpoint_slice("web-a", "shop", "web", ["n1"]))
    cache = WatchCache(api, SLICES, lambda *_: None)  # type: ignore[arg-type]
    cache.relist()
    cache.add_index("service", by_service)
    assert names(cache.by_index("service", "shop/web")) == ["web-a"]
