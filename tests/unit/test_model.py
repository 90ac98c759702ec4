"""Kubernetes objects (plain JSON dicts) in, porter-lb's model out; bad fields named exactly."""

from __future__ import annotations

from typing import Any

import pytest

from porter_lb.model.addresses import parse_address_pool
from porter_lb.model.resources import (
    LOAD_BALANCER_CLASS,
    SHARING_KEY_ANNOTATION,
    Endpoint,
    ModelError,
    Node,
    Pool,
    ServicePort,
    ServiceRequest,
    ServiceTraffic,
    endpoints_from_slice,
    load_balancer_ips,
    node_from_object,
    pool_from_eip,
    request_from_service,
    selects_porter,
    slice_service_key,
    traffic_from_service,
)

OPENELB_IP = "eip.openelb.kubesphere.io/v1alpha1"
PORTER_IP = "eip.porter.kubesphere.io/v1alpha1"
OPENELB_POOL = "eip.openelb.kubesphere.io/v1alpha2"
PORTER_POOL = "eip.porter.kubesphere.io/v1alpha2"


def service(
    annotations: dict[str, str] | None = None, namespace: str = "shop", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace, "annotations": annotations or {}},
        "spec": {"type": "LoadBalancer", **spec},
    }


def eip(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": "Eip",
        "metadata": {"name": "pool-a", "annotations": annotations or {}},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("obj", "class_name", "expected"),
    [
        (service({"lb.kubesphere.io/v1alpha1": "porter"}), LOAD_BALANCER_CLASS, True),
        (service({"lb.kubesphere.io/v1alpha1": "openelb"}), LOAD_BALANCER_CLASS, True),
        (service({"lb.kubesphere.io/v1alpha1": "metallb"}), LOAD_BALANCER_CLASS, False),
        (service(), LOAD_BALANCER_CLASS, False),
        (service(loadBalancerClass=LOAD_BALANCER_CLASS), LOAD_BALANCER_CLASS, True),
        (
            service({"lb.kubesphere.io/v1alpha1": "porter"}, loadBalancerClass="metallb.io/x"),
            LOAD_BALANCER_CLASS,
            False,
        ),
        (service(loadBalancerClass="example.com/lb"), "example.com/lb", True),
        (service(loadBalancerClass=LOAD_BALANCER_CLASS), "example.com/lb", False),
        (
            {**service({"lb.kubesphere.io/v1alpha1": "porter"}), "spec": {"type": "ClusterIP"}},
            LOAD_BALANCER_CLASS,
            False,
        ),
    ],
    ids=[
        "porter-annotation",
        "openelb-annotation",
        "other-annotation-value",
        "no-annotation-no-class",
        "our-class",
        "other-class-beats-annotation",
        "custom-class-name",
        "our-default-class-not-configured-one",
        "not-type-loadbalancer",
    ],
)
def test_selects_porter(obj: dict[str, Any], class_name: str, expected: bool) -> None:
    assert selects_porter(obj, class_name) is expected


def _pool(**overrides: Any) -> Pool:
    fields: dict[str, Any] = {"name": "pool-a", "addresses": parse_address_pool("10.0.0.0/24")}
    return Pool(**(fields | overrides))


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (eip({"address": "10.0.0.0/24"}), _pool()),
        (
            eip(
                {
                    "address": "10.0.0.0/24",
                    "protocol": "layer2",
                    "interface": "eth0",
                    "disable": True,
                    "priority": 5,
                    "namespaces": ["shop", "shop", "blog"],
                    "namespaceSelector": {"team": "web"},
                }
            ),
            _pool(
                protocol="layer2",
                interface="eth0",
                disabled=True,
                priority=5,
                namespaces=("shop", "blog"),
                namespace_selector={"team": "web"},
            ),
        ),
        (
            eip({"address": "10.0.0.0/24"}, {"eip.openelb.kubesphere.io/is-default-eip": "true"}),
            _pool(is_default=True),
        ),
        (
            eip({"address": "10.0.0.0/24"}, {"eip.porter.kubesphere.io/is-default-eip": "true"}),
            _pool(is_default=True),
        ),
        (
            eip({"address": "10.0.0.0/24"}, {"eip.openelb.kubesphere.io/is-default-eip": "false"}),
            _pool(),
        ),
        (
            eip({"address": "2001:db8::/120", "priority": None}),
            _pool(addresses=parse_address_pool("2001:db8::/120")),
        ),
    ],
    ids=["defaults", "every-field", "default-openelb", "default-porter", "default-false", "ipv6"],
)
def test_pool_from_eip(obj: dict[str, Any], expected: Pool) -> None:
    pool = pool_from_eip(obj)
    assert pool == expected
    assert pool.namespace_selector == expected.namespace_selector


