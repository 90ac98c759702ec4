"""Desired routes: for each BGP peer, which nodes should be next hops for each Service IP.

Pure and level-triggered: the whole desired state is computed from Services, EndpointSlices,
Nodes and peers every time; the speaker adapter diffs it against what the speaker holds and
applies only the delta. A prefix whose set of eligible nodes is empty is ABSENT from the
result, so the diff withdraws it; nothing stale is ever kept (OpenELB #458 kept the last next
hops announced when the candidate set emptied).

One computation, kept change by change: `service_share` reads one Service object,
`service_next_hops` gives its share (host prefix -> eligible nodes among those the BgpPeers
pick), a `RouteTable` holds every Service's share; `desired_routes` is the same from scratch,
per peer. Two ways to announce it:

* a speaker on every node announces `node_rib(...)`: its node's prefixes, next hop self, or
  the node's own address of the prefix's family where a session carries that family over the
  other one (`node_next_hops`, MP-BGP);
* one central speaker announces `central_rib(...)` (`central_paths`): one path per (prefix,
  node) with the node's address as third-party next hop, told apart by ADD-PATH path
  identifiers.

`rib_delta` turns what gobgpd holds into what it must hold. This module must not import
`porter_lb.routing.gobgp` (which imports grpc): `Route` is a plain value and the GoBGP adapter
translates it into gobgpd's Path message.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from porter_lb.model.addresses import AddressPool
from porter_lb.model.resources import (
    LOAD_BALANCER_CLASS,
    NO_ATTRIBUTES,
    BgpAttributes,
    Endpoint,
    ModelError,
    Node,
    Obj,
    ServiceTraffic,
    endpoints_from_slice,
    selects_porter,
    traffic_from_service,
)
from porter_lb.model.validation import effective_pools

__all__ = [
    "EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Peer",
    "Route",
    "RouteTable",
    "SelectorOperator",
    "announced_ips",
    "bgp_pools",
    "central_paths",
    "central_rib",
    "desired_routes",
    "eligible_nodes",
    "host_prefix",
    "node_announcements",
    "node_next_hops",
    "node_rib",
    "nodes_without_next_hop",
    "path_identifier",
    "pool_attributes",
    "rib_delta",
    "service_next_hops",
    "service_share",
    "with_attributes",
]

EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL = (
    "node.kubernetes.io/exclude-from-external-load-balancers"
)
"""Kubernetes' well-known label: a node carrying it (any value) is never a load-balancer target."""

SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
_OPERATORS: dict[str, SelectorOperator] = {
    "In": "In",
    "NotIn": "NotIn",
    "Exists": "Exists",
    "DoesNotExist": "DoesNotExist",
}


