"""The lab's test application on the real cluster (image lab/images/test-app): a Deployment
whose pods answer HTTP with "<pod> <node>", behind a LoadBalancer Service of porter-lb's.

Builders are pure (plain dicts); the helpers read pods through the API (KubeAPI) and flip a
pod's readiness over HTTP from inside its node's network namespace (the only place its pod
address is reachable from), so a test decides exactly when a pod stops or starts being Ready.
"""

from __future__ import annotations

from typing import Any

from porter_lab import netns
from porter_lb.kube.api import KubeAPI
from porter_lb.model.resources import LOAD_BALANCER_CLASS

Obj = dict[str, Any]

APP_PORT = 8080
POOL_ANNOTATION = "eip.porter.kubesphere.io/v1alpha2"


def deployment(
    name: str, namespace: str, image: str, replicas: int, *, probe_period: int = 1
) -> Obj:
    """`replicas` pods of the test app, spread one per node while they can be (maxSkew 1),
    Ready while GET /healthz answers 200 (probed every `probe_period` s)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "DoNotSchedule",
                            "labelSelector": {"matchLabels": labels},
                        }
                    ],
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"name": "http", "containerPort": APP_PORT}],
                            "env": [
                                _field("POD_NAME", "metadata.name"),
                                _field("NODE_NAME", "spec.nodeName"),
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": probe_period,
                                "failureThreshold": 1,
                                "successThreshold": 1,
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def _field(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def service(name: str, namespace: str, *, policy: str = "Local", pool: str = "") -> Obj:
    """The LoadBalancer Service of porter-lb's class in front of the app, port 80."""
    metadata: Obj = {"name": name, "namespace": namespace}
    if pool:
        metadata["annotations"] = {POOL_ANNOTATION: pool}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": LOAD_BALANCER_CLASS,
            "externalTrafficPolicy": policy,
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pods(api: KubeAPI, namespace: str, app: str) -> list[Obj]:
    return api.list(f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3D{app}")[0]


def is_ready(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_nodes(api: KubeAPI, namespace: str, app: str) -> set[str]:
    """Nodes that host a Ready pod of the app."""
    return {p["spec"]["nodeName"] for p in pods(api, namespace, app) if is_ready(p)}


def service_ip(api: KubeAPI, namespace: str, name: str) -> str:
    status = api.get(f"/api/v1/namespaces/{namespace}/services/{name}").get("status") or {}
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    return str(ingress[0]["ip"]) if ingress else ""


def set_ready(pod: Obj, node_netns: str, ready: bool) -> None:
    """Make the pod's readiness endpoint answer 200 (ready) or 503 from now on; the kubelet
    sees it at its next probe."""
    address = pod["status"]["podIP"]
    path = "/ready" if ready else "/unready"
    netns.run(
        [
            "python3",
            "-c",
            "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request("
            "sys.argv[1], method='POST'), timeout=5).read()",
            f"http://{address}:{APP_PORT}{path}",
        ],
        netns=node_netns,
        timeout=10,
    )