def test_pool_priority_defaults_to_zero_and_protocol_to_bgp() -> None:
    pool = pool_from_eip(eip({"address": "10.0.0.1"}))
    assert (pool.priority, pool.protocol, pool.version) == (0, "bgp", 4)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"address": "10.0.0.9-10.0.0.1"},
            "Eip 'pool-a': spec.address '10.0.0.9-10.0.0.1': range start is after its end",
        ),
        (
            {"address": "10.0.0.0/24", "protocol": "ospf"},
            "Eip 'pool-a': spec.protocol 'ospf': must be one of ['bgp', 'layer2']",
        ),
        (
            {"address": "10.0.0.0/24", "protocol": "vip"},
            "Eip 'pool-a': spec.protocol 'vip': is not supported: use bgp or layer2",
        ),
        (
            {"address": "10.0.0.0/24", "priority": "high"},
            "Eip 'pool-a': spec.priority 'high': must be an integer",
        ),
        (
            {"address": "10.0.0.0/24", "namespaces": "shop"},
            "Eip 'pool-a': spec.namespaces 'shop': must be a list of names",
        ),
        (
            {"address": "10.0.0.0/24", "namespaceSelector": {"team": 1}},
            "Eip 'pool-a': spec.namespaceSelector '{'team': 1}': must map strings to strings",
        ),
    ],
    ids=[
        "reversed-range",
        "unknown-protocol",
        "openelb-vip",
        "priority-not-int",
        "namespaces-not-list",
        "selector-not-strings",
    ],
)
def test_pool_from_eip_errors_name_object_field_and_rule(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelError) as caught:
        pool_from_eip(eip(spec))
    assert str(caught.value) == message
    assert caught.value.kind == "Eip" and caught.value.name == "pool-a"


@pytest.mark.parametrize(
    ("pool", "namespace", "labels", "expected"),
    [
        (_pool(namespaces=("shop",)), "shop", {}, True),
        (_pool(namespaces=("shop",)), "blog", {}, False),
        (_pool(namespace_selector={"team": "web"}), "blog", {"team": "web", "x": "y"}, True),
        (_pool(namespace_selector={"team": "web"}), "blog", {"team": "db"}, False),
        (
            _pool(namespaces=("shop",), namespace_selector={"team": "web"}),
            "blog",
            {"team": "web"},
            True,
        ),
        (_pool(), "shop", {"team": "web"}, False),
    ],
    ids=["by-name", "other-name", "by-labels", "labels-differ", "either-binds", "unbound"],
)
def test_pool_serves_namespace(
    pool: Pool, namespace: str, labels: dict[str, str], expected: bool
) -> None:
    assert pool.serves_namespace(namespace, labels) is expected


