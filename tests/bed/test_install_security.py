"""The controller role's webhook TLS rotation and uninstall, on a real kube-apiserver that calls
the webhook through its Service reference (docs/security.md).

The bed has no kube-proxy or cluster DNS: this control plane of its own runs with HTTPS_PROXY
pointing at porter_lab.connect_proxy, which tunnels ``porter-lb-webhook.NS.svc:443`` to a
``porter-lb webhook`` process on loopback. TLS is end to end: the API server verifies the
webhook's certificate against the caBundle the role wrote, for the Service's name. The
webhook reads its certificate files from a directory the test writes from the Secret, as the
kubelet projects a Secret volume (atomic renames).

* Rotation (controller_webhook_certificate_rotate): a new serial in the Secret, the caBundle
  trusting the new CA and the old; an overlapping Eip is denied before the webhook reloads,
  after it serves the new certificate, and after a later run drops the old CA.
* Crash: the webhook configuration left behind with no webhook answering: Eips, Services,
  Namespaces and Nodes are still written (failurePolicy Ignore; the rules match Eips only).
* Uninstall: no ValidatingWebhookConfiguration of porter-lb's, no finalizer on a Service;
  Services, Eips and Namespaces are created and deleted freely afterwards.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from porter_lab import objects
from porter_lab.ansible_run import recap, run_playbook
from porter_lab.connect_proxy import ConnectProxy
from porter_lab.controlplane import ControlPlane, free_port
from porter_lab.processes import Daemon
from porter_lab.topology import run_id
from porter_lab.waiting import wait_for
from porter_lb.kubeapi import KubeAPI, KubeError

WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
EIPS = "/apis/network.kubesphere.io/v1alpha2/eips"
FINALIZER = "lb.porter-lb.io/finalizer"
DENIED = 'admission webhook "eips.validate.porter-lb.io" denied the request'


@pytest.fixture(scope="module")
def proxy() -> Iterator[ConnectProxy]:
    started = ConnectProxy().start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def plane(proxy: ConnectProxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane whose API server reaches Services through `proxy`."""
    made = ControlPlane(tmp_path_factory.mktemp("security-plane"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in proxy.environment().items():
                patch.setenv(key, value)
            made.start()
        yield made
    finally:
        made.stop()


@pytest.fixture(scope="module")
def api(plane: ControlPlane) -> KubeAPI:
    from kubernetes import config

    return KubeAPI(config.new_client_from_config(config_file=str(plane.kubeconfig)))


def controller_role(
    plane: ControlPlane, workdir: Path, namespace: str, **variables: Any
) -> dict[str, int]:
    plays = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "roles": [
                {
                    "role": "porter.lb.controller",
                    "vars": {
                        "controller_namespace": namespace,
                        "controller_kubeconfig": str(plane.kubeconfig),
                        **variables,
                    },
                }
            ],
        }
    ]
    done = run_playbook(plays, workdir)
    assert done.returncode == 0, f"controller role:\n{done.stdout[-4000:]}\n{done.stderr}"
    return recap(done.stdout)


class Webhook:
    """`porter-lb webhook` reading its certificate from files written from the Secret."""

    def __init__(self, api: KubeAPI, plane: ControlPlane, namespace: str, workdir: Path) -> None:
        self.api, self.namespace = api, namespace
        self.port = free_port()
        self.directory = workdir / "webhook-tls"
        self.directory.mkdir()
        self.project()
        self.daemon = Daemon(
            "porter-lb-webhook",
            [
                *(sys.executable, "-m", "porter_lb", "webhook"),
                *("--kubeconfig", str(plane.kubeconfig), "--log-format", "text"),
                *("--cert-file", str(self.directory / "tls.crt")),
                *("--key-file", str(self.directory / "tls.key")),
                *("--bind-address", "127.0.0.1", "--port", str(self.port)),
            ],
            workdir / "webhook.log",
        )

    def secret(self) -> dict[str, str]:
        path = f"/api/v1/namespaces/{self.namespace}/secrets/porter-lb-webhook-tls"
        return dict(self.api.get(path)["data"])

    def project(self) -> None:
        """Write the Secret's files as the kubelet does: each whole, by rename."""
        for key, value in self.secret().items():
            staged = self.directory / f".{key}.new"
            staged.write_bytes(base64.b64decode(value))
            os.replace(staged, self.directory / key)

    def served_serial(self) -> int:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return int(x509.load_der_x509_certificate(der).serial_number)