@dataclass(frozen=True)
class LabelSelectorRequirement:
    """One `matchExpressions` entry, with Kubernetes' meaning (NotIn matches an absent key)."""

    key: str
    operator: SelectorOperator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes LabelSelector; all of its terms must match. The empty selector matches all."""

    match_labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )

    @classmethod
    def from_dict(
        cls,
        selector: Mapping[str, Any] | None,
        *,
        kind: str = "BgpPeer",
        name: str = "",
        field: str = "spec.nodeSelector",
    ) -> LabelSelector:
        """Build a selector from its JSON form; errors name the object and the field."""
        if not selector:
            return cls()
        labels = selector.get("matchLabels") or {}
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ModelError(kind, name, f"{field}.matchLabels", labels, "must map strings")
        requirements = []
        for index, entry in enumerate(selector.get("matchExpressions") or []):
            where = f"{field}.matchExpressions[{index}]"
            item: Mapping[str, Any] = entry if isinstance(entry, Mapping) else {}
            key = item.get("key")
            if not isinstance(key, str) or not key:
                raise ModelError(kind, name, f"{where}.key", key, "must be a label key")
            operator = _OPERATORS.get(str(item.get("operator")))
            if operator is None:
                raise ModelError(
                    kind,
                    name,
                    f"{where}.operator",
                    item.get("operator"),
                    f"must be one of {list(_OPERATORS)}",
                )
            values = item.get("values") or []
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ModelError(kind, name, f"{where}.values", values, "must be a list of strings")
            if operator in ("In", "NotIn") and not values:
                raise ModelError(kind, name, f"{where}.values", values, f"{operator} needs values")
            if operator in ("Exists", "DoesNotExist") and values:
                raise ModelError(
                    kind, name, f"{where}.values", values, f"{operator} takes no values"
                )
            requirements.append(LabelSelectorRequirement(key, operator, tuple(values)))
        return cls(dict(labels), tuple(requirements))


@dataclass(frozen=True)
class Peer:
    """A BGP neighbour, as route computation sees it: which nodes may be its next hops."""

    name: str
    node_selector: LabelSelector = field(default_factory=LabelSelector)


@dataclass(frozen=True, order=True)
class Route:
    """One path: prefix, next hop ("0.0.0.0"/"::": next hop self), ADD-PATH identifier and
    the path attributes of its pool (communities, LOCAL_PREF)."""

    prefix: str  # "203.0.113.10/32"
    next_hop: str  # "0.0.0.0" means next-hop self
    identifier: int = 0  # ADD-PATH path identifier; distinct values keep distinct paths
    attributes: BgpAttributes = NO_ATTRIBUTES


def host_prefix(ip: str, service_key: str = "") -> str:
    """`ip` as a host prefix: ``203.0.113.10/32`` or ``2001:db8::10/128``, canonical."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        raise ModelError(
            "Service", service_key, "status.loadBalancer.ingress[].ip", ip, "not an IP address"
        ) from None
    return f"{address}/{address.max_prefixlen}"


def _serves_traffic(node: Node) -> bool:
    return node.ready and EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS_LABEL not in node.labels


def eligible_nodes(
    traffic: ServiceTraffic, endpoints: Iterable[Endpoint], nodes: Mapping[str, Node]
) -> frozenset[str]:
    """The nodes that may receive the Service's external traffic.

    externalTrafficPolicy Cluster: every Ready node (kube-proxy forwards to any endpoint).
    Local: the Ready nodes hosting a ready endpoint (kube-proxy drops traffic elsewhere).
    Never a NotReady node, a node Kubernetes does not know, or a node labelled
    `node.kubernetes.io/exclude-from-external-load-balancers`.
    """
    if traffic.external_traffic_policy == "Local":
        hosting = {e.node_name for e in endpoints if e.ready}
        candidates: Iterable[Node] = (nodes[n] for n in hosting if n in nodes)
    else:
        candidates = nodes.values()
    return frozenset(node.name for node in candidates if _serves_traffic(node))


def desired_routes(
    services: Iterable[ServiceTraffic],
    endpoints_by_service: Mapping[str, Sequence[Endpoint]],
    nodes: Mapping[str, Node],
    peers: Iterable[Peer],
) -> dict[str, dict[str, frozenset[str]]]:
    """For each peer (by name): host prefix -> names of the nodes that should be next hops,
    computed from scratch the way the speaker computes it change by change: each Service's
    share (`service_next_hops`) among the nodes the peer's selector picks, kept in a
    `RouteTable` (Services sharing an IP contribute the union of their nodes). A prefix with no
    such node is absent: announcing it must stop. Every peer is in the result, with an empty
    mapping when nothing is to be announced to it.

    `services` should carry only the IPs announced over BGP (from pools whose protocol is
    `bgp`); layer2 IPs are answered by ARP/NDP, not routed. One entry per Service key.
    """
    listed = list(services)
    result: dict[str, dict[str, frozenset[str]]] = {}
    for peer in peers:
        selected = frozenset(
            name for name, node in nodes.items() if peer.node_selector.matches(node.labels)
        )
        table = RouteTable()
        for traffic in listed:
            endpoints = endpoints_by_service.get(traffic.key, ())
            table.set_service(traffic.key, service_next_hops(traffic, endpoints, nodes, selected))
        result[peer.name] = table.as_dict()
    return result


def node_announcements(desired: Mapping[str, frozenset[str]], node_name: str) -> set[str]:
    """The prefixes a speaker on `node_name` announces (next hop self) to one peer.

    `desired` is one peer's entry of `desired_routes`. A node matches a peer's selector or not
    whatever the prefix, so every peer the node's speaker talks to gets the same set.
    """
    return {prefix for prefix, hops in desired.items() if node_name in hops}