@pytest.mark.parametrize(
    ("obj", "fields"),
    [
        (service(), {"requested_ips": (), "families": (4,), "ip_family_policy": "SingleStack"}),
        (
            service(loadBalancerIP="10.0.0.7"),
            {"requested_ips": ("10.0.0.7",), "requested_ips_field": "spec.loadBalancerIP"},
        ),
        (
            service({OPENELB_IP: " 10.0.0.7 "}),
            {"requested_ips": ("10.0.0.7",), "requested_ips_field": f"annotation {OPENELB_IP}"},
        ),
        (
            service({PORTER_IP: "2001:DB8::7"}),
            {"requested_ips": ("2001:db8::7",), "families": (6,)},
        ),
        (
            service({OPENELB_IP: "10.0.0.7,2001:db8::7"}, ipFamilyPolicy="PreferDualStack"),
            {"requested_ips": ("10.0.0.7", "2001:db8::7"), "families": (4, 6)},
        ),
        (
            service({OPENELB_IP: "10.0.0.7", PORTER_IP: "10.0.0.7"}, loadBalancerIP="10.0.0.7"),
            {"requested_ips": ("10.0.0.7",), "requested_ips_field": "spec.loadBalancerIP"},
        ),
        (
            service({OPENELB_POOL: "pool-a", PORTER_POOL: "pool-a"}),
            {"requested_pool": "pool-a", "requested_pool_field": f"annotation {OPENELB_POOL}"},
        ),
        (
            service({PORTER_POOL: "pool-b"}),
            {"requested_pool": "pool-b", "requested_pool_field": f"annotation {PORTER_POOL}"},
        ),
        (
            service(ipFamilies=["IPv6", "IPv4"], ipFamilyPolicy="SingleStack"),
            {"families": (6,), "ip_family_policy": "SingleStack"},
        ),
        (
            service(ipFamilies=["IPv4", "IPv6"], ipFamilyPolicy="PreferDualStack"),
            {"families": (4, 6), "ip_family_policy": "PreferDualStack"},
        ),
        (
            service(ipFamilies=["IPv4"], ipFamilyPolicy="PreferDualStack"),
            {"families": (4,), "ip_family_policy": "PreferDualStack"},
        ),
        (
            service(ipFamilies=["IPv6"], ipFamilyPolicy="RequireDualStack"),
            {"families": (6, 4), "ip_family_policy": "RequireDualStack"},
        ),
        (service(ipFamilyPolicy="RequireDualStack"), {"families": (4, 6)}),
        (service(ipFamilyPolicy="PreferDualStack"), {"families": (4, 6)}),
        (
            service(
                {SHARING_KEY_ANNOTATION: " dns "},
                ports=[{"port": 53, "protocol": "UDP"}, {"port": 53}],
            ),
            {
                "sharing_key": "dns",
                "ports": frozenset({ServicePort("UDP", 53), ServicePort("TCP", 53)}),
            },
        ),
        (
            service(externalTrafficPolicy="Local", selector={"b": "2", "a": "1"}),
            {"backend_key": "a=1,b=2"},
        ),
        (service(externalTrafficPolicy="Cluster", selector={"a": "1"}), {"backend_key": ""}),
        (service(namespace=""), {"key": "default/web", "namespace": "default"}),
    ],
    ids=[
        "plain",
        "spec-loadBalancerIP",
        "openelb-ip-annotation",
        "porter-ip-annotation-canonical",
        "dual-stack-ips",
        "all-ip-sources-agree",
        "both-pool-annotations-agree",
        "porter-pool-annotation",
        "single-stack-first-family",
        "prefer-dual-both-listed",
        "prefer-dual-one-listed",
        "require-dual-adds-other",
        "require-dual-no-families",
        "prefer-dual-no-families",
        "sharing-key-and-ports",
        "local-backend-key",
        "cluster-no-backend-key",
        "default-namespace",
    ],
)
def test_request_from_service(obj: dict[str, Any], fields: dict[str, Any]) -> None:
    request = request_from_service(obj, {"team": "web"})
    assert request.namespace_labels == {"team": "web"}
    for name, value in fields.items():
        assert getattr(request, name) == value, name


