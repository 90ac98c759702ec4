"""The allocation controller forgets what is gone (found by the churn soak, issue 7): a Service
deleted while refused an IP, an Eip deleted. In-memory caches and API stand-ins: no server."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from porter_lab import objects
from porter_lb.allocation.controller import AllocationController
from porter_lb.telemetry import metrics

Obj = dict[str, Any]


class Caches:
    """What AllocationController reads of porter_lb.kube.informers.Informers: get, items,
    subscribe."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Obj]] = {"Service": {}, "Eip": {}, "Namespace": {}}

    def subscribe(self, kind: str, handler: Callable[..., None]) -> None:
        pass

    def get(self, kind: str, key: str) -> Obj | None:
        return self.objects[kind].get(key)

    def items(self, kind: str) -> list[Obj]:
        return list(self.objects[kind].values())


class API:
    """Accepts every write; a GET finds nothing (the object is gone)."""

    def __init__(self) -> None:
        self.version = 100

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        return {}

    def replace(self, path: str, body: Obj) -> Obj:
        self.version += 1
        written = copy.deepcopy(body)
        written["metadata"]["resourceVersion"] = str(self.version)
        return written

    def get(self, path: str) -> Obj:
        from porter_lb.kube.api import KubeError

        raise KubeError("GET", path, 404, "not found")


class Recorder:
    def event(self, *_: object) -> None: ...
    def normal(self, *_: object) -> None: ...
    def warning(self, *_: object) -> None: ...


def controller() -> tuple[AllocationController, Caches]:
    caches = Caches()
    made = AllocationController(API(), caches, Recorder())  # type: ignore[arg-type]
    return made, caches


def refused_gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("porter_lb_allocations", {"state": "refused"})


def test_a_service_deleted_while_refused_is_forgotten() -> None:
    made, caches = controller()
    service = objects.load_balancer_service("web", "shop")
    service["metadata"]["resourceVersion"] = "1"
    caches.objects["Service"]["shop/web"] = service
    made.process(["svc:shop/web"])  # no Eip at all: refused
    assert set(made.refused) == {"shop/web"}
    assert refused_gauge() == 1

    # Deleted before its finalizer was ever set: the watch shows no deletionTimestamp.
    del caches.objects["Service"]["shop/web"]
    made.process(["svc:shop/web"])
    assert made.refused == {}
    assert refused_gauge() == 0


def test_a_deleted_eip_leaves_no_metric_series() -> None:
    made, caches = controller()
    eip = objects.eip("gone-pool", "192.0.2.0/30")
    eip["metadata"]["resourceVersion"] = "1"
    caches.objects["Eip"]["gone-pool"] = eip
    made.process(["eip:gone-pool"])
    labels = {"pool": "gone-pool"}
    assert metrics.REGISTRY.get_sample_value("porter_lb_pool_size", labels) == 4

    del caches.objects["Eip"]["gone-pool"]
    made.process(["eip:gone-pool"])
    for name in ("porter_lb_pool_size", "porter_lb_pool_usage", "porter_lb_pool_ready"):
        assert metrics.REGISTRY.get_sample_value(name, labels) is None, name


def test_a_deleted_eip_is_forgotten() -> None:
    made, caches = controller()
    eip = objects.eip("old-pool", "192.0.2.8/30", default=True)
    eip["metadata"]["resourceVersion"] = "1"
    caches.objects["Eip"]["old-pool"] = eip
    service = objects.load_balancer_service("web", "shop")
    service["metadata"]["resourceVersion"] = "1"
    caches.objects["Service"]["shop/web"] = service
    made.process(["eip:old-pool", "svc:shop/web"])
    assert "old-pool" in made._written and made._basis["old-pool"] == {"192.0.2.8": "shop/web"}

    del caches.objects["Eip"]["old-pool"]
    made.process(["eip:old-pool", "svc:shop/web"])
    assert "old-pool" not in made._written and "old-pool" not in made._basis
