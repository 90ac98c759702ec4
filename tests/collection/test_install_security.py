"""Security properties of porter-lb's install manifests and webhook certificate, without a
cluster (docs/security.md):

* every container runs with exactly the Linux capabilities its table in docs/security.md
  lists, no privilege escalation, a read-only root filesystem, the RuntimeDefault seccomp
  profile; the controller and its webhook as non-root;
* the webhook's rules intercept Eip writes only (never Services, Nodes, Namespaces) and fail
  open; no manifest holds a certificate or a caBundle (the controller makes them: the webhook
  certificate's own tests are tests/unit/test_webhook_certificate.py);
* every container has a liveness and a readiness probe.

The same properties on a real cluster: tests/cluster/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ansible_collections.porter.lb.plugins.plugin_utils import (  # noqa: E402
    install_manifests as description,
)

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
        for obj in description.manifests(values, component):
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
    objects = description.manifests(description.merged_values({}), "controller")
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


@pytest.mark.parametrize("speaker", ["none", "central"])
def test_no_manifest_holds_a_certificate(speaker: str) -> None:
    values = description.merged_values({"controller": {"speaker": speaker}})
    for component in (*description.COMPONENTS, description.UNINSTALL_COMPONENT):
        objects = description.manifests(values, component)
        assert not [o for o in objects if o["kind"] == "Secret"], component
        text = json.dumps(objects)
        assert "caBundle" not in text, component
        assert "BEGIN CERTIFICATE" not in text and "PRIVATE KEY" not in text, component


@pytest.mark.parametrize("speaker", ["none", "central"])
def test_every_container_has_a_liveness_and_a_readiness_probe(speaker: str) -> None:
    for component, pod in pods(speaker).items():
        for container in pod["containers"]:
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in container, (component, container["name"], probe)
                handler = container[probe]
                assert {"httpGet", "exec", "tcpSocket"} & set(handler), (component, probe)
