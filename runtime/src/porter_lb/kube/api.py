"""Adapter to the Kubernetes API: JSON in, JSON out, over one urllib3 connection pool.

Objects stay plain dicts (the API's own JSON), which is what the pure core consumes; typed
client models would cost a conversion per object and per event for nothing. The pool, TLS and
credentials come from the pod's service account or from a kubeconfig, read here; only a
kubeconfig this module does not read itself (an exec or auth-provider credential plugin, a
proxy, basic auth) is handed to the official client's loader, imported then and only then.
The official client package weighs ~25 MB of resident memory in every process (with
requests, oauthlib and websocket-client it brings along), more than the rest of the agent.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3
from urllib3.util.ssl_ import create_urllib3_context

from porter_lb.model.resources import Obj

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_S = 60.0  # bound service account tokens rotate; kubelet rewrites the file


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


class TokenFile:
    """A bearer token read from a file, read again at most every TOKEN_REREAD_S seconds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._token = ""
        self._read_at = -TOKEN_REREAD_S

    def __call__(self) -> str:
        with self._lock:
            if time.monotonic() - self._read_at >= TOKEN_REREAD_S:
                self._token = self.path.read_text().strip()
                self._read_at = time.monotonic()
            return self._token


@dataclass
class Connection:
    """Where the API server is and how to reach it: its URL, a connection pool carrying TLS
    and any client certificate, and the bearer token, if any, for each request."""

    host: str
    pool: urllib3.PoolManager
    token: Callable[[], str] = field(default=lambda: "")

    @classmethod
    def of_configuration(cls, configuration: Any) -> Connection:
        """From the official client's Configuration (the lab's and tests' clients, and
        kubeconfigs with credential plugins): its pool settings and its own token refresh."""
        settings: dict[str, Any] = {
            "cert_reqs": ssl.CERT_REQUIRED if configuration.verify_ssl else ssl.CERT_NONE,
            "ca_certs": configuration.ssl_ca_cert,
            "cert_file": configuration.cert_file,
            "key_file": configuration.key_file,
            "maxsize": configuration.connection_pool_maxsize or 10,
        }
        if getattr(configuration, "tls_server_name", None):
            settings["server_hostname"] = configuration.tls_server_name
        pool: urllib3.PoolManager
        if getattr(configuration, "proxy", None):  # kubernetes.core's `proxy` option
            pool = urllib3.ProxyManager(
                configuration.proxy,
                proxy_headers=getattr(configuration, "proxy_headers", None),
                **settings,
            )
        else:
            pool = urllib3.PoolManager(**settings)

        def token() -> str:
            bearer = configuration.auth_settings().get("BearerToken") or {}
            value = str(bearer.get("value") or "")
            return value.removeprefix("Bearer ").removeprefix("bearer ")

        return cls(str(configuration.host), pool, token)


def _ssl_context(
    *,
    ca_file: str = "",
    ca_data: str = "",
    cert_file: str = "",
    key_file: str = "",
    cert_data: bytes = b"",
    key_data: bytes = b"",
    insecure: bool = False,
) -> ssl.SSLContext:
    # urllib3's own context, as the official client had: urllib3 matches the host name
    # (an IP address too) itself.
    context = create_urllib3_context(cert_reqs=ssl.CERT_NONE if insecure else ssl.CERT_REQUIRED)
    if not insecure:
        if ca_file or ca_data:
            context.load_verify_locations(cafile=ca_file or None, cadata=ca_data or None)
        else:
            context.load_default_certs()
    if cert_data or key_data:
        # The ssl module loads a client certificate from files only: a private directory
        # for the moment it takes, removed at once (the context keeps them in memory).
        with tempfile.TemporaryDirectory(prefix="porter-lb-kube-") as directory:
            cert_path, key_path = Path(directory, "cert.pem"), Path(directory, "key.pem")
            for path, data in ((cert_path, cert_data), (key_path, key_data)):
                path.touch(mode=0o600)
                path.write_bytes(data)
            context.load_cert_chain(str(cert_path), str(key_path))
    elif cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


def _in_cluster(pool_size: int) -> Connection:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    token = TokenFile(SERVICE_ACCOUNT / "token")
    token()  # fail now, with the path, if it cannot be read
    context = _ssl_context(ca_file=str(SERVICE_ACCOUNT / "ca.crt"))
    pool = urllib3.PoolManager(ssl_context=context, maxsize=pool_size)
    return Connection(f"https://{host}:{port}", pool, token)


# What a kubeconfig user or cluster may hold that this module reads itself; anything else
# goes to the official loader.
_OWN_USER_KEYS = {
    "client-certificate",
    "client-certificate-data",
    "client-key",
    "client-key-data",
    "token",
    "tokenFile",
}
_OWN_CLUSTER_KEYS = {
    "server",
    "certificate-authority",
    "certificate-authority-data",
    "insecure-skip-tls-verify",
    "tls-server-name",
}