def serial(data: dict[str, str]) -> int:
    return int(x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"])).serial_number)


def ca_bundle(api: KubeAPI) -> list[x509.Certificate]:
    (hook,) = api.get(f"{WEBHOOKS}/porter-lb")["webhooks"]
    return x509.load_pem_x509_certificates(base64.b64decode(hook["clientConfig"]["caBundle"]))


def eip(name: str, address: str) -> dict[str, Any]:
    return {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": "Eip",
        "metadata": {"name": name},
        "spec": {"address": address},
    }


def overlap_denied(api: KubeAPI, name: str, address: str) -> str | None:
    """The webhook's denial of a dry-run create of an Eip overlapping `name`, or None when it
    was admitted (no webhook answered)."""
    try:
        api.request("POST", EIPS, query={"dryRun": "All"}, body=eip(f"{name}-probe", address))
    except KubeError as error:
        if DENIED in str(error):
            return str(error)
        raise
    return None


def test_webhook_rotation_crash_and_uninstall_through_the_role(
    plane: ControlPlane, api: KubeAPI, proxy: ConnectProxy, tmp_path: Path
) -> None:
    """One install (each role run costs tens of seconds here): rotate, crash, uninstall."""
    namespace = f"plb-tls-{run_id()}"
    apps = f"{namespace}-apps"
    hook = f"porter-lb-webhook.{namespace}.svc:443"
    controller_role(plane, tmp_path, namespace)
    webhook = Webhook(api, plane, namespace, tmp_path)
    proxy.routes[hook] = webhook.port
    webhook.daemon.start()
    name = f"{namespace}-a"
    try:
        # --- rotation ---------------------------------------------------------------------
        api.create(EIPS, eip(name, "198.18.80.0/28"))
        wait_for(
            lambda: (webhook.daemon.check_running(), overlap_denied(api, name, "198.18.80.5"))[1],
            30,
            "the API server calling the webhook through its Service",
            interval=0.2,
        )
        assert hook in proxy.tunnels
        first = webhook.secret()
        assert len(ca_bundle(api)) == 1

        controller_role(plane, tmp_path, namespace, controller_webhook_certificate_rotate=True)
        rotated = webhook.secret()
        assert serial(rotated) != serial(first)
        old_ca = x509.load_pem_x509_certificate(base64.b64decode(first["ca.crt"]))
        new_ca = x509.load_pem_x509_certificates(base64.b64decode(rotated["ca.crt"]))[0]
        assert ca_bundle(api) == [new_ca, old_ca]
        # The kubelet has not projected the new Secret yet: the old certificate, still trusted.
        assert webhook.served_serial() == serial(first)
        assert overlap_denied(api, name, "198.18.80.6")

        webhook.project()
        wait_for(lambda: webhook.served_serial() == serial(rotated), 30, "the webhook reloading")
        assert overlap_denied(api, name, "198.18.80.7")

        # A run after the overlap (here: 0 minutes) drops the old CA and keeps the rest.
        controller_role(plane, tmp_path, namespace, controller_webhook_ca_overlap_minutes=0)
        assert ca_bundle(api) == [new_ca]
        assert webhook.secret()["tls.crt"] == rotated["tls.crt"]
        webhook.project()
        assert overlap_denied(api, name, "198.18.80.8")
    finally:
        webhook.daemon.stop()

    # --- crash: the configuration stays, the webhook's Service leads nowhere ---------------
    proxy.routes[hook] = free_port()
    api.create("/api/v1/namespaces", {"metadata": {"name": apps}})
    service = {
        "metadata": {"name": "web", "finalizers": [FINALIZER]},
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": "porter-lb.io/porter-lb",
            "ports": [{"port": 80}],
        },
    }
    api.create(f"/api/v1/namespaces/{apps}/services", service)
    # Eip writes are called out to the dead webhook and admitted (failurePolicy Ignore).
    calls = proxy.tunnels.count(hook)
    api.create(EIPS, eip(f"{namespace}-b", "198.18.80.5"))
    assert proxy.tunnels.count(hook) > calls
    # Services, Nodes and Namespaces are never sent to it.
    calls = proxy.tunnels.count(hook)
    api.create(f"/api/v1/namespaces/{apps}/services", {**service, "metadata": {"name": "db"}})
    api.delete(f"/api/v1/namespaces/{apps}/services/db")
    api.create("/api/v1/nodes", {"metadata": {"name": f"{namespace}-node"}})
    api.delete(f"/api/v1/nodes/{namespace}-node")
    api.create("/api/v1/namespaces", {"metadata": {"name": f"{namespace}-x"}})
    api.delete(f"/api/v1/namespaces/{namespace}-x")
    assert proxy.tunnels.count(hook) == calls, "the webhook was called for another kind"

    # --- uninstall --------------------------------------------------------------------------
    controller_role(plane, tmp_path, namespace, controller_state="absent")
    ours = [
        w["metadata"]["name"]
        for w in api.get(WEBHOOKS)["items"]
        if "porter-lb" in w["metadata"]["name"]
        or any("porter-lb" in h["name"] for h in w.get("webhooks", []))
    ]
    assert ours == []
    for item in api.get("/api/v1/services")["items"]:
        assert FINALIZER not in (item["metadata"].get("finalizers") or []), item["metadata"]
    for item in api.get(EIPS)["items"]:
        assert not item["metadata"].get("finalizers"), item["metadata"]
    # Everything is created and deleted freely: the Service released, Eips, a Namespace.
    api.delete(f"/api/v1/namespaces/{apps}/services/web")
    wait_for(
        lambda: not objects.exists(api, f"/api/v1/namespaces/{apps}/services/web"), 10, "web gone"
    )
    api.create(EIPS, eip(f"{namespace}-c", "198.18.82.0/28"))
    for suffix in ("a", "b", "c"):
        api.delete(f"{EIPS}/{namespace}-{suffix}")
    assert not [e for e in api.get(EIPS)["items"] if e["metadata"]["name"].startswith(namespace)]
    api.create("/api/v1/namespaces", {"metadata": {"name": f"{namespace}-new"}})
    for gone in (f"{namespace}-new", apps):
        api.delete(f"/api/v1/namespaces/{gone}")
    assert proxy.tunnels.count(hook) == calls, "a webhook was still called after uninstall"
