"""Install path 2: the committed static manifest, `kubectl apply -f deploy/porter-lb.yaml`, as
it is (its images are given the manifest's names in every node's containerd, as `kind load`
would), on the real cluster; and the webhook's certificate, which the controller makes and
rotates itself (docs/security.md).

* Install: every porter-lb pod Ready; the controller created the Secret and set the
  webhook configuration's caBundle to its CA; the API server calls the webhook over TLS
  (an overlapping Eip is denied); a Local Service's EIP answered through the router.
* Rotation asked by the Secret's annotation: a new serial, the caBundle holding the new CA and
  the old; every admission meanwhile is checked (a call that failed would be let through:
  failurePolicy Ignore), so each overlapping Eip tried during the rotation is denied.
* Crash (the controller scaled to 0: no webhook answers): Eips are still written, nothing is
  blocked; then back.
* Uninstall: deploy/porter-lb-uninstall.yaml, then `kubectl delete -f deploy/porter-lb.yaml`:
  nothing left, the Service deletes freely.
"""

from __future__ import annotations

import base64
import time

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from porter_lab.clusterbed import GROUP, NAMESPACE, RELEASE_IMAGES, ClusterBed
from porter_lab.waiting import wait_for

APP_NAMESPACE = "manifest-app"
DENIED = 'admission webhook "eips.validate.porter-lb.io" denied the request'


def eip(name: str, address: str) -> str:
    return (
        f"apiVersion: {GROUP}\nkind: Eip\nmetadata: {{name: {name}}}\n"
        f"spec: {{address: {address}}}\n"
    )


def overlap_denied(bed: ClusterBed, name: str) -> bool:
    """A server-side dry run of an Eip overlapping lab-pool: True if the webhook denied it."""
    out = bed.kubectl(
        "create", "--dry-run=server", "-f", "-", check=False, stdin=eip(name, "203.0.113.150")
    )
    return DENIED in out


def serial(data: dict[str, str]) -> int:
    return x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"])).serial_number


def ca_bundle(bed: ClusterBed) -> list[x509.Certificate]:
    webhook = bed.get_json("validatingwebhookconfiguration", "porter-lb")
    bundle = webhook["webhooks"][0]["clientConfig"]["caBundle"]
    return x509.load_pem_x509_certificates(base64.b64decode(bundle))


def secret(bed: ClusterBed) -> dict[str, str]:
    return dict(bed.get_json("secret", "-n", NAMESPACE, "porter-lb-webhook-tls")["data"])


def test_static_manifest_install_rotation_crash_and_uninstall(bed: ClusterBed) -> None:
    bed.cluster.tag_images({RELEASE_IMAGES[k]: bed.built[k] for k in RELEASE_IMAGES})
    bed.kubectl("apply", "-f", "deploy/porter-lb.yaml")
    bed.wait_porter_ready()
    first = secret(bed)
    assert [ca.public_bytes(Encoding.PEM) for ca in ca_bundle(bed)] == [
        base64.b64decode(first["ca.crt"])
    ]

    bed.apply(bed.bgp_objects())
    wait_for(lambda: overlap_denied(bed, "overlap"), 30, "the webhook denying an overlap")
    bed.deploy_app("web", APP_NAMESPACE, replicas=2)
    ip = bed.service_ip("web", APP_NAMESPACE)
    wait_for(lambda: len(bed.ready_node_addresses(APP_NAMESPACE, "web")) == 2, 120, "2 Ready pods")
    bed.wait_hops(ip, lambda: bed.ready_node_addresses(APP_NAMESPACE, "web"), 60, "next hops")
    bed.wait_reachable(ip)

    # --- rotation: asked by annotation, checked admissions all along ---------------------
    bed.kubectl(
        "annotate", "secret", "-n", NAMESPACE, "porter-lb-webhook-tls",
        "porter-lb.io/rotate=test-1",
    )  # fmt: skip
    tried, denied = 0, 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        tried += 1
        denied += overlap_denied(bed, f"overlap-{tried}")
        rotated = secret(bed)
        if serial(rotated) != serial(first) and len(ca_bundle(bed)) == 2 and tried >= 20:
            break
        time.sleep(0.2)
    assert serial(rotated) != serial(first), "the controller did not rotate"
    assert denied == tried, f"{tried - denied} of {tried} admissions were not checked"
    new_ca, old_ca = ca_bundle(bed)  # the new CA first, the old one kept for the overlap
    assert old_ca.public_bytes(Encoding.PEM) == base64.b64decode(first["ca.crt"])
    x509.load_pem_x509_certificate(base64.b64decode(rotated["tls.crt"])).verify_directly_issued_by(
        new_ca
    )
    # Both webhooks serve the new certificate within their reload period: still checked.
    for attempt in range(20):
        assert overlap_denied(bed, f"after-{attempt}")
        time.sleep(0.5)

    # --- crash: no webhook answers; nothing is blocked -------------------------------------
    bed.kubectl("scale", "-n", NAMESPACE, "deployment/porter-lb-controller", "--replicas=0")
    wait_for(
        lambda: not [p for p in bed.porter_pods() if "controller" in p["metadata"]["name"]],
        60,
        "no controller pod",
    )
    started = time.monotonic()
    bed.kubectl("create", "-f", "-", stdin=eip("while-down", "198.18.90.0/30"))
    assert time.monotonic() - started < 10  # failurePolicy Ignore: admitted, at once
    bed.kubectl("delete", "eip", "while-down")
    bed.kubectl("scale", "-n", NAMESPACE, "deployment/porter-lb-controller", "--replicas=2")
    bed.wait_porter_ready()
    wait_for(lambda: overlap_denied(bed, "back"), 60, "the webhook checking again")

    # --- uninstall --------------------------------------------------------------------------
    bed.kubectl("apply", "-f", "deploy/porter-lb-uninstall.yaml")
    bed.kubectl(
        "wait", "-n", NAMESPACE, "--for=condition=Complete", "job/porter-lb-uninstall",
        "--timeout=180s",
    )  # fmt: skip
    bed.kubectl("delete", "--ignore-not-found", "--wait", "-f", "deploy/porter-lb.yaml")
    bed.kubectl("delete", "--ignore-not-found", "-f", "deploy/porter-lb-uninstall.yaml")
    assert bed.leftovers() == []
    bed.kubectl("delete", "namespace", APP_NAMESPACE, "--timeout=60s")
    # The CRDs went with the manifest, and every Eip, BgpConf and BgpPeer with them.
    assert "eips" not in bed.kubectl("api-resources", "--api-group=network.kubesphere.io")
    bed.wait_hops(ip, set(), 30, "the EIP withdrawn")
