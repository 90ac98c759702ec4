"""Validating admission webhook: refuses Eips that break a rule spanning several Eips.

`porter-lb webhook --cert-file --key-file [--port] [--kubeconfig]` serves AdmissionReview v1
over HTTPS at `/validate-eip`, and `/healthz`. For each CREATE or UPDATE of an Eip it lists the
Eips stored now and asks `porter_lb.model.validation.check_admission` whether the change would
make an Eip lose a conflict (shared addresses, a second default pool of a family); if so it denies
the request with a 422 naming the field, the other Eip and the rule.

The webhook is registered with failurePolicy Ignore and never for DELETE (see
`roles/controller/files/webhook.yaml` and docs/validation.md): when it is down, Eips can still
be created, edited and deleted, and the controller, which applies the same rules at every
reconcile (`porter_lb.model.validation.pool_conflicts`), marks any Eip that loses not ready. The
webhook only makes the refusal early and visible to whoever applied the object.

The Eips are listed from the API on every request rather than read from a watch cache: an
admission is rare, Eips are few, and a list is a fresh read, so two conflicting Eips applied
one after the other are caught even when the second follows within milliseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from porter_lb.model.resources import Obj
from porter_lb.model.validation import check_admission
from porter_lb.telemetry.metrics import LocalHTTPServer, QuietHandler

log = logging.getLogger(__name__)

EipSource = Callable[[], Sequence[Mapping[str, Any]]]
"""Returns the Eips stored now; raises when it cannot (the request is then let through)."""

VALIDATE_EIP_PATH = "/validate-eip"
HEALTH_PATH = "/healthz"
MAX_REQUEST_BYTES = 3 * 1024 * 1024  # the API server caps objects at about 3 MiB as well
CERT_RELOAD_SECONDS = 10.0


def admission_response(review: Mapping[str, Any], eips: EipSource) -> Obj:
    """The AdmissionReview (v1) answering `review`, an AdmissionReview request for an Eip.

    Denials carry code 422 and a message naming the field, the other Eip and the rule. When
    the Eips cannot be listed, the request is allowed with a warning: the same choice as the
    webhook's failurePolicy Ignore, for the same reason (the controller checks again).
    """
    request = review.get("request")
    if not isinstance(request, Mapping) or not request.get("uid"):
        raise ValueError("not an AdmissionReview request: no request.uid")
    response: Obj = {"uid": request["uid"], "allowed": True}
    obj = request.get("object")
    if request.get("operation") in ("CREATE", "UPDATE") and isinstance(obj, Mapping):
        try:
            existing = eips()
        except Exception as error:  # noqa: BLE001 - any failure to read means "not checked"
            log.warning("cannot list Eips, allowing without cross-object checks: %s", error)
            response["warnings"] = [
                "porter-lb webhook could not list Eips, so overlapping or second default pools "
                "were not checked now; the porter-lb controller checks them and marks a losing "
                "Eip not ready"
            ]
        else:
            denial = check_admission(obj, existing)
            if denial is not None:
                response["allowed"] = False
                response["status"] = {"code": 422, "reason": "Invalid", "message": denial}
    log.info(
        "admission %s Eip %s: %s",
        request.get("operation"),
        request.get("name") or (obj or {}).get("metadata", {}).get("name"),
        "allowed" if response["allowed"] else response["status"]["message"],
    )
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


class _Handler(QuietHandler):
    server: WebhookServer
    timeout = 10  # seconds a client may take to send its request (and the TLS handshake)

    def do_GET(self) -> None:
        if self.path == HEALTH_PATH:
            self._reply(200, b"ok\n", "text/plain")
        else:
            self._reply(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != VALIDATE_EIP_PATH:
            self._reply(404, b"not found\n", "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= MAX_REQUEST_BYTES:
                raise ValueError(f"Content-Length {length} outside 1..{MAX_REQUEST_BYTES}")
            review = json.loads(self.rfile.read(length))
            if not isinstance(review, Mapping):
                raise ValueError("the body is not a JSON object")
            answer = admission_response(review, self.server.eips)
        except ValueError as error:
            self._reply(400, f"bad AdmissionReview: {error}\n".encode(), "text/plain")
            return
        self._reply(200, json.dumps(answer).encode())


class FileCertificate:
    """The serving certificate from two PEM files (--cert-file, --key-file: cert-manager, a
    mounted Secret), loaded again whenever the files change (`refresh()`)."""

    def __init__(self, cert_file: str, key_file: str, context: ssl.SSLContext) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = context
        self.loaded: tuple[float, float] | None = None
        self.problem: str | None = "no certificate loaded yet"

    def refresh(self) -> bool:
        """Load the files if they changed; True when it loaded them."""
        try:
            stamp = (os.stat(self.cert_file).st_mtime, os.stat(self.key_file).st_mtime)
            if stamp == self.loaded:
                return False
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as error:
            self.problem = f"cannot load {self.cert_file} and {self.key_file}: {error}"
            if self.loaded is not None:
                log.warning("keeping the current certificate: %s", self.problem)
            return False
        first = self.loaded is None
        self.loaded, self.problem = stamp, None
        log.info("%s the certificate %s", "loaded" if first else "reloaded", self.cert_file)
        return True


class CertificateSource(Protocol):
    context: ssl.SSLContext
    problem: str | None  # None once a certificate is loaded

    def refresh(self) -> bool: ...


def server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class WebhookServer(LocalHTTPServer):
    """HTTPS server for the webhook; TLS handshakes happen in the request threads.

    Its TLS context is the certificate source's: `certificate.refresh()` loads a rotated
    certificate (new connections use it) without a restart.
    """

    def __init__(
        self, address: tuple[str, int], certificate: CertificateSource, eips: EipSource
    ) -> None:
        self.eips = eips
        self.certificate = certificate
        super().__init__(address, _Handler)
        self.socket = certificate.context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def serve_in_thread(server: WebhookServer) -> threading.Thread:
    """Serve until `server.shutdown()`; for tests and `run`."""
    thread = threading.Thread(target=server.serve_forever, name="webhook", daemon=True)
    thread.start()
    return thread


@dataclass(frozen=True)
class Certificates:
    """PEM texts: a CA (its certificate goes into the webhook's caBundle) and a serving pair."""

    ca_cert: bytes
    cert: bytes
    key: bytes

    def write(self, directory: os.PathLike[str] | str) -> tuple[str, str, str]:
        """Write ca.crt, tls.crt and tls.key (0600) into `directory`; return their paths."""
        paths = []
        for name, data in (("ca.crt", self.ca_cert), ("tls.crt", self.cert), ("tls.key", self.key)):
            path = os.path.join(directory, name)
            with open(path, "wb") as file:
                file.write(data)
            os.chmod(path, 0o600)
            paths.append(path)
        return paths[0], paths[1], paths[2]


def generate_certificates(hosts: Sequence[str], days: int = 365) -> Certificates:
    """A self-signed CA and a serving certificate it signs for `hosts` (IPs or DNS names).

    For the lab and the tests, and for clusters without cert-manager. Needs the
    `cryptography` package, which the runtime does not otherwise depend on.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def builder(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey) -> Any:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = "porter-lb webhook CA"
    ca = (
        builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        builder(hosts[0] if hosts else "porter-lb-webhook", ca_name, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Certificates(
        ca_cert=ca.public_bytes(pem),
        cert=cert.public_bytes(pem),
        key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
