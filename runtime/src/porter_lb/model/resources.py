"""The allocator's and the route computation's inputs, built from Kubernetes objects.

Every type here is a plain frozen dataclass, and every builder is a pure function from a
Kubernetes object in its JSON form (a plain dict with camelCase keys, as the API serves it) to
those dataclasses: no client, no I/O, deterministic. The shell lists and watches objects and
hands them in; the allocator (`porter_lb.allocation.allocator`) and the route computation
(`porter_lb.routing.routes`) never see a Kubernetes object.

Builders raise `ModelError` naming the object, the field, the value and the rule broken, e.g.
``Service 'shop/web': annotation eip.openelb.kubesphere.io/v1alpha1 '1.2.3': not an IP
address``; the shell turns that into an Event on the object.

Mappings held by these dataclasses (labels, selectors) are excluded from hashing and must not
be mutated after construction; the builders always store fresh copies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from porter_lb.model.addresses import AddressPool, AddressPoolError, parse_address_pool

__all__ = [
    "DEFAULT_POOL_ANNOTATIONS",
    "GROUP_PATH",
    "GROUP_VERSION",
    "LOAD_BALANCER_CLASS",
    "LOAD_BALANCER_IMPLEMENTATION_ANNOTATION",
    "LOAD_BALANCER_IMPLEMENTATION_VALUES",
    "REQUESTED_IP_ANNOTATIONS",
    "REQUESTED_POOL_ANNOTATIONS",
    "SERVICE_NAME_LABEL",
    "SHARING_KEY_ANNOTATION",
    "Endpoint",
    "IPFamilyPolicy",
    "ModelError",
    "Node",
    "Pool",
    "PoolProtocol",
    "ServicePort",
    "ServiceRequest",
    "ServiceTraffic",
    "TrafficPolicy",
    "endpoints_from_slice",
    "load_balancer_ips",
    "node_from_object",
    "pool_from_eip",
    "request_from_service",
    "selects_porter",
    "service_key",
    "slice_service_key",
    "traffic_from_service",
]

GROUP_VERSION = "network.kubesphere.io/v1alpha2"
"""apiVersion of porter-lb's custom resources (Eip, BgpConf, BgpPeer; Porter's and OpenELB's)."""

GROUP_PATH = f"/apis/{GROUP_VERSION}"
"""The API server path of that group and version."""

LOAD_BALANCER_CLASS = "porter-lb.io/porter-lb"
"""The `spec.loadBalancerClass` that makes a LoadBalancer Service porter-lb's.

A Service carrying this class is ours even without the Porter/OpenELB annotation; a Service
carrying any other class belongs to another implementation and is never ours.
"""

LOAD_BALANCER_IMPLEMENTATION_ANNOTATION = "lb.kubesphere.io/v1alpha1"
"""Porter's and OpenELB's opt-in annotation on a Service (value `porter` or `openelb`)."""

LOAD_BALANCER_IMPLEMENTATION_VALUES = frozenset({"porter", "openelb"})

REQUESTED_IP_ANNOTATIONS = (
    "eip.openelb.kubesphere.io/v1alpha1",
    "eip.porter.kubesphere.io/v1alpha1",
)
"""Annotations naming the IP(s) a Service asks for; comma-separated for dual-stack."""

REQUESTED_POOL_ANNOTATIONS = (
    "eip.openelb.kubesphere.io/v1alpha2",
    "eip.porter.kubesphere.io/v1alpha2",
)
"""Annotations naming the Eip a Service asks to be given an IP from."""

DEFAULT_POOL_ANNOTATIONS = (
    "eip.openelb.kubesphere.io/is-default-eip",
    "eip.porter.kubesphere.io/is-default-eip",
)
"""Annotations (value `"true"`) marking an Eip as the pool of Services no other pool serves."""