@functools.lru_cache(maxsize=1 << 12)
def path_identifier(next_hop: str) -> int:
    """The ADD-PATH path identifier (32 bits) of the path through `next_hop`.

    IPv4: the address itself as an integer, so two next hops can never collide. IPv6: the
    first 32 bits of the SHA-256 of the address, stable across restarts and hosts (Python's
    `hash` is salted per process); two of them may collide, which `central_paths` resolves.
    """
    address = ipaddress.ip_address(next_hop)
    if address.version == 4:
        return int(address) & 0xFFFFFFFF
    return int.from_bytes(hashlib.sha256(address.packed).digest()[:4], "big")


_NEXT_HOP_SELF: Mapping[int, str] = {4: "0.0.0.0", 6: "::"}


def nodes_without_next_hop(
    desired: Mapping[str, frozenset[str]], node_addresses: Mapping[str, Sequence[str] | str]
) -> dict[str, frozenset[str]]:
    """Prefix -> its eligible nodes (`desired`, prefix -> nodes) that have no address of the
    prefix's IP version (`node_addresses`, `Node.addresses`): a central speaker cannot make
    them next hops (`central_paths` leaves them out). Prefixes with none are absent."""
    has = {
        version: {n for n, a in node_addresses.items() if first_of_family(a, version)}
        for version in (4, 6)
    }
    missing: dict[str, frozenset[str]] = {}
    for prefix, names in desired.items():
        if lacking := names - has[6 if ":" in prefix else 4]:
            missing[prefix] = frozenset(lacking)
    return missing


def first_of_family(addresses: Sequence[str] | str, version: int) -> str | None:
    """The first of `addresses` (one address or several) that parses as an IP address of
    `version` (4 or 6), normalised; None if none does. A node's next hop for a prefix."""
    candidates = (addresses,) if isinstance(addresses, str) else addresses
    for text in candidates:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if address.version == version:
            return str(address)
    return None


def central_paths(
    desired: Mapping[str, frozenset[str]], node_addresses: Mapping[str, Sequence[str] | str]
) -> set[Route]:
    """The paths a central speaker announces to one peer: one per (prefix, next-hop node).

    `desired` is one peer's entry of `desired_routes`; `node_addresses` gives each node's
    addresses (`Node.addresses`), of which the first of the prefix's family is the next hop.
    A node without such an address cannot be a next hop for that prefix and is left out.
    Should two IPv6 next hops of one prefix hash to the same identifier, the one later in
    sorted order takes the next free value, so paths never replace each other.
    """
    paths: set[Route] = set()
    # Each node's next hop per family, in address order, parsed once per call: a full
    # reconcile asks for tens of thousands of (prefix, node) paths.
    hops: dict[int, dict[str, tuple[int, str]]] = {4: {}, 6: {}}
    for name, addresses in node_addresses.items():
        for version in (4, 6):
            hop = first_of_family(addresses, version)
            if hop is not None:
                hops[version][name] = (int(ipaddress.ip_address(hop)), hop)
    for prefix, names in desired.items():
        by_node = hops[6 if ":" in prefix else 4]
        next_hops = sorted({by_node[name] for name in names if name in by_node})
        taken: set[int] = set()
        for _, hop in next_hops:
            identifier = path_identifier(hop)
            while identifier in taken:
                identifier = (identifier + 1) & 0xFFFFFFFF
            taken.add(identifier)
            paths.add(Route(prefix, hop, identifier))
    return paths


def pool_attributes(eips: Iterable[Obj]) -> list[tuple[AddressPool, BgpAttributes]]:
    """The BGP pools whose routes carry attributes (communities, LOCAL_PREF), with them."""
    effective = effective_pools(eips)
    return [
        (p.addresses, p.attributes)
        for p in effective.pools.values()
        if p.protocol == "bgp" and p.attributes
    ]


