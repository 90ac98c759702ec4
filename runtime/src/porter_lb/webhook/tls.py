"""The webhook's TLS, kept by porter-lb itself (as MetalLB's cert-controller does).

Two sides, both over the Kubernetes API, so no install path (Helm chart, roles, static
manifest) carries a certificate and none re-makes it when it renders:

- `CertificateKeeper` runs in the controller's leader. Every `interval` seconds (and once at
  the start of each term) it reads the Secret (`porter-lb-webhook-tls`) and decides, with
  porter_lb.webhook.certificate, what it must hold: the stored CA and certificate while they are
  good, else a new pair. It writes the ValidatingWebhookConfiguration's caBundle first, then
  the Secret, so the API server trusts the old and the new CA before any webhook serves the new
  certificate. A rotation before expiry is asked for by setting the Secret's annotation
  `porter-lb.io/rotate` to any new value (the roles' `controller_webhook_certificate_rotate`).
- `SecretCertificate` runs in each webhook: it reads the Secret and loads its tls.crt/tls.key
  into the server's TLS context, again every few seconds; until a certificate is there the
  webhook is not ready (and the API server, failurePolicy Ignore, lets Eips through unchecked;
  the controller checks the same rules).
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from porter_lb.kube.api import KubeClient, KubeError
from porter_lb.webhook import certificate as webhook_certificate

log = logging.getLogger(__name__)

ROTATE_ANNOTATION = "porter-lb.io/rotate"
ROTATED_ANNOTATION = "porter-lb.io/rotated-for"
WEBHOOKS_PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def secret_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets/{name}"


def dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server calls the webhook Service by."""
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}"]


@dataclass
class CertificateKeeper:
    """Keeps the webhook Secret's certificate valid and the caBundle matching it (leader only)."""

    api: KubeClient
    namespace: str
    secret: str
    configuration: str
    service: str
    days: int = 3650
    renew_days: int = 30
    overlap_minutes: int = webhook_certificate.OVERLAP_MINUTES
    interval: float = 60.0
    problems: int = field(default=0, init=False)

    def run(self, stop: threading.Event) -> None:
        """Reconcile now and then every `interval` seconds until `stop`."""
        while not stop.is_set():
            try:
                self.reconcile()
                self.problems = 0
            except (KubeError, OSError, ValueError) as error:
                self.problems += 1
                log.warning("webhook certificate: %s; trying again in %.0fs", error, 5.0)
                stop.wait(5.0)
                continue
            stop.wait(self.interval)

    def reconcile(self) -> bool:
        """One pass; True when it wrote something."""
        path = secret_path(self.namespace, self.secret)
        try:
            stored_secret: dict[str, Any] | None = self.api.get(path)
        except KubeError as error:
            if error.status != 404:
                raise
            stored_secret = None
        stored = dict((stored_secret or {}).get("data") or {})
        annotations = dict(((stored_secret or {}).get("metadata") or {}).get("annotations") or {})
        asked = annotations.get(ROTATE_ANNOTATION, "")
        rotate = bool(asked) and asked != annotations.get(ROTATED_ANNOTATION, "")
        wanted = webhook_certificate.certificate(
            stored,
            dns_names(self.service, self.namespace),
            self.days,
            self.renew_days,
            rotate=rotate,
            overlap_minutes=self.overlap_minutes,
        )
        wrote = self._ensure_ca_bundle(wanted["ca.crt"])
        if {k: stored.get(k) for k in webhook_certificate.KEYS} != wanted or rotate:
            reason = (
                "rotation asked"
                if rotate
                else webhook_certificate.problem(
                    stored, dns_names(self.service, self.namespace), self.renew_days
                )
                or "the previous CA is no longer needed"
            )
            self._write_secret(stored_secret, wanted, asked if rotate else None)
            log.info("webhook certificate written (%s)", reason, extra={"secret": self.secret})
            wrote = True
        return wrote

    def _ensure_ca_bundle(self, ca_bundle: str) -> bool:
        path = f"{WEBHOOKS_PATH}/{self.configuration}"
        try:
            configuration = self.api.get(path)
        except KubeError as error:
            if error.status == 404:
                log.debug("no ValidatingWebhookConfiguration %s yet", self.configuration)
                return False
            raise
        changed = False
        for webhook in configuration.get("webhooks") or []:
            client_config = webhook.setdefault("clientConfig", {})
            if client_config.get("caBundle") != ca_bundle:
                client_config["caBundle"] = ca_bundle
                changed = True
        if changed:
            self.api.replace(path, configuration)  # guarded by its resourceVersion
            log.info("webhook caBundle updated", extra={"configuration": self.configuration})
        return changed

    def _write_secret(
        self, stored: dict[str, Any] | None, data: dict[str, str], rotated_for: str | None
    ) -> None:
        if stored is None:
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {
                    "name": self.secret,
                    "namespace": self.namespace,
                    "labels": {
                        "app.kubernetes.io/name": "porter-lb",
                        "app.kubernetes.io/component": "webhook",
                        "app.kubernetes.io/part-of": "porter-lb",
                    },
                },
                "data": data,
            }
            self.api.create(f"/api/v1/namespaces/{self.namespace}/secrets", body)
            return
        stored["data"] = data
        if rotated_for is not None:
            stored.setdefault("metadata", {}).setdefault("annotations", {})[ROTATED_ANNOTATION] = (
                rotated_for
            )
        self.api.replace(secret_path(self.namespace, self.secret), stored)


class SecretCertificate:
    """Loads the webhook's serving certificate from its Secret into an SSLContext, and again
    whenever the Secret's certificate changes (`refresh()`)."""

    def __init__(
        self,
        read_secret: Callable[[], dict[str, Any]],
        context: ssl.SSLContext,
        where: str,
    ) -> None:
        self.read_secret = read_secret
        self.context = context
        self.where = where
        self.loaded: tuple[str, str] | None = None
        self.problem: str | None = "no certificate loaded yet"

    def refresh(self) -> bool:
        """Load the Secret's certificate if it is new; True when it loaded one."""
        try:
            data = dict(self.read_secret().get("data") or {})
        except KubeError as error:
            self.problem = (
                f"Secret {self.where} not found (the controller's leader makes it)"
                if error.status == 404
                else f"cannot read Secret {self.where}: {error}"
            )
            return False
        except OSError as error:
            self.problem = f"cannot read Secret {self.where}: {error}"
            return False
        pair = (data.get("tls.crt", ""), data.get("tls.key", ""))
        if not all(pair):
            self.problem = f"Secret {self.where} holds no tls.crt and tls.key yet"
            return False
        if pair == self.loaded:
            return False
        try:
            _load_pem_pair(self.context, base64.b64decode(pair[0]), base64.b64decode(pair[1]))
        except (ValueError, ssl.SSLError) as error:
            self.problem = f"Secret {self.where}: unusable certificate: {error}"
            log.warning("%s", self.problem)
            return False
        first = self.loaded is None
        self.loaded, self.problem = pair, None
        log.info("%s the certificate from Secret %s", "loaded" if first else "reloaded", self.where)
        return True


def _load_pem_pair(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """SSLContext.load_cert_chain reads files only: hand it private temporary ones."""
    with tempfile.TemporaryDirectory(prefix="porter-lb-tls-") as directory:
        paths = []
        for name, data in (("tls.crt", cert), ("tls.key", key)):
            path = os.path.join(directory, name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as file:
                file.write(data)
            paths.append(path)
        context.load_cert_chain(paths[0], paths[1])