def test_request_defaults_match_a_plain_request() -> None:
    assert request_from_service(service()) == ServiceRequest(key="shop/web", namespace="shop")


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            service({OPENELB_IP: "1.2.3"}),
            f"Service 'shop/web': annotation {OPENELB_IP} '1.2.3': not an IP address",
        ),
        (
            service({PORTER_IP: "10.0.0.1,,2001:db8::1"}),
            f"Service 'shop/web': annotation {PORTER_IP} '10.0.0.1,,2001:db8::1': "
            "an empty item in the list",
        ),
        (
            service({OPENELB_IP: "10.0.0.1,10.0.0.2"}),
            f"Service 'shop/web': annotation {OPENELB_IP} '10.0.0.1,10.0.0.2': "
            "at most one address per IP family",
        ),
        (
            service({OPENELB_IP: "10.0.0.2"}, loadBalancerIP="10.0.0.1"),
            f"Service 'shop/web': annotation {OPENELB_IP} '10.0.0.2': "
            "conflicts with spec.loadBalancerIP '10.0.0.1'",
        ),
        (
            service({OPENELB_POOL: "pool-a", PORTER_POOL: "pool-b"}),
            f"Service 'shop/web': annotation {PORTER_POOL} 'pool-b': "
            f"conflicts with annotation {OPENELB_POOL} 'pool-a'",
        ),
        (
            service(ipFamilyPolicy="DualStack"),
            "Service 'shop/web': spec.ipFamilyPolicy 'DualStack': must be one of "
            "['PreferDualStack', 'RequireDualStack', 'SingleStack']",
        ),
        (
            service(ipFamilies=["IPv5"]),
            "Service 'shop/web': spec.ipFamilies 'IPv5': must be IPv4 or IPv6",
        ),
        (
            service(ports=[{"port": 0}]),
            "Service 'shop/web': spec.ports[0].port '0': must be a port number",
        ),
        (
            service(externalTrafficPolicy="Nearest"),
            "Service 'shop/web': spec.externalTrafficPolicy 'Nearest': must be Cluster or Local",
        ),
    ],
    ids=[
        "ip-not-an-address",
        "ip-list-empty-item",
        "two-ips-one-family",
        "ip-sources-conflict",
        "pool-annotations-conflict",
        "bad-family-policy",
        "bad-family",
        "bad-port",
        "bad-traffic-policy",
    ],
)
def test_request_errors_name_service_field_and_rule(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError) as caught:
        request_from_service(obj)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            {
                "metadata": {"name": "n1", "labels": {"zone": "a"}},
                "status": {
                    "conditions": [
                        {"type": "MemoryPressure", "status": "False"},
                        {"type": "Ready", "status": "True"},
                    ],
                    "addresses": [
                        {"type": "Hostname", "address": "n1"},
                        {"type": "InternalIP", "address": "192.0.2.11"},
                        {"type": "ExternalIP", "address": "203.0.113.11"},
                        {"type": "InternalIP", "address": "2001:db8::11"},
                    ],
                },
            },
            Node("n1", True, {"zone": "a"}, ("192.0.2.11", "2001:db8::11")),
        ),
        (
            {
                "metadata": {"name": "n2"},
                "status": {"conditions": [{"type": "Ready", "status": "False"}]},
            },
            Node("n2", False),
        ),
        (
            {
                "metadata": {"name": "n3"},
                "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
            },
            Node("n3", False),
        ),
        ({"metadata": {"name": "n4"}}, Node("n4", False)),
    ],
    ids=["ready-with-internal-ips", "not-ready", "ready-unknown", "no-status"],
)
def test_node_from_object(obj: dict[str, Any], expected: Node) -> None:
    node = node_from_object(obj)
    assert node == expected and node.labels == expected.labels


def test_endpoints_from_slice_treat_missing_ready_as_ready() -> None:
    endpoint_slice = {
        "metadata": {
            "name": "web-abcde",
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "endpoints": [
            {"addresses": ["10.1.0.1"], "nodeName": "n1"},
            {"addresses": ["10.1.0.2"], "nodeName": "n2", "conditions": {"ready": True}},
            {"addresses": ["10.1.0.3"], "nodeName": "n3", "conditions": {"ready": False}},
            {"addresses": ["10.1.0.4"], "nodeName": "n4", "conditions": {}},
            {"addresses": ["10.1.0.5"]},
        ],
    }
    assert endpoints_from_slice(endpoint_slice) == (
        Endpoint("n1", True),
        Endpoint("n2", True),
        Endpoint("n3", False),
        Endpoint("n4", True),
    )
    assert slice_service_key(endpoint_slice) == "shop/web"
    assert slice_service_key({"metadata": {"name": "orphan"}}) == ""


def test_traffic_from_service_reads_status_ips() -> None:
    obj = service(externalTrafficPolicy="Local")
    obj["status"] = {
        "loadBalancer": {
            "ingress": [
                {"ip": "10.0.0.7"},
                {"hostname": "lb.example.com"},
                {"ip": "2001:DB8::7"},
                {"ip": "10.0.0.7"},
            ]
        }
    }
    assert load_balancer_ips(obj) == ("10.0.0.7", "2001:db8::7")
    assert traffic_from_service(obj) == ServiceTraffic(
        "shop/web", "Local", ("10.0.0.7", "2001:db8::7")
    )
    assert traffic_from_service(service()) == ServiceTraffic("shop/web", "Cluster", ())