SHARING_KEY_ANNOTATION = "lb.porter-lb.io/allow-shared-ip"
"""Services with the same non-empty value of this annotation may share an IP (MetalLB's rule:
disjoint ports, and the same backends when externalTrafficPolicy is Local)."""

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""The label tying an EndpointSlice to its Service."""

PoolProtocol = Literal["bgp", "layer2"]
TrafficPolicy = Literal["Cluster", "Local"]
IPFamilyPolicy = Literal["SingleStack", "PreferDualStack", "RequireDualStack"]

_POOL_PROTOCOLS: dict[str, PoolProtocol] = {"bgp": "bgp", "layer2": "layer2"}
_TRAFFIC_POLICIES: dict[str, TrafficPolicy] = {"Cluster": "Cluster", "Local": "Local"}
_IP_FAMILY_POLICIES: dict[str, IPFamilyPolicy] = {
    "SingleStack": "SingleStack",
    "PreferDualStack": "PreferDualStack",
    "RequireDualStack": "RequireDualStack",
}
_IP_FAMILIES = {"IPv4": 4, "IPv6": 6}
_T = TypeVar("_T")


class ModelError(ValueError):
    """A Kubernetes object cannot be turned into porter-lb's model.

    The message names the kind and name of the object, the field, the value and the rule:
    ``Eip 'pool-a': spec.address '10.0.0.9-10.0.0.1': range start is after its end``.
    """

    def __init__(self, kind: str, name: str, field: str, value: object, rule: str) -> None:
        self.kind = kind
        self.name = name
        self.field = field
        self.value = value
        self.rule = rule
        shown = f" '{value}'" if value is not None else ""
        super().__init__(f"{kind} '{name}': {field}{shown}: {rule}")


NO_LOCAL_PREF = -1


@dataclass(frozen=True, order=True)
class BgpAttributes:
    """Path attributes a pool's routes carry (an Eip's `spec.communities`,
    `spec.largeCommunities`, `spec.localPref`; porter-lb's extension, MetalLB's
    BGPAdvertisement has the same). Communities as 32-bit numbers (AS << 16 | value), large
    communities as (global, local1, local2); `local_pref` NO_LOCAL_PREF: not sent (eBGP peers
    never get it; iBGP peers then get their default)."""

    communities: tuple[int, ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    local_pref: int = NO_LOCAL_PREF

    def __bool__(self) -> bool:
        return bool(self.communities or self.large_communities or self.local_pref >= 0)


NO_ATTRIBUTES = BgpAttributes()

WELL_KNOWN_COMMUNITIES = {
    "no-export": 0xFFFFFF01,
    "no-advertise": 0xFFFFFF02,
    "no-export-subconfed": 0xFFFFFF03,
    "local-as": 0xFFFFFF03,
    "blackhole": 0xFFFF029A,
}
"""RFC 1997's (and RFC 7999's blackhole) names, as BIRD, FRR and MetalLB spell them."""


def _community(text: object, name: str, index: int) -> int:
    field_name = f"spec.communities[{index}]"
    if isinstance(text, str):
        known = WELL_KNOWN_COMMUNITIES.get(text.strip().lower())
        if known is not None:
            return known
        parts = text.strip().split(":")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            high, low = (int(p) for p in parts)
            if high <= 0xFFFF and low <= 0xFFFF:
                return high << 16 | low
    raise ModelError(
        "Eip", name, field_name, text, "must be AS:value (each 0-65535) or a well-known name"
    )


def _large_community(text: object, name: str, index: int) -> tuple[int, int, int]:
    if isinstance(text, str):
        parts = text.strip().split(":")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            a, b, c = (int(p) for p in parts)
            if max(a, b, c) <= 0xFFFFFFFF:
                return a, b, c
    raise ModelError(
        "Eip",
        name,
        f"spec.largeCommunities[{index}]",
        text,
        "must be global:local1:local2 (each 0-4294967295)",
    )


def bgp_attributes(spec: Mapping[str, Any], name: str) -> BgpAttributes:
    """An Eip spec's path attributes (ModelError naming the field on a bad value)."""
    communities = spec.get("communities") or []
    large = spec.get("largeCommunities") or []
    for field_name, value in (("spec.communities", communities), ("spec.largeCommunities", large)):
        if not isinstance(value, list):
            raise ModelError("Eip", name, field_name, value, "must be a list")
    local_pref = spec.get("localPref")
    if local_pref is not None and (
        isinstance(local_pref, bool)
        or not isinstance(local_pref, int)
        or not 0 <= local_pref <= 0xFFFFFFFF
    ):
        raise ModelError("Eip", name, "spec.localPref", local_pref, "must be 0-4294967295")
    return BgpAttributes(
        communities=tuple(
            sorted({_community(text, name, i) for i, text in enumerate(communities)})
        ),
        large_communities=tuple(
            sorted({_large_community(text, name, i) for i, text in enumerate(large)})
        ),
        local_pref=NO_LOCAL_PREF if local_pref is None else local_pref,
    )


