"""Kubernetes objects for the bed and the benchmarks, as the API takes them (plain dicts).

The builders are pure: they return a body and touch nothing. The few helpers that take a
`KubeAPI` are the steps every bed repeats around them: a namespace that may exist already, a
Node's status (the bed has no kubelet to write it), a delete that may find nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from porter_lab.topology import ROUTER_ASN
from porter_lb.kube.api import KubeAPI, KubeError
from porter_lb.model.resources import GROUP_PATH, LOAD_BALANCER_CLASS, SERVICE_NAME_LABEL

Obj = dict[str, Any]

GROUP_VERSION = "network.kubesphere.io/v1alpha2"
NAMESPACES = "/api/v1/namespaces"
NODES = "/api/v1/nodes"
EIPS = f"{GROUP_PATH}/eips"
BGP_CONFS = f"{GROUP_PATH}/bgpconfs"
BGP_PEERS = f"{GROUP_PATH}/bgppeers"
DEFAULT_EIP_ANNOTATION = "eip.openelb.kubesphere.io/is-default-eip"
# What a kubelet writes; the runtime reads only type and status.
_HEARTBEAT = "2026-01-01T00:00:00Z"


def services(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/services"


def endpoint_slices(namespace: str) -> str:
    return f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"


# Bodies.


def node(name: str, labels: dict[str, str] | None = None) -> Obj:
    """A Node without status: set that through the status subresource (set_node_status)."""
    metadata: Obj = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "Node", "metadata": metadata, "spec": {}}


def node_status(*, ready: bool = True, address: str | tuple[str, ...] | None = None) -> Obj:
    """A Node status patch: the Ready condition, and the InternalIP when `address` is given
    (several for a dual-stack node, IPv4 first, as its kubelet lists them)."""
    status: Obj = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "lastHeartbeatTime": _HEARTBEAT,
                "lastTransitionTime": _HEARTBEAT,
            }
        ]
    }
    if address:
        addresses = (address,) if isinstance(address, str) else address
        status["addresses"] = [{"type": "InternalIP", "address": a} for a in addresses]
    return {"status": status}


def eip(name: str, address: str, *, default: bool = False, layer2_interface: str = "") -> Obj:
    """An Eip pool: announced over BGP, or over layer 2 on `layer2_interface` when given
    ("eth0", "can_reach:IP"); `default` marks it the pool for Services that name none."""
    metadata: Obj = {"name": name}
    if default:
        metadata["annotations"] = {DEFAULT_EIP_ANNOTATION: "true"}
    spec: Obj = {"address": address}
    if layer2_interface:
        spec |= {"protocol": "layer2", "interface": layer2_interface}
    return {"apiVersion": GROUP_VERSION, "kind": "Eip", "metadata": metadata, "spec": spec}


def bgp_conf(asn: int, router_id: str = "") -> Obj:
    """The cluster's one BgpConf ("default")."""
    spec: Obj = {"as": asn}
    if router_id:
        spec["routerId"] = router_id
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "BgpConf",
        "metadata": {"name": "default"},
        "spec": spec,
    }


def bgp_peer(
    name: str,
    neighbor: str,
    /,
    *,
    peer_as: int = ROUTER_ASN,
    node_labels: dict[str, str] | None = None,
    **spec: Any,
) -> Obj:
    """A BgpPeer with short timers (hold 9 s, keepalive 3 s, retry 1 s), for every node or
    those with `node_labels`; `spec` adds or replaces fields of spec (conf, timers, ...)."""
    body: Obj = {
        "conf": {"neighborAddress": neighbor, "peerAs": peer_as},
        "timers": {"config": {"holdTime": "9", "keepaliveInterval": "3", "connectRetry": "1"}},
    }
    if node_labels:
        body["nodeSelector"] = {"matchLabels": node_labels}
    body |= spec
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "BgpPeer",
        "metadata": {"name": name},
        "spec": body,
    }