def with_attributes(
    rib: dict[str, set[Route]], pools: Sequence[tuple[AddressPool, BgpAttributes]]
) -> dict[str, set[Route]]:
    """`rib` with each path given the attributes of the pool its prefix lies in (in place)."""
    if not pools:
        return rib
    for prefix, routes in rib.items():
        ip = prefix.split("/", 1)[0]
        attributes = next((a for pool, a in pools if ip in pool), NO_ATTRIBUTES)
        if attributes:
            rib[prefix] = {dataclasses.replace(r, attributes=attributes) for r in routes}
    return rib


def bgp_pools(eips: Iterable[Obj]) -> tuple[list[AddressPool], list[tuple[Obj, ModelError]]]:
    """Address blocks of the Eips announced over BGP: those with protocol bgp that own their
    addresses (`validation.effective_pools`: not being deleted, readable, not the loser of a
    conflict with an older Eip). A disabled Eip gives no new IPs but the ones given out stay,
    so it is still announced. Returns the blocks and the Eips that could not be read, with why.
    """
    effective = effective_pools(eips)
    owned = [p.addresses for p in effective.pools.values() if p.protocol == "bgp"]
    return owned, list(effective.invalid)


def announced_ips(ips: Iterable[str], pools: Sequence[AddressPool]) -> tuple[str, ...]:
    """The IPs that lie inside one of `pools` (the others are not porter-lb's to announce)."""
    return tuple(ip for ip in ips if any(ip in pool for pool in pools))


def service_next_hops(
    traffic: ServiceTraffic,
    endpoints: Iterable[Endpoint],
    nodes: Mapping[str, Node],
    selected: frozenset[str],
) -> dict[str, frozenset[str]]:
    """One Service's share of the desired routes: host prefix -> next-hop node names.

    The nodes are the Service's eligible nodes (`routes.eligible_nodes`) among `selected`,
    the nodes some BgpPeer's nodeSelector picks (a node speaker: its own node, if picked).
    `traffic.ips` must already be reduced to announced IPs. No node: no entry.
    """
    hops = eligible_nodes(traffic, endpoints, nodes) & selected
    if not hops:
        return {}
    return {host_prefix(ip, traffic.key): hops for ip in traffic.ips}


def service_share(
    service: Obj,
    endpoint_slices: Callable[[], Iterable[Obj]],
    *,
    nodes: Mapping[str, Node],
    pools: Sequence[AddressPool],
    selected: frozenset[str],
    class_name: str = LOAD_BALANCER_CLASS,
) -> dict[str, frozenset[str]]:
    """One Service object's share of the desired routes (`service_next_hops`), from the objects.

    Only a Service porter-lb implements (`selects_porter`) has a share; only its IPs inside
    `pools` (the BGP Eips, `bgp_pools`) are announced. `endpoint_slices` is called only for
    `externalTrafficPolicy: Local`, to give the Service's EndpointSlices. Raises ModelError
    for an unreadable Service.
    """
    if not selects_porter(service, class_name) or not selected:
        return {}
    traffic = traffic_from_service(service)
    ips = announced_ips(traffic.ips, pools)
    if not ips:
        return {}
    traffic = ServiceTraffic(traffic.key, traffic.external_traffic_policy, ips)
    endpoints: list[Endpoint] = []
    if traffic.external_traffic_policy == "Local":
        for endpoint_slice in endpoint_slices():
            endpoints.extend(endpoints_from_slice(endpoint_slice))
    return service_next_hops(traffic, endpoints, nodes, selected)


@dataclass
class RouteTable:
    """The desired next-hop nodes of every prefix, kept per Service so that one Service can
    be recomputed alone; Services sharing an IP contribute the union of their nodes."""

    by_service: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    by_prefix: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)

    def set_service(self, key: str, next_hops: Mapping[str, frozenset[str]]) -> set[str]:
        """Replace Service `key`'s share; return the prefixes whose node set may have changed."""
        old = self.by_service.pop(key, {})
        changed = set()
        for prefix, nodes in old.items():
            if next_hops.get(prefix) != nodes:
                contributors = self.by_prefix[prefix]
                del contributors[key]
                if not contributors:
                    del self.by_prefix[prefix]
                changed.add(prefix)
        for prefix, nodes in next_hops.items():
            if old.get(prefix) != nodes:
                self.by_prefix.setdefault(prefix, {})[key] = nodes
                changed.add(prefix)
        if next_hops:
            self.by_service[key] = dict(next_hops)
        return changed

    def nodes(self, prefix: str) -> frozenset[str]:
        contributors = self.by_prefix.get(prefix)
        if not contributors:
            return frozenset()
        if len(contributors) == 1:
            return next(iter(contributors.values()))
        return frozenset().union(*contributors.values())

    def prefixes(self) -> set[str]:
        return set(self.by_prefix)

    def as_dict(self) -> dict[str, frozenset[str]]:
        return {prefix: self.nodes(prefix) for prefix in sorted(self.by_prefix)}