@dataclass(frozen=True)
class Pool:
    """An Eip: a block of addresses porter-lb may give to Services, and how they are announced.

    `priority` orders the pools a Service may be given an IP from automatically: the LOWER
    value is tried first (OpenELB's semantics). An Eip without `spec.priority` has priority 0,
    the value OpenELB reads for an absent field, so unprioritised pools come before any pool
    given a positive priority. Ties are broken by name.

    A pool is *namespace-bound* when it lists `namespaces` or has a `namespace_selector`; it is
    then offered automatically to Services of the namespaces it matches (either way). A pool
    that is neither namespace-bound nor `is_default` is given out only when a Service names it
    or asks for one of its addresses. A `disabled` pool gives no new IPs; IPs already given out
    stay.
    """

    name: str
    addresses: AddressPool
    protocol: PoolProtocol = "bgp"
    interface: str = ""
    disabled: bool = False
    priority: int = 0
    namespaces: tuple[str, ...] = ()
    namespace_selector: Mapping[str, str] = field(default_factory=dict, hash=False)
    is_default: bool = False
    attributes: BgpAttributes = NO_ATTRIBUTES  # what its routes carry (bgp pools)

    @property
    def version(self) -> int:
        """The IP family of the pool's addresses: 4 or 6."""
        return self.addresses.version

    @property
    def namespace_bound(self) -> bool:
        return bool(self.namespaces or self.namespace_selector)

    def serves_namespace(self, namespace: str, namespace_labels: Mapping[str, str]) -> bool:
        """True if the pool is bound to this namespace, by name or by the namespace's labels."""
        if namespace in self.namespaces:
            return True
        selector = self.namespace_selector
        return bool(selector) and all(namespace_labels.get(k) == v for k, v in selector.items())


@dataclass(frozen=True, order=True)
class ServicePort:
    """One port of a Service as the sharing rule sees it: protocol (TCP, UDP, SCTP) and port."""

    protocol: str
    port: int


@dataclass(frozen=True)
class ServiceRequest:
    """What one LoadBalancer Service asks the allocator for.

    `families` lists the IP families (4, 6) to give an address of, primary first;
    `ip_family_policy` says whether all of them are needed (RequireDualStack) or any one will
    do. `requested_ips` (canonical text, at most one per family) and `requested_pool` are the
    Service's explicit asks; `requested_ips_field` and `requested_pool_field` name where they
    came from so that a refusal can name the field. `sharing_key`, `ports` and `backend_key`
    decide whether the Service may share an IP: `backend_key` is empty for
    externalTrafficPolicy Cluster and the canonical pod selector for Local, because Services
    with Local traffic may only share an IP when the same nodes are eligible for both.
    """

    key: str
    namespace: str
    namespace_labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    requested_ips: tuple[str, ...] = ()
    requested_ips_field: str = "spec.loadBalancerIP"
    requested_pool: str = ""
    requested_pool_field: str = f"annotation {REQUESTED_POOL_ANNOTATIONS[0]}"
    families: tuple[int, ...] = (4,)
    ip_family_policy: IPFamilyPolicy = "SingleStack"
    sharing_key: str = ""
    ports: frozenset[ServicePort] = frozenset()
    backend_key: str = ""


