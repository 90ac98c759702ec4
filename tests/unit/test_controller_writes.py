"""What the allocation controller writes for a Service getting its first IP: the finalizer in
the same status write (one request), or, when the API server refuses or drops it, the
finalizer on its own. On the in-memory caches and API server of porter_lab.memory."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from porter_lab import objects
from porter_lab.memory import MemoryCaches, MemoryKube
from porter_lb.allocation.controller import AllocationController
from porter_lb.kube.api import KubeError
from porter_lb.kube.events import EventRecorder
from porter_lb.model.resources import Obj

FINALIZER = "lb.porter-lb.io/finalizer"
SERVICE = "/api/v1/namespaces/shop/services/web"


@dataclass
class StatusServer(MemoryKube):
    """A status write carrying metadata is refused once with 409 (`conflict`), or stored
    without its metadata (`drop_metadata`, as a server resetting it would)."""

    conflict: bool = False
    drop_metadata: bool = False

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        if path.endswith("/status") and "metadata" in patch:
            if self.conflict:
                self.conflict = False
                self.writes.append(("refused", path))
                raise KubeError("PATCH", path, 409, "the object has been modified")
            if self.drop_metadata:
                patch = {k: v for k, v in patch.items() if k != "metadata"}
        return super().merge_patch(path, patch)


def allocate(api: MemoryKube) -> None:
    caches = MemoryCaches({"Service": [], "Eip": [], "Namespace": []})
    eip = objects.eip("pool", "192.0.2.8/30", default=True)
    eip["metadata"]["resourceVersion"] = "1"
    caches.objects["Eip"]["pool"] = eip
    service = objects.load_balancer_service("web", "shop")
    service["metadata"]["resourceVersion"] = "7"
    caches.objects["Service"]["shop/web"] = service
    api.objects[SERVICE] = service  # what a re-read after a conflict finds
    AllocationController(api, caches, EventRecorder(api)).process(["eip:pool", "svc:shop/web"])


def service_writes(api: MemoryKube) -> list[tuple[str, str]]:
    return [(verb, path) for verb, path in api.writes if path.startswith(SERVICE)]


def test_a_fresh_service_gets_its_finalizer_and_ip_in_one_write() -> None:
    api = StatusServer()
    allocate(api)
    assert service_writes(api) == [("merge_patch", f"{SERVICE}/status")]
    written = api.objects[f"{SERVICE}/status"]
    assert written["metadata"]["finalizers"] == [FINALIZER]
    assert written["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.8", "ipMode": "VIP"}]


@pytest.mark.parametrize(
    "server",
    [StatusServer(conflict=True), StatusServer(drop_metadata=True)],
    ids=["conflict", "metadata dropped"],
)
def test_the_finalizer_goes_on_its_own_when_the_status_write_cannot_carry_it(
    server: StatusServer,
) -> None:
    allocate(server)
    writes = service_writes(server)
    assert ("merge_patch", SERVICE) in writes, writes  # the finalizer, by itself
    assert FINALIZER in server.objects[SERVICE]["metadata"]["finalizers"]
    status = server.objects[f"{SERVICE}/status"]["status"]
    assert status["loadBalancer"]["ingress"] == [{"ip": "192.0.2.8", "ipMode": "VIP"}]
