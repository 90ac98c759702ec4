"""The allocation controller forgets what is gone (found by the churn soak): a Service deleted
while refused an IP, an Eip deleted. On the in-memory caches and API server of porter_lab.memory."""

from __future__ import annotations

from porter_lab import objects
from porter_lab.memory import MemoryCaches, MemoryKube
from porter_lb.allocation.controller import AllocationController
from porter_lb.kube.events import EventRecorder
from porter_lb.telemetry import metrics


def controller() -> tuple[AllocationController, MemoryCaches]:
    caches = MemoryCaches({"Service": [], "Eip": [], "Namespace": []})
    api = MemoryKube()  # a GET of an object never written finds nothing: it is gone
    made = AllocationController(api, caches, EventRecorder(api))
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
