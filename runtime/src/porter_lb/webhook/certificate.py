# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""The webhook's serving certificate: kept while still good, else a new CA and certificate.

Pure (no I/O): `certificate(stored, ...)` decides, from what the Secret holds now, the data it
must hold. The controller's leader applies it (porter_lb.webhook.tls), whichever way porter-lb
was installed (Helm, the roles, the static manifest): no install path carries a certificate.

Rotation without a request the API server cannot verify: a new certificate's ``ca.crt`` (the
webhook's caBundle too) holds the new CA *and* the old one, so the API server trusts whichever
certificate the webhook serves until every webhook has loaded the new one. Once the new
certificate is older than the overlap, the next pass drops the old CA. The CA's private key is
never kept: it signs one serving certificate and is gone.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterable, Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEYS = ("ca.crt", "tls.crt", "tls.key")
OVERLAP_MINUTES = 15


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_certificate(
    dns_names: Sequence[str], days: int, now: datetime.datetime | None = None
) -> dict[str, str]:
    """A self-signed CA and a serving certificate for `dns_names`, as base64 PEM by key."""
    now = now or datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("porter-lb-webhook-ca")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "ca.crt": _b64(ca.public_bytes(pem)),
        "tls.crt": _b64(cert.public_bytes(pem)),
        "tls.key": _b64(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        ),
    }


def problem(  # noqa: PLR0911 - one reason each
    stored: Mapping[str, str] | None,
    dns_names: Iterable[str],
    renew_days: int,
    now: datetime.datetime | None = None,
) -> str | None:
    """Why `stored` (a Secret's data, base64 PEM) cannot be kept; None when it can."""
    now = now or datetime.datetime.now(datetime.UTC)
    if not stored or any(not stored.get(k) for k in KEYS):
        return "no stored certificate"
    try:
        cas = _certificates(stored["ca.crt"])
        cert = x509.load_pem_x509_certificate(base64.b64decode(stored["tls.crt"]))
        key = serialization.load_pem_private_key(base64.b64decode(stored["tls.key"]), None)
    except ValueError as error:
        return f"stored certificate unreadable: {error}"
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return "tls.key does not belong to tls.crt"
    ca = _issuer(cas, cert)
    if ca is None:
        return "tls.crt is not signed by ca.crt"
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        have = set(names.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        have = set()
    if not set(dns_names) <= have:
        return f"tls.crt names {sorted(have)}, not {sorted(dns_names)}"
    expires = min(cert.not_valid_after_utc, ca.not_valid_after_utc)
    if expires - now < datetime.timedelta(days=renew_days):
        return f"expires {expires.date().isoformat()}, within {renew_days} days"
    return None


def _certificates(b64_pem: str) -> list[x509.Certificate]:
    """Every certificate of a base64 PEM bundle (ValueError if none or unreadable)."""
    return x509.load_pem_x509_certificates(base64.b64decode(b64_pem))


def _issuer(cas: Sequence[x509.Certificate], cert: x509.Certificate) -> x509.Certificate | None:
    """The CA of `cas` that signed `cert`, or None."""
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    return None


def _bundle(cas: Iterable[x509.Certificate]) -> str:
    return _b64(b"".join(ca.public_bytes(serialization.Encoding.PEM) for ca in cas))


def _settled(
    stored: Mapping[str, str], overlap: datetime.timedelta, now: datetime.datetime
) -> dict[str, str]:
    """`stored`, its ca.crt reduced to the CA of tls.crt once tls.crt is older than `overlap`
    (the old CA a rotation kept trusted is then no longer needed)."""
    kept = {k: stored[k] for k in KEYS}
    cas = _certificates(stored["ca.crt"])
    if len(cas) == 1:
        return kept
    cert = x509.load_pem_x509_certificate(base64.b64decode(stored["tls.crt"]))
    issuer = _issuer(cas, cert)
    if now - cert.not_valid_before_utc < overlap or issuer is None:
        return kept
    return {**kept, "ca.crt": _bundle([issuer])}


def _still_trusted(
    stored: Mapping[str, str] | None, now: datetime.datetime
) -> list[x509.Certificate]:
    """The stored CAs worth trusting beside a new one: readable and not expired."""
    try:
        cas = _certificates((stored or {}).get("ca.crt") or "")
    except ValueError:
        return []
    return [ca for ca in cas if ca.not_valid_after_utc > now]


def certificate(
    stored: Mapping[str, str] | None,
    dns_names: Sequence[str],
    days: int = 3650,
    renew_days: int = 30,
    *,
    rotate: bool = False,
    overlap_minutes: int = OVERLAP_MINUTES,
    now: datetime.datetime | None = None,
) -> dict[str, str]:
    """The webhook Secret's data for `dns_names`.

    `stored` is kept while it is good and `rotate` is false (once its new certificate is
    older than `overlap_minutes`, without the previous CA). Otherwise a new CA and certificate,
    with ``ca.crt`` = the new CA followed by the stored CA(s) still valid, so the API server
    trusts the old certificate until the webhook serves the new one.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    overlap = datetime.timedelta(minutes=overlap_minutes)
    if stored and not rotate and problem(stored, dns_names, renew_days, now) is None:
        return _settled(stored, overlap, now)
    fresh = new_certificate(list(dns_names), days, now)
    old = _still_trusted(stored, now)
    if old:
        new_ca = x509.load_pem_x509_certificate(base64.b64decode(fresh["ca.crt"]))
        fresh["ca.crt"] = _bundle([new_ca, *old[:1]])
    return fresh