@dataclass(frozen=True)
class Node:
    """A Kubernetes Node as route computation needs it."""

    name: str
    ready: bool
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of an EndpointSlice: the node it runs on and whether it is ready."""

    node_name: str
    ready: bool = True


@dataclass(frozen=True)
class ServiceTraffic:
    """What route computation needs of a Service: its IPs and externalTrafficPolicy."""

    key: str
    external_traffic_policy: TrafficPolicy = "Cluster"
    ips: tuple[str, ...] = ()


Obj = dict[str, Any]
"""A Kubernetes object as the API serves it: parsed JSON."""


def as_mapping(value: object) -> Mapping[str, Any]:
    """`value` if it is a mapping, else an empty one: optional fields of API objects read safely."""
    return value if isinstance(value, Mapping) else {}


def object_name(obj: Mapping[str, Any]) -> str:
    """`metadata.name`, or "" when the object has none."""
    return str(as_mapping(obj.get("metadata")).get("name", ""))


def being_deleted(obj: Mapping[str, Any]) -> bool:
    """Whether the object has a deletionTimestamp (it goes once its finalizers are gone)."""
    return bool(as_mapping(obj.get("metadata")).get("deletionTimestamp"))


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_mapping(obj.get("metadata"))


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_mapping(_metadata(obj).get("annotations"))


def _string_map(value: object, kind: str, name: str, field_name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ModelError(kind, name, field_name, value, "must map strings to strings")
    return dict(value)


def service_key(service: Mapping[str, Any]) -> str:
    """The Service's `namespace/name`, the key porter-lb and OpenELB's Eip status use."""
    metadata = _metadata(service)
    return f"{metadata.get('namespace') or 'default'}/{metadata.get('name', '')}"


def selects_porter(service: Mapping[str, Any], class_name: str = LOAD_BALANCER_CLASS) -> bool:
    """True if porter-lb implements this Service.

    It must be of type LoadBalancer and either carry `spec.loadBalancerClass` equal to
    `class_name`, or carry no class and Porter's/OpenELB's annotation
    ``lb.kubesphere.io/v1alpha1: porter|openelb``. A Service of another class is never ours,
    whatever its annotations say: two implementations must not fight over one Service.
    """
    spec = as_mapping(service.get("spec"))
    if spec.get("type") != "LoadBalancer":
        return False
    load_balancer_class = spec.get("loadBalancerClass")
    if load_balancer_class:
        return bool(load_balancer_class == class_name)
    implementation = _annotations(service).get(LOAD_BALANCER_IMPLEMENTATION_ANNOTATION)
    return implementation in LOAD_BALANCER_IMPLEMENTATION_VALUES


def pool_from_eip(eip: Mapping[str, Any]) -> Pool:
    """Build a Pool from an Eip (network.kubesphere.io/v1alpha2)."""
    metadata = _metadata(eip)
    name = str(metadata.get("name", ""))
    spec = as_mapping(eip.get("spec"))
    try:
        addresses = parse_address_pool(spec.get("address", ""), "spec.address")
    except AddressPoolError as error:
        raise ModelError("Eip", name, error.field, error.value, error.rule) from None

    protocol_text = spec.get("protocol") or "bgp"
    protocol = _POOL_PROTOCOLS.get(protocol_text) if isinstance(protocol_text, str) else None
    if protocol_text == "vip":
        # OpenELB's vip mode (keepalived VRRP) is not porter-lb's: such a pool would get
        # addresses nothing announces.
        raise ModelError(
            "Eip", name, "spec.protocol", protocol_text, "is not supported: use bgp or layer2"
        )
    if protocol is None:
        raise ModelError(
            "Eip", name, "spec.protocol", protocol_text, f"must be one of {sorted(_POOL_PROTOCOLS)}"
        )

    priority = spec.get("priority", 0)
    if priority is None:
        priority = 0
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ModelError("Eip", name, "spec.priority", priority, "must be an integer")

    namespaces = spec.get("namespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise ModelError("Eip", name, "spec.namespaces", namespaces, "must be a list of names")

    annotations = _annotations(eip)
    return Pool(
        name=name,
        addresses=addresses,
        protocol=protocol,
        interface=str(spec.get("interface") or ""),
        disabled=spec.get("disable") is True,
        priority=priority,
        namespaces=tuple(dict.fromkeys(namespaces)),
        namespace_selector=_string_map(
            spec.get("namespaceSelector"), "Eip", name, "spec.namespaceSelector"
        ),
        is_default=any(
            str(annotations.get(a, "")).strip().lower() == "true" for a in DEFAULT_POOL_ANNOTATIONS
        ),
        attributes=bgp_attributes(spec, name),
    )


def _requested_ips(key: str, field_name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise ModelError("Service", key, field_name, value, "must be a string")
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for item in value.split(","):
        try:
            ip = ipaddress.ip_address(item.strip())
        except ValueError:
            rule = "an empty item in the list" if not item.strip() else "not an IP address"
            raise ModelError("Service", key, field_name, value, rule) from None
        if any(seen.version == ip.version for seen in ips):
            raise ModelError("Service", key, field_name, value, "at most one address per IP family")
        ips.append(ip)
    return tuple(str(ip) for ip in ips)


def _agreeing(
    key: str, sources: list[tuple[str, str, _T]], normal: Callable[[_T], object] = lambda v: v
) -> tuple[str, _T] | None:
    """The first of (field, text, value) `sources`, once every other one agrees with it.

    Porter and OpenELB spell the same annotation two ways, and `spec.loadBalancerIP` asks for
    an IP too; when several are set they must agree, or the Service is refused rather than
    one of them silently winning.
    """
    if not sources:
        return None
    first_field, first_text, first = sources[0]
    for field_name, text, value in sources[1:]:
        if normal(value) != normal(first):
            raise ModelError(
                "Service", key, field_name, text, f"conflicts with {first_field} '{first_text}'"
            )
    return first_field, first


def _families(
    key: str, spec: Mapping[str, Any], requested_ips: tuple[str, ...]
) -> tuple[tuple[int, ...], IPFamilyPolicy]:
    policy_text = spec.get("ipFamilyPolicy") or "SingleStack"
    policy = _IP_FAMILY_POLICIES.get(policy_text) if isinstance(policy_text, str) else None
    if policy is None:
        raise ModelError(
            "Service",
            key,
            "spec.ipFamilyPolicy",
            policy_text,
            f"must be one of {sorted(_IP_FAMILY_POLICIES)}",
        )
    declared: list[int] = []
    for family_text in spec.get("ipFamilies") or []:
        family = _IP_FAMILIES.get(family_text) if isinstance(family_text, str) else None
        if family is None:
            raise ModelError("Service", key, "spec.ipFamilies", family_text, "must be IPv4 or IPv6")
        if family not in declared:
            declared.append(family)
    given = bool(declared)
    if not declared:
        declared = [ipaddress.ip_address(ip).version for ip in requested_ips] or [4]
    if policy == "SingleStack":
        return (declared[0],), policy
    if policy == "RequireDualStack" or not given:
        declared += [f for f in (4, 6) if f not in declared]
    return tuple(declared), policy


def _ports(key: str, spec: Mapping[str, Any]) -> frozenset[ServicePort]:
    ports = set()
    for index, item in enumerate(spec.get("ports") or []):
        port = as_mapping(item).get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ModelError(
                "Service", key, f"spec.ports[{index}].port", port, "must be a port number"
            )
        protocol = as_mapping(item).get("protocol") or "TCP"
        ports.add(ServicePort(str(protocol), port))
    return frozenset(ports)


def _traffic_policy(key: str, spec: Mapping[str, Any]) -> TrafficPolicy:
    text = spec.get("externalTrafficPolicy") or "Cluster"
    policy = _TRAFFIC_POLICIES.get(text) if isinstance(text, str) else None
    if policy is None:
        raise ModelError(
            "Service", key, "spec.externalTrafficPolicy", text, "must be Cluster or Local"
        )
    return policy


def request_from_service(
    service: Mapping[str, Any], namespace_labels: Mapping[str, str] | None = None
) -> ServiceRequest:
    """Build the allocator's request from a LoadBalancer Service and its namespace's labels.

    Requested IPs come from `spec.loadBalancerIP` and the Porter/OpenELB v1alpha1 annotations
    (comma-separated for dual-stack, at most one per family); the requested pool from the
    v1alpha2 annotations. IP families follow `spec.ipFamilies` and `spec.ipFamilyPolicy`:
    SingleStack asks for the first family; PreferDualStack for every listed family, any one
    sufficing; RequireDualStack for both. When `spec.ipFamilies` is absent (the API server
    always fills it in), the families of the requested IPs, else IPv4, come first, and the
    dual-stack policies add the other family.
    """
    key = service_key(service)
    spec = as_mapping(service.get("spec"))
    annotations = _annotations(service)

    ip_fields = ["spec.loadBalancerIP"] + [f"annotation {a}" for a in REQUESTED_IP_ANNOTATIONS]
    ip_texts = [spec.get("loadBalancerIP")] + [annotations.get(a) for a in REQUESTED_IP_ANNOTATIONS]
    asked_ips = _agreeing(
        key,
        [
            (f, str(t), _requested_ips(key, f, t))
            for f, t in zip(ip_fields, ip_texts, strict=True)
            if t not in (None, "")
        ],
        frozenset,
    )
    pool_texts = [(f"annotation {a}", annotations.get(a)) for a in REQUESTED_POOL_ANNOTATIONS]
    asked_pool = _agreeing(
        key, [(f, str(t), str(t).strip()) for f, t in pool_texts if t not in (None, "")]
    )

    defaults = ServiceRequest(key="", namespace="")
    ips_field, requested_ips = asked_ips or (defaults.requested_ips_field, ())
    pool_field, requested_pool = asked_pool or (defaults.requested_pool_field, "")
    families, policy = _families(key, spec, requested_ips)
    traffic_policy = _traffic_policy(key, spec)
    selector = _string_map(spec.get("selector"), "Service", key, "spec.selector")
    return ServiceRequest(
        key=key,
        namespace=key.split("/", 1)[0],
        namespace_labels=dict(namespace_labels or {}),
        requested_ips=requested_ips,
        requested_ips_field=ips_field,
        requested_pool=requested_pool,
        requested_pool_field=pool_field,
        families=families,
        ip_family_policy=policy,
        sharing_key=str(annotations.get(SHARING_KEY_ANNOTATION) or "").strip(),
        ports=_ports(key, spec),
        backend_key=(
            ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
            if traffic_policy == "Local"
            else ""
        ),
    )


def load_balancer_ips(service: Mapping[str, Any]) -> tuple[str, ...]:
    """The IPs in the Service's `status.loadBalancer.ingress`, canonical, in order.

    Entries that are not IP addresses (hostnames, garbage) are skipped: they were not written
    by porter-lb and hold no address of ours.
    """
    status = as_mapping(service.get("status"))
    ips: list[str] = []
    for entry in as_mapping(status.get("loadBalancer")).get("ingress") or []:
        try:
            ip = str(ipaddress.ip_address(str(as_mapping(entry).get("ip", ""))))
        except ValueError:
            continue
        if ip not in ips:
            ips.append(ip)
    return tuple(ips)


def traffic_from_service(service: Mapping[str, Any]) -> ServiceTraffic:
    """What route computation needs of a Service: key, externalTrafficPolicy, status IPs."""
    key = service_key(service)
    return ServiceTraffic(
        key=key,
        external_traffic_policy=_traffic_policy(key, as_mapping(service.get("spec"))),
        ips=load_balancer_ips(service),
    )


def node_from_object(node: Mapping[str, Any]) -> Node:
    """Build a Node: ready when its `Ready` condition is `"True"`; addresses are InternalIPs."""
    metadata = _metadata(node)
    name = str(metadata.get("name", ""))
    status = as_mapping(node.get("status"))
    ready = any(
        as_mapping(c).get("type") == "Ready" and as_mapping(c).get("status") == "True"
        for c in status.get("conditions") or []
    )
    addresses = tuple(
        str(as_mapping(a).get("address"))
        for a in status.get("addresses") or []
        if as_mapping(a).get("type") == "InternalIP" and as_mapping(a).get("address")
    )
    return Node(
        name=name,
        ready=ready,
        labels=_string_map(metadata.get("labels"), "Node", name, "metadata.labels"),
        addresses=addresses,
    )


def slice_service_key(endpoint_slice: Mapping[str, Any]) -> str:
    """The `namespace/name` of the Service an EndpointSlice belongs to ("" when unlabelled)."""
    metadata = _metadata(endpoint_slice)
    service_name = as_mapping(metadata.get("labels")).get(SERVICE_NAME_LABEL)
    if not service_name:
        return ""
    return f"{metadata.get('namespace') or 'default'}/{service_name}"


def endpoints_from_slice(endpoint_slice: Mapping[str, Any]) -> tuple[Endpoint, ...]:
    """The endpoints of an EndpointSlice (discovery.k8s.io/v1).

    `conditions.ready` absent means ready, as the EndpointSlice API defines it ("an unknown
    state should be interpreted as ready"). Endpoints without `nodeName` are left out: no node
    can be eligible for them.
    """
    endpoints = []
    for item in endpoint_slice.get("endpoints") or []:
        node_name = as_mapping(item).get("nodeName")
        if not node_name:
            continue
        ready = as_mapping(as_mapping(item).get("conditions")).get("ready")
        endpoints.append(Endpoint(node_name=str(node_name), ready=ready is not False))
    return tuple(endpoints)


def slice_service_keys(endpoint_slice: Mapping[str, Any]) -> list[str]:
    """The Service an EndpointSlice belongs to, as an index value: [] for none."""
    service = slice_service_key(endpoint_slice)
    return [service] if service else []


def node_or_none(obj: Mapping[str, Any] | None) -> Node | None:
    """The Node read from `obj`; None when there is none or it cannot be read."""
    if obj is None:
        return None
    try:
        return node_from_object(obj)
    except ModelError:
        return None
