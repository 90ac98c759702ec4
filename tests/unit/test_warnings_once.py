"""events.Warnings: the speakers' and layer 2's Warning de-duplicator. The rule, as stated
here: one Warning per (kind, object, message); a different message for the same object is a
new Warning; the same name in another kind or namespace is another object; after `clear`, the
same message is reported again; an object without apiVersion (a list item) gets its kind's."""

from __future__ import annotations

import logging
from typing import Any

from porter_lb.kube.events import Warnings


class Recorder:
    """A WarningRecorder that keeps what would have been recorded."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str, str]] = []

    def warning(self, obj: dict[str, Any], reason: str, message: str) -> None:
        meta = obj["metadata"]
        where = f"{meta.get('namespace', '')}/{meta['name']}"
        self.events.append((obj["apiVersion"], obj["kind"], where, reason, message))


def obj(name: str, namespace: str = "") -> dict[str, Any]:
    meta = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {"metadata": meta}


def test_warnings_once_per_kind_object_and_message() -> None:
    recorder = Recorder()
    warnings = Warnings(recorder, logging.getLogger("test"))
    warnings.warn(obj("web", "shop"), "Service", "InvalidService", "bad port")
    warnings.warn(obj("web", "shop"), "Service", "InvalidService", "bad port")  # again: once
    warnings.warn(obj("web", "shop"), "Service", "InvalidService", "bad ip")  # new message
    warnings.warn(obj("web", "other"), "Service", "InvalidService", "bad ip")  # other namespace
    warnings.warn(obj("web"), "Eip", "InvalidEip", "bad ip")  # other kind, same name
    warnings.warn(obj("tor"), "BgpPeer", "InvalidBgpPeer", "no Secret")
    warnings.clear("BgpPeer", "tor")
    warnings.warn(obj("tor"), "BgpPeer", "InvalidBgpPeer", "no Secret")  # after clear: again
    warnings.warn(obj("ep"), "EndpointSlice", "InvalidEndpointSlice", "x")
    assert recorder.events == [
        ("v1", "Service", "shop/web", "InvalidService", "bad port"),
        ("v1", "Service", "shop/web", "InvalidService", "bad ip"),
        ("v1", "Service", "other/web", "InvalidService", "bad ip"),
        ("network.kubesphere.io/v1alpha2", "Eip", "/web", "InvalidEip", "bad ip"),
        ("network.kubesphere.io/v1alpha2", "BgpPeer", "/tor", "InvalidBgpPeer", "no Secret"),
        ("network.kubesphere.io/v1alpha2", "BgpPeer", "/tor", "InvalidBgpPeer", "no Secret"),
        ("discovery.k8s.io/v1", "EndpointSlice", "/ep", "InvalidEndpointSlice", "x"),
    ]
