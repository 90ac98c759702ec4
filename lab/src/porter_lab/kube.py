"""Kubernetes helpers for the bed: apply manifests by server-side apply, wait for CRDs."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from porter_lab.waiting import wait_for

FIELD_MANAGER = "porter-lab"


def load_manifests(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def apply(api_client: client.ApiClient, objects: Iterable[dict[str, Any]]) -> list[Any]:
    """Server-side apply each object (create or update); return what the server stored."""
    dynamic = DynamicClient(api_client)
    stored = []
    for obj in objects:
        resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        namespace = obj["metadata"].get("namespace") if resource.namespaced else None
        if resource.namespaced and not namespace:
            namespace = "default"
        stored.append(
            resource.server_side_apply(
                body=obj,
                name=obj["metadata"]["name"],
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        )
    return stored


def apply_crds(
    api_client: client.ApiClient, paths: Iterable[Path], timeout: float = 30
) -> list[str]:
    """Apply CRD manifests and wait until each is Established; return their names."""
    crds = [doc for path in paths for doc in load_manifests(path)]
    apply(api_client, crds)
    extensions = client.ApiextensionsV1Api(api_client)
    names = [crd["metadata"]["name"] for crd in crds]

    def established() -> bool:
        for name in names:
            status = extensions.read_custom_resource_definition(name).status
            conditions = {c.type: c.status for c in (status.conditions if status else None) or []}
            if conditions.get("Established") != "True":
                return False
        return True

    wait_for(established, timeout, f"CRDs {names} Established", interval=0.1)
    return names


def delete(api_client: client.ApiClient, objects: Iterable[dict[str, Any]]) -> None:
    """Delete each object if it exists (tests clean up what they applied)."""
    from kubernetes.dynamic.exceptions import NotFoundError

    dynamic = DynamicClient(api_client)
    for obj in objects:
        resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        namespace = obj["metadata"].get("namespace") if resource.namespaced else None
        if resource.namespaced and not namespace:
            namespace = "default"
        with contextlib.suppress(NotFoundError):
            resource.delete(name=obj["metadata"]["name"], namespace=namespace)


def api_writes(api_client: client.ApiClient) -> dict[str, float]:
    """The writes the API server has served since it started (its apiserver_request_total,
    mutating verbs), keyed "VERB resource" or "VERB resource/subresource"."""
    configuration = api_client.configuration
    text = api_client.call_api("GET", f"{configuration.host}/metrics").response.data
    counts: dict[str, float] = {}
    for line in text.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels, _, value = line.rpartition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if fields.get("verb") in ("POST", "PUT", "PATCH", "DELETE"):
            resource = "/".join(filter(None, (fields.get("resource"), fields.get("subresource"))))
            key = f"{fields['verb']} {resource}"
            counts[key] = counts.get(key, 0.0) + float(value)
    return counts