def node_next_hops(
    addresses: Sequence[str], sessions: Iterable[tuple[str, Iterable[int]]]
) -> dict[int, str]:
    """A node speaker's next hop per IP version (4, 6) of its prefixes.

    `addresses` are the node's (`Node.addresses`); `sessions` are (neighbour address, IP
    versions it carries) of every session the speaker runs. Next hop self (gobgpd writes the
    session's own local address) is right only on a session of the prefix's version: over an
    IPv4 session, IPv6 routes (MP-BGP) would go out with the node's IPv4 address as next hop,
    which BIRD rejects and FRR cannot install. So where any session carries a version across
    families, that version's next hop is the node's first address of it; a node with none
    keeps self (such a session must not be given that family:
    `bgp_config.families_without_next_hop`).
    """
    hops = dict(_NEXT_HOP_SELF)
    for neighbor, versions in sessions:
        session = ipaddress.ip_address(neighbor).version
        for version in versions:
            if version != session and (address := first_of_family(addresses, version)):
                hops[version] = address
    return hops


def node_rib(
    table: RouteTable,
    prefixes: Iterable[str],
    node_name: str,
    next_hops: Mapping[int, str] = _NEXT_HOP_SELF,
) -> dict[str, set[Route]]:
    """A node speaker's desired paths for `prefixes` where the node is a hop, with the next
    hop of the prefix's IP version (`node_next_hops`; default: self)."""
    rib: dict[str, set[Route]] = {}
    for prefix in prefixes:
        if node_name in table.nodes(prefix):
            version = ipaddress.ip_network(prefix).version
            rib[prefix] = {Route(prefix, next_hops[version])}
    return rib


def central_rib(
    table: RouteTable, prefixes: Iterable[str], node_addresses: Mapping[str, Sequence[str]]
) -> dict[str, set[Route]]:
    """A central speaker's desired paths for `prefixes`: one per next-hop node, with the
    node's address as next hop and its ADD-PATH path identifier (`routes.central_paths`)."""
    desired = {p: nodes for p in prefixes if (nodes := table.nodes(p))}
    rib: dict[str, set[Route]] = {}
    for path in central_paths(desired, node_addresses):
        rib.setdefault(path.prefix, set()).add(Route(path.prefix, path.next_hop, path.identifier))
    return rib


def rib_delta(
    held: Mapping[str, set[Route]],
    desired: Mapping[str, set[Route]],
    prefixes: Iterable[str] | None = None,
) -> tuple[list[Route], list[Route]]:
    """(paths to add, paths to withdraw) turning `held` into `desired` for `prefixes` (all if
    None). Paths in both are left alone: a route that stays is never withdrawn.

    gobgpd tells paths apart by prefix and path identifier, not by next hop: a path whose next
    hop changes under the same identifier is replaced by adding it, and its old version must
    NOT be withdrawn (that would withdraw the new one). Add before withdrawing, so a prefix
    moving between nodes is never absent.
    """
    keys = set(held) | set(desired) if prefixes is None else set(prefixes)
    add: list[Route] = []
    withdraw: list[Route] = []
    for prefix in keys:
        have = held.get(prefix, set())
        want = desired.get(prefix, set())
        if have == want:
            continue
        add.extend(want - have)
        kept_ids = {route.identifier for route in want}
        withdraw.extend(route for route in have - want if route.identifier not in kept_ids)
    order = lambda r: (r.prefix, r.identifier, r.next_hop)  # noqa: E731
    return sorted(add, key=order), sorted(withdraw, key=order)
