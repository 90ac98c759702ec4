"""The webhook certificate the controller keeps (porter_lb.webhook.certificate, pure): kept
while good, replaced near expiry or on request, and a rotation's caBundle trusts the new CA and
the old one until the overlap has passed.

The keeper's writes (porter_lb.webhook.tls.CertificateKeeper) against an in-memory API: the
caBundle before the Secret, nothing written when nothing changes, a rotation asked for by the
Secret's annotation done once. The same on a real cluster: tests/cluster/test_webhook.py.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from cryptography import x509

from porter_lab.memory import MemoryKube
from porter_lb.webhook import certificate as tls
from porter_lb.webhook.tls import (
    ROTATE_ANNOTATION,
    ROTATED_ANNOTATION,
    WEBHOOKS_PATH,
    CertificateKeeper,
    dns_names,
    secret_path,
)

NAMES = dns_names("porter-lb-webhook", "porter-lb-system")


def cas(data: dict[str, str]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(base64.b64decode(data["ca.crt"]))


def serial(data: dict[str, str]) -> int:
    return x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"])).serial_number


def test_the_certificate_names_the_webhook_service() -> None:
    made = tls.certificate({}, NAMES)
    cert = x509.load_pem_x509_certificate(base64.b64decode(made["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {
        "porter-lb-webhook.porter-lb-system.svc",
        "porter-lb-webhook.porter-lb-system",
    }


def test_a_kept_certificate_is_returned_as_stored() -> None:
    made = tls.certificate({}, NAMES)
    assert len(cas(made)) == 1
    assert tls.certificate(made, NAMES) == made


def test_a_rotation_trusts_both_cas_until_the_overlap_has_passed() -> None:
    now = datetime.datetime.now(datetime.UTC)
    first = tls.certificate({}, NAMES, now=now)
    rotated = tls.certificate(first, NAMES, rotate=True, now=now)
    assert serial(rotated) != serial(first)
    new_ca, old_ca = cas(rotated)
    assert old_ca == cas(first)[0]
    # The new certificate is signed by the first CA of the bundle; the old one by the second:
    # an API server with this caBundle accepts either.
    cert = x509.load_pem_x509_certificate(base64.b64decode(rotated["tls.crt"]))
    cert.verify_directly_issued_by(new_ca)
    x509.load_pem_x509_certificate(base64.b64decode(first["tls.crt"])).verify_directly_issued_by(
        old_ca
    )
    assert tls.problem(rotated, NAMES, 30, now) is None
    # Within the overlap, kept as is; after it, the old CA goes.
    assert tls.certificate(rotated, NAMES, now=now + datetime.timedelta(minutes=1)) == rotated
    later = now + datetime.timedelta(minutes=tls.OVERLAP_MINUTES)
    settled = tls.certificate(rotated, NAMES, now=later)
    assert settled["tls.crt"] == rotated["tls.crt"]
    assert settled["tls.key"] == rotated["tls.key"]
    assert cas(settled) == [new_ca]
    assert tls.certificate(settled, NAMES, now=later) == settled


def test_a_renewal_near_expiry_also_keeps_the_old_ca_for_the_overlap() -> None:
    now = datetime.datetime.now(datetime.UTC)
    short = tls.certificate({}, NAMES, days=10, now=now)
    renewed = tls.certificate(short, NAMES, days=365, renew_days=30, now=now)
    assert serial(renewed) != serial(short)
    assert cas(renewed)[1] == cas(short)[0]


def test_an_unreadable_or_expired_old_ca_is_not_carried_over() -> None:
    now = datetime.datetime.now(datetime.UTC)
    assert len(cas(tls.certificate({"ca.crt": "bm9uZQ=="}, NAMES, now=now))) == 1
    old = tls.new_certificate(NAMES, 1, now - datetime.timedelta(days=3))
    assert len(cas(tls.certificate(old, NAMES, now=now))) == 1


# --- the keeper's writes, against an in-memory API -------------------------------------------


SECRET = secret_path("porter-lb-system", "porter-lb-webhook-tls")
CONFIGURATION = f"{WEBHOOKS_PATH}/porter-lb"


def keeper(api: MemoryKube) -> CertificateKeeper:
    return CertificateKeeper(
        api,
        "porter-lb-system",
        "porter-lb-webhook-tls",
        "porter-lb",
        "porter-lb-webhook",
    )


def configuration() -> dict[str, Any]:
    return {"metadata": {"name": "porter-lb"}, "webhooks": [{"clientConfig": {}}]}


def test_the_first_pass_sets_the_ca_bundle_then_creates_the_secret() -> None:
    api = MemoryKube({CONFIGURATION: configuration()})
    assert keeper(api).reconcile()
    assert api.writes == [("replace", CONFIGURATION), ("create", SECRET)]
    bundle = api.objects[CONFIGURATION]["webhooks"][0]["clientConfig"]["caBundle"]
    assert bundle == api.objects[SECRET]["data"]["ca.crt"]


def test_a_second_pass_writes_nothing() -> None:
    api = MemoryKube({CONFIGURATION: configuration()})
    keeper(api).reconcile()
    api.writes.clear()
    assert not keeper(api).reconcile()
    assert api.writes == []


def test_a_rotation_asked_by_annotation_is_done_once_ca_bundle_first() -> None:
    api = MemoryKube({CONFIGURATION: configuration()})
    keeper(api).reconcile()
    before = serial(api.objects[SECRET]["data"])
    api.objects[SECRET]["metadata"]["annotations"] = {ROTATE_ANNOTATION: "2026-12-06T10:00:00"}
    api.writes.clear()
    assert keeper(api).reconcile()
    assert api.writes == [("replace", CONFIGURATION), ("replace", SECRET)]
    data = api.objects[SECRET]["data"]
    assert serial(data) != before
    assert len(cas(data)) == 2  # the new CA and the old one, for the overlap
    assert api.objects[SECRET]["metadata"]["annotations"][ROTATED_ANNOTATION] == (
        "2026-12-06T10:00:00"
    )
    api.writes.clear()
    assert not keeper(api).reconcile()  # the same request is not done twice


def test_without_its_webhook_configuration_the_secret_is_still_made() -> None:
    api = MemoryKube({})
    assert keeper(api).reconcile()
    assert api.writes == [("create", SECRET)]