def load_balancer_service(
    name: str,
    namespace: str,
    *,
    policy: str = "Cluster",
    porter: bool = True,
    node_ports: bool = True,
    ip_families: tuple[str, ...] = (),
    ip_family_policy: str = "",
) -> Obj:
    """A LoadBalancer Service on port 80 selecting app=`name`, porter-lb's unless `porter` is
    False; `node_ports=False` allocates none (10,000 Services would exhaust the range).
    `ip_families` ("IPv4", "IPv6"), when given, are required: one is SingleStack, two are
    RequireDualStack (the API server must have a service range of each family);
    `ip_family_policy` sets the policy itself (PreferDualStack: the API server picks)."""
    spec: Obj = {"type": "LoadBalancer", "externalTrafficPolicy": policy}
    if porter:
        spec["loadBalancerClass"] = LOAD_BALANCER_CLASS
    if not node_ports:
        spec["allocateLoadBalancerNodePorts"] = False
    if ip_families:
        spec["ipFamilies"] = list(ip_families)
        spec["ipFamilyPolicy"] = "SingleStack" if len(ip_families) == 1 else "RequireDualStack"
    if ip_family_policy:
        spec["ipFamilyPolicy"] = ip_family_policy
    spec |= {"selector": {"app": name}, "ports": [{"port": 80, "protocol": "TCP"}]}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def load_balancer_status(ip: str) -> Obj:
    """A Service status patch: what the controller writes once it has allocated `ip`."""
    return {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}


def endpoint_slice(
    name: str,
    namespace: str,
    service: str,
    nodes: list[str],
    *,
    port: int = 8080,
    address_type: str = "IPv4",
) -> Obj:
    """An EndpointSlice of `service` (`address_type` "IPv4" or "IPv6"): one ready endpoint on
    each of `nodes` (Node names), each with its own pod address."""
    endpoints = [
        {
            "addresses": [
                f"10.244.{i // 250}.{i % 250 + 1}"
                if address_type == "IPv4"
                else f"fd00:10:244::{i + 1:x}"
            ],
            "nodeName": node_name,
            "conditions": {"ready": True},
        }
        for i, node_name in enumerate(nodes)
    ]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace, "labels": {SERVICE_NAME_LABEL: service}},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"port": port, "protocol": "TCP"}],
    }


# Steps against the API server.


def ensure_namespace(api: KubeAPI, name: str) -> None:
    """Create the namespace unless it exists (an earlier run, or another test, made it)."""
    try:
        api.create(NAMESPACES, {"metadata": {"name": name}})
    except KubeError as error:
        if error.status != 409:
            raise


def set_node_status(
    api: KubeAPI,
    name: str,
    *,
    ready: bool = True,
    address: str | tuple[str, ...] | None = None,
) -> None:
    """Write the Node's status as its kubelet would (see node_status)."""
    api.merge_patch(f"{NODES}/{name}/status", node_status(ready=ready, address=address))


def exists(api: KubeAPI, path: str) -> bool:
    """Whether the object at `path` exists (404: no; any other error is raised)."""
    try:
        api.get(path)
    except KubeError as error:
        if error.status == 404:
            return False
        raise
    return True


def delete_if_present(api: KubeAPI, path: str) -> None:
    """Delete the object at `path`; one that is gone already is no error (404)."""
    try:
        api.delete(path)
    except KubeError as error:
        if error.status != 404:
            raise


@dataclass
class OwnedObjects:
    """The objects one test creates, under names unique to it, deleted afterwards (newest first)."""

    api: KubeAPI
    tag: str  # unique to the test, e.g. porter_lab.topology.run_id()
    prefix: str = "t"
    paths: list[str] = field(default_factory=list)

    def own(self, collection: str, suffix: str) -> str:
        """A unique name for an object of `collection`, deleted after the test if it exists."""
        name = f"{self.prefix}-{self.tag}-{suffix}"
        self.paths.append(f"{collection}/{name}")
        return name

    def get(self, collection: str, name: str) -> Obj | None:
        items = self.api.get(collection).get("items", [])
        return next((o for o in items if o["metadata"]["name"] == name), None)

    def cleanup(self) -> None:
        for path in reversed(self.paths):
            delete_if_present(self.api, path)