def _named(entries: Any, name: str, kind: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return dict(entry.get(kind) or {})
    raise ValueError(f"no {kind} named {name!r}")


def _from_kubeconfig(path: str, context: str | None, pool_size: int) -> Connection | None:
    """The connection a simple kubeconfig describes; None when it needs the official loader
    (credential plugins, a proxy, basic auth)."""
    import yaml  # only a kubeconfig needs it: in a pod the service account has no YAML

    document = yaml.safe_load(Path(path).read_text())
    if not isinstance(document, dict):
        raise ValueError("not a kubeconfig (no mapping at the top)")
    name = context or document.get("current-context") or ""
    if not name:
        raise ValueError("no context given and no current-context")
    selected = _named(document.get("contexts"), name, "context")
    cluster = _named(document.get("clusters"), str(selected.get("cluster", "")), "cluster")
    user_name = selected.get("user")
    user = _named(document.get("users"), str(user_name), "user") if user_name else {}
    if set(user) - _OWN_USER_KEYS or set(cluster) - _OWN_CLUSTER_KEYS:
        return None
    if not cluster.get("server"):
        raise ValueError(f"cluster of context {name!r} has no server")
    base = Path(path).resolve().parent

    def file(key: str) -> str:
        value = str(user.get(key) or cluster.get(key) or "")
        return str(base / value) if value else ""

    def data(key: str, entry: dict[str, Any]) -> bytes:
        value = entry.get(key)
        return base64.b64decode(value) if value else b""

    context_ = _ssl_context(
        ca_file=file("certificate-authority"),
        ca_data=data("certificate-authority-data", cluster).decode(),
        cert_file=file("client-certificate"),
        key_file=file("client-key"),
        cert_data=data("client-certificate-data", user),
        key_data=data("client-key-data", user),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )
    extra = {"server_hostname": cluster["tls-server-name"]} if "tls-server-name" in cluster else {}
    pool = urllib3.PoolManager(ssl_context=context_, maxsize=pool_size, **extra)
    token: Callable[[], str] = lambda: ""  # noqa: E731 - no credential: anonymous, or TLS only
    if user.get("token"):
        fixed = str(user["token"])
        token = lambda: fixed  # noqa: E731
    elif user.get("tokenFile"):
        token = TokenFile(base / str(user["tokenFile"]))
        token()  # fail now, with the path, if it cannot be read
    return Connection(str(cluster["server"]).rstrip("/"), pool, token)


def _official_loader(path: str, context: str | None, pool_size: int) -> Connection:
    from kubernetes import client, config  # only for kubeconfigs this module does not read

    configuration = client.Configuration()
    config.load_kube_config(
        config_file=path, context=context or None, client_configuration=configuration
    )
    configuration.connection_pool_maxsize = pool_size
    return Connection.of_configuration(configuration)


def load_api_client(
    kubeconfig: str | None = None, *, context: str | None = None, pool_size: int = 64
) -> Connection:
    """The connection of `kubeconfig` (and its `context`); without one, the pod's service
    account inside a pod, else `$KUBECONFIG` or ~/.kube/config, as kubectl finds them.

    Every open watch holds one pooled connection, and status writes go out from several
    threads: the pool is sized for both (urllib3 would otherwise discard connections).
    """
    path = kubeconfig or ""
    if not path and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        default = os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config").split(":")[0])
        path = default if os.path.exists(default) else ""
    try:
        if not path:
            return _in_cluster(pool_size)
        own = _from_kubeconfig(path, context, pool_size)
        return own if own is not None else _official_loader(path, context, pool_size)
    except Exception as error:  # noqa: BLE001 - YAML, files, TLS material, the official loader
        where = f"kubeconfig {path}" if path else "the in-cluster configuration"
        raise KubeconfigError(f"cannot load {where}: {error}") from None


def _lines(response: Any) -> Iterator[str]:
    """The lines of a streamed (chunked) response as they arrive."""
    buffer = bytearray()
    for segment in response.stream(amt=None, decode_content=False):
        buffer.extend(segment)
        newline = buffer.find(b"\n")
        while newline != -1:
            yield buffer[:newline].decode("utf-8", errors="replace")
            del buffer[: newline + 1]
            newline = buffer.find(b"\n")
    if buffer:
        yield buffer.decode("utf-8", errors="replace")


class KubeAPI:
    def __init__(self, connection: Connection | Any) -> None:
        """`connection`: a Connection (load_api_client), or the official client's ApiClient
        (the lab's and tests' clients), whose configuration is used."""
        # The official client, when given one: the lab reads the API server's metrics with it.
        self.api_client: Any = None
        if not isinstance(connection, Connection):
            self.api_client = connection
            connection = Connection.of_configuration(connection.configuration)
        self.connection = connection

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
        url = self.connection.host + path
        if query:
            # A collection path may carry its own query (a label selector): extend it.
            url += ("&" if "?" in path else "?") + urlencode(
                {k: v for k, v in query.items() if v is not None}
            )
        headers = {"Accept": "application/json", "Content-Type": content_type}
        token = self.connection.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if isinstance(timeout, tuple):
            limits = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        else:
            limits = urllib3.Timeout(total=timeout)
        response = self.connection.pool.request(
            method,
            url,
            body=None if body is None else json.dumps(body),
            headers=headers,
            timeout=limits,
            preload_content=False,
        )
        if not 200 <= response.status < 300:
            text = response.data.decode(errors="replace")
            response.release_conn()
            raise KubeError(method, path, response.status, text)
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
        try:
            return dict(json.loads(response.data or b"{}"))
        finally:
            response.release_conn()

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
            for line in _lines(self._response):
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
