"""Adapter to the Kubernetes API: JSON in, JSON out, over the official client's connection.

Objects stay plain dicts (the API's own JSON), which is what the pure core consumes; typed
client models would cost a conversion per object and per event for nothing. Authentication,
TLS and in-cluster/kubeconfig loading are the official client's.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from kubernetes import client, config
from kubernetes.watch.watch import iter_resp_lines

from porter_lb.model.resources import Obj


class KubeError(RuntimeError):
    """A request the API server refused; `status` is its HTTP status (410 Gone, 409 Conflict)."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        self.reason = ""
        message = body
        try:
            parsed = json.loads(body)
            self.reason = str(parsed.get("reason", ""))
            message = str(parsed.get("message", body))
        except (ValueError, AttributeError):
            pass
        super().__init__(f"{method} {path}: {status} {self.reason}: {message}".strip())


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Obj


class KubeClient(Protocol):
    """What the controllers and speakers ask of the API server (`KubeAPI` is the real one;
    `porter_lab.memory.MemoryKube` the in-memory one of the unit tests). Paths are API paths;
    errors are `KubeError` with the HTTP status."""

    def get(self, path: str) -> Obj: ...
    def create(self, path: str, body: Obj) -> Obj: ...
    def replace(self, path: str, body: Obj) -> Obj: ...
    def merge_patch(self, path: str, patch: Obj) -> Obj: ...
    def list(self, path: str, page_size: int = 500) -> tuple[list[Obj], str]: ...


class KubeconfigError(Exception):
    """No API credentials could be loaded; the message names where they were looked for."""


def load_api_client(
    kubeconfig: str | None = None, *, context: str | None = None, pool_size: int = 64
) -> client.ApiClient:
    """The API client of `kubeconfig` (and its `context`); without one, the pod's service
    account inside a pod, else `$KUBECONFIG` or ~/.kube/config, as kubectl finds them.

    Every open watch holds one pooled connection, and status writes go out from several
    threads: the pool is sized for both (urllib3 would otherwise discard connections).
    """
    configuration = client.Configuration()
    path = kubeconfig or ""
    if not path and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        default = os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config").split(":")[0])
        path = default if os.path.exists(default) else ""
    try:
        if path:
            config.load_kube_config(
                config_file=path, context=context or None, client_configuration=configuration
            )
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (config.ConfigException, OSError, ValueError) as error:
        where = f"kubeconfig {path}" if path else "the in-cluster configuration"
        raise KubeconfigError(f"cannot load {where}: {error}") from None
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class KubeAPI:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Obj | list[Obj] | None = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = 30,
    ) -> Any:
        """Send one request; return the streaming urllib3 response of a 2xx, else KubeError."""
        url = self.api_client.configuration.host + path
        if query:
            # A collection path may carry its own query (a label selector): extend it.
            url += ("&" if "?" in path else "?") + urlencode(
                {k: v for k, v in query.items() if v is not None}
            )
        headers = {"Accept": "application/json", "Content-Type": content_type}
        token = self.api_client.configuration.auth_settings().get("BearerToken")
        if token and token.get("value"):
            headers[str(token["key"])] = str(token["value"])
        response = self.api_client.call_api(
            method, url, header_params=headers, body=body, _request_timeout=timeout
        ).response
        if not 200 <= response.status < 300:
            raise KubeError(method, path, response.status, response.data.decode(errors="replace"))
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Obj | list[Obj] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        response = self._send(method, path, query=query, body=body, content_type=content_type)
        return dict(json.loads(response.data or b"{}"))

    def get(self, path: str) -> Obj:
        return self.request("GET", path)

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body=body)

    def replace(self, path: str, body: Obj) -> Obj:
        """PUT: guarded by body's metadata.resourceVersion when set (409 Conflict if stale)."""
        return self.request("PUT", path, body=body)

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        return self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    def json_patch(self, path: str, operations: list[Obj]) -> Obj:
        """RFC 6902 operations (a failed `test` is a 422: nothing was changed)."""
        return self.request(
            "PATCH", path, body=operations, content_type="application/json-patch+json"
        )

    def delete(self, path: str) -> Obj:
        return self.request("DELETE", path)

    def list(self, path: str, page_size: int = 500) -> tuple[list[Obj], str]:
        """Every object at a collection path, paged; returns (items, list resourceVersion)."""
        items: list[Obj] = []
        token: str | None = None
        while True:
            page = self.request("GET", path, query={"limit": page_size, "continue": token})
            items.extend(page.get("items") or [])
            token = page.get("metadata", {}).get("continue") or None
            if not token:
                return items, str(page["metadata"]["resourceVersion"])

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 300) -> Watch:
        """Watch a collection from `resource_version`, with bookmarks (see Watch)."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        response = self._send("GET", path, query=query, timeout=(10, timeout_seconds + 30))
        return Watch(path, response)


class Watch:
    """An open watch: iterate for events until the server closes it (after its timeout).

    An expired resourceVersion raises KubeError with status 410, whether the server says so in
    the HTTP status or in an ERROR event. close() may be called from another thread: it ends the
    iteration at once, which is how a controller shuts down without waiting out the watch.
    """

    def __init__(self, path: str, response: Any) -> None:
        self.path = path
        self._response = response
        self._closed = False

    def __iter__(self) -> Iterator[WatchEvent]:
        try:
            for line in iter_resp_lines(self._response):
                if self._closed:
                    return
                if not line:
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    status = event.get("object", {})
                    code = int(status.get("code", 500))
                    raise KubeError("WATCH", self.path, code, json.dumps(status))
                yield WatchEvent(event["type"], event["object"])
        except Exception:
            if self._closed:
                return
            raise
        finally:
            self._response.release_conn()

    def close(self) -> None:
        self._closed = True
        # The watch may have ended on its own and returned its connection to the pool already.
        with contextlib.suppress(RuntimeError, ValueError):
            self._response.shutdown()
