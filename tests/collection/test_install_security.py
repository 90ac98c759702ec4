"""Security properties of porter-lb's install manifests and webhook certificate, without a
cluster (docs/security.md):

* every container runs with exactly the Linux capabilities its table in docs/security.md
  lists, no privilege escalation, a read-only root filesystem, the RuntimeDefault seccomp
  profile; the controller and its webhook as non-root;
* the webhook's rules intercept Eip writes only (never Services, Nodes, Namespaces) and fail
  open;
* the webhook certificate: a rotation's caBundle trusts the new CA and the old one, and a run
  after the overlap drops the old one.

The same properties on a real API server: tests/bed/test_install_security.py.
"""

from __future__ import annotations

import base64
import datetime
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ansible_collections.porter.lb.plugins.plugin_utils import (  # noqa: E402
    install_manifests as description,
)
from ansible_collections.porter.lb.plugins.plugin_utils import (  # noqa: E402
    webhook_certificate as tls,
)

CERTIFICATE = {"ca.crt": "Q0E=", "tls.crt": "", "tls.key": ""}

# container -> the capabilities it adds (everything else dropped). docs/security.md says why.
CAPABILITIES = {
    ("controller", "controller"): [],
    ("controller", "webhook"): [],
    ("controller", "gobgpd"): ["NET_BIND_SERVICE"],
    ("agent", "agent"): ["NET_ADMIN", "NET_RAW"],
    ("agent", "gobgpd"): ["NET_BIND_SERVICE"],
}
NON_ROOT = {("controller", "controller"), ("controller", "webhook"), ("controller", "gobgpd")}


def pods(speaker: str) -> dict[str, dict[str, Any]]:
    values = description.merged_values({"controller": {"speaker": speaker}})
    found = {}
    for component in description.COMPONENTS:
        for obj in description.manifests(values, component, CERTIFICATE):
            if obj["kind"] in ("Deployment", "DaemonSet"):
                found[component] = obj["spec"]["template"]["spec"]
    return found


@pytest.mark.parametrize("speaker", ["none", "central"])
def test_each_container_has_exactly_the_capabilities_it_needs(speaker: str) -> None:
    seen = set()
    for component, pod in pods(speaker).items():
        assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
        assert "hostPID" not in pod and "hostIPC" not in pod
        assert pod.get("hostNetwork") is (component == "agent")  # controller: default false
        for container in pod["containers"]:
            key = (component, container["name"])
            seen.add(key)
            context = container["securityContext"]
            added = {"add": CAPABILITIES[key]} if CAPABILITIES[key] else {}
            assert context["capabilities"] == {"drop": ["ALL"], **added}, key
            assert context["allowPrivilegeEscalation"] is False, key
            assert context["readOnlyRootFilesystem"] is True, key
            assert "privileged" not in context, key
            if key in NON_ROOT:
                assert context["runAsNonRoot"] is True, key
                assert context["runAsUser"] == description.CONTROLLER_UID, key
            else:  # the agent's pod: root for netlink and nftables, with the caps above only
                assert context.get("runAsNonRoot") is not True, key
            for volume in container.get("volumeMounts", []):
                assert not volume["mountPath"].startswith(("/proc", "/sys", "/var/run/docker"))
        for volume in pod["volumes"]:
            assert "hostPath" not in volume, (component, volume)
    expected = {k for k in CAPABILITIES if speaker == "central" or k != ("controller", "gobgpd")}
    assert seen == expected


def test_webhook_intercepts_eip_writes_only_and_fails_open() -> None:
    objects = description.manifests(description.merged_values({}), "controller", CERTIFICATE)
    (configuration,) = [o for o in objects if o["kind"] == "ValidatingWebhookConfiguration"]
    for hook in configuration["webhooks"]:
        assert hook["failurePolicy"] == "Ignore"
        assert hook["sideEffects"] == "None"
        assert hook["timeoutSeconds"] <= 5
        for rule in hook["rules"]:
            assert rule["apiGroups"] == [description.GROUP]
            assert rule["resources"] == ["eips"]
            assert set(rule["operations"]) <= {"CREATE", "UPDATE"}
    # Nothing is mutated, and only Services carry porter-lb's finalizer (never Eips).
    assert not [o for o in objects if o["kind"] == "MutatingWebhookConfiguration"]


# --- the webhook certificate's rotation ---------------------------------------------------------

NAMES = description.webhook_dns_names("porter-lb-system")


def cas(data: dict[str, str]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(base64.b64decode(data["ca.crt"]))


def serial(data: dict[str, str]) -> int:
    return x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"])).serial_number


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
    # Within the overlap, kept as is (the role changes nothing); after it, the old CA goes.
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
