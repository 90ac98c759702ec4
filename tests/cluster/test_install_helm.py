"""Install path 1: Helm, on the real cluster.

`helm install` with the lab's images: every porter-lb pod Ready (controller, webhook, agents,
gobgpd), the webhook's certificate made by the controller, and a Local Service's EIP answered
over TCP from the client namespace through the router's ECMP, only by pods on the nodes the
rule names. Two `helm upgrade`s with the same values change nothing: no object's
resourceVersion moves, no pod restarts, the certificate stays. `helm uninstall` (its pre-delete
hook) leaves nothing: no webhook configuration, RBAC, namespace or Service finalizer.
"""

from __future__ import annotations

from typing import Any

from porter_lab import testapp
from porter_lab.clusterbed import NAMESPACE, ClusterBed
from porter_lab.waiting import wait_for

APP_NAMESPACE = "helm-app"
PORTER_KINDS = (
    "deployments,daemonsets,services,serviceaccounts,roles,rolebindings,secrets,"
    "clusterroles,clusterrolebindings,validatingwebhookconfigurations"
)


def installed_state(bed: ClusterBed) -> dict[str, Any]:
    """What a no-op upgrade must not touch: porter-lb's objects' resourceVersions (the
    certificate Secret's included), its pods and their restart counts."""
    objects = bed.get_json(PORTER_KINDS, "-A", "-l", "app.kubernetes.io/part-of=porter-lb")
    secret = bed.get_json("secret", "-n", NAMESPACE, "porter-lb-webhook-tls")
    return {
        "objects": sorted(
            (o["kind"], o["metadata"]["name"], o["metadata"]["resourceVersion"])
            for o in objects["items"]
        ),
        "certificate": (secret["metadata"]["resourceVersion"], secret["data"]["tls.crt"]),
        "pods": sorted(
            (
                p["metadata"]["uid"],
                tuple(s["restartCount"] for s in p["status"]["containerStatuses"]),
            )
            for p in bed.porter_pods()
        ),
    }


def test_helm_install_upgrade_and_uninstall(bed: ClusterBed) -> None:
    bed.helm("install", "porter-lb", "charts/porter-lb", *bed.image_values(), "--wait")
    pods = bed.wait_porter_ready()
    names = sorted(p["metadata"]["name"].rsplit("-", 2)[0] for p in pods)
    assert names.count("porter-lb-controller") == 2 and len(pods) == 5, names

    # The controller made the certificate; the webhook configuration trusts its CA.
    secret = bed.get_json("secret", "-n", NAMESPACE, "porter-lb-webhook-tls")
    webhook = bed.get_json("validatingwebhookconfiguration", "porter-lb")
    assert webhook["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]

    bed.apply(bed.bgp_objects())
    bed.deploy_app("web", APP_NAMESPACE, replicas=2)
    ip = bed.service_ip("web", APP_NAMESPACE)
    wait_for(lambda: len(bed.ready_node_addresses(APP_NAMESPACE, "web")) == 2, 120, "2 Ready pods")
    # externalTrafficPolicy Local: exactly the nodes hosting a Ready pod.
    hops = bed.wait_hops(
        ip,
        lambda: bed.ready_node_addresses(APP_NAMESPACE, "web"),
        60,
        "the EIP's next hops: the two nodes with a Ready pod",
    )
    bed.wait_reachable(ip)
    answers = bed.answers(ip, 40, 21000)
    serving = {
        p["metadata"]["name"] + " " + p["spec"]["nodeName"]
        for p in testapp.pods(bed.api, APP_NAMESPACE, "web")
    }
    assert set(answers) == serving, answers  # both pods answered, nothing else, no error
    assert sum(answers.values()) == 40
    assert {bed.addresses[a.split()[1]] for a in answers} == hops

    before = installed_state(bed)
    for _ in range(2):
        bed.helm("upgrade", "porter-lb", "charts/porter-lb", *bed.image_values(), "--wait")
        assert installed_state(bed) == before

    bed.helm("uninstall", "porter-lb", "--wait")
    assert bed.leftovers() == []
    # Deleting the Service needs no controller any more; the objects porter-lb served go too.
    bed.kubectl("delete", "namespace", APP_NAMESPACE, "--timeout=60s")
    bed.kubectl("delete", "bgpconf,bgppeer,eip", "--all", "--timeout=60s")
    bed.wait_hops(ip, set(), 30, "the EIP withdrawn (no agent announces it any more)")
