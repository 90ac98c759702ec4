"""Route audit: what the cluster says should be announced, against what a router holds.

The desired side is computed with the speaker's own functions (`bgp_config.usable_peer_specs`,
`routes.service_share`, `routes.RouteTable`, `routes.central_paths`) from one listing of
the cluster's objects; the observed side is a router's BGP RIB (BIRD through `birdc`, FRR
through `vtysh`, gobgpd over gRPC). Both are reduced to host prefix -> set of next-hop
addresses and compared per prefix, within the EIP pools announced over BGP: routes outside
the pools are not porter-lb's and are ignored.

* **missing**: the cluster wants the prefix announced; the router has no path for it;
* **stale**: the router has a path for a prefix in the pools that no Service should announce;
* **wrong_next_hops**: both have the prefix; the next-hop sets differ.

Desired next hops are node addresses: in `central` mode the first address of the prefix's
family of each eligible node, exactly as the central speaker sends them (third-party next
hops); in `node` mode each node's speaker announces next hop self, which the router sees as
the node's address on the session, so any address of a node counts as that node.

This module is pure and table-tested; `porter_lb.routing.audit_sources` reads the cluster
(`KubeAPI.list`) and the routers and runs the comparison, for `porter-lb audit`
(`porter_lb.commands.audit`) and the `porter.lb.route_audit` module. See docs/route_audit.md.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from porter_lb.model.addresses import AddressPool
from porter_lb.model.resources import (
    LOAD_BALANCER_CLASS,
    ModelError,
    Node,
    Obj,
    node_from_object,
    service_key,
    slice_service_key,
)
from porter_lb.model.validation import effective_pools
from porter_lb.routing.bgp_config import Mode, choose_bgpconf, usable_peer_specs
from porter_lb.routing.routes import (
    RouteTable,
    bgp_pools,
    central_paths,
    first_of_family,
    service_share,
)

__all__ = [
    "AuditError",
    "ClusterRoutes",
    "ClusterState",
    "Mode",
    "RouterKind",
    "compare",
    "desired_routes_from_cluster",
    "parse_bird_routes",
    "parse_frr_bgp_json",
    "routes_from_output",
]

RouterKind = Literal["bird", "frr", "gobgp"]

Routes = dict[str, frozenset[str]]
"""Host prefix -> next-hop addresses."""


class AuditError(RuntimeError):
    """The cluster or the router could not be read; the message says which and why."""


# --- pure: the cluster's side -------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterState:
    """One listing of the objects the speaker reads (plain API JSON)."""

    services: Sequence[Obj] = ()
    endpoint_slices: Sequence[Obj] = ()
    nodes: Sequence[Obj] = ()
    eips: Sequence[Obj] = ()
    bgpconfs: Sequence[Obj] = ()
    bgppeers: Sequence[Obj] = ()
    secrets: Mapping[str, Obj] | None = None  # None: not readable; Secret references trusted


@dataclass
class ClusterRoutes:
    """The desired routes and what the audit is about."""

    desired: Routes
    services: dict[str, tuple[str, ...]]  # prefix -> the Services holding it
    pools: list[tuple[str, AddressPool]]  # the BGP Eips in scope, by name
    aliases: dict[str, str] = field(default_factory=dict)  # any node address -> its next hop
    warnings: list[str] = field(default_factory=list)


def _without_secret_refs(bgppeer: Obj) -> Obj:
    spec = dict(bgppeer.get("spec") or {})
    conf = dict(spec.get("conf") or {})
    conf.pop("authPasswordSecretRef", None)
    return {**bgppeer, "spec": {**spec, "conf": conf}}


def _read_nodes(objs: Iterable[Obj], warnings: list[str]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for obj in objs:
        try:
            node = node_from_object(obj)
        except ModelError as error:
            warnings.append(f"ignored: {error}")
            continue
        nodes[node.name] = node
    return nodes


def _pools_in_scope(
    eips: Sequence[Obj], announced: Sequence[AddressPool], names: Sequence[str]
) -> tuple[list[tuple[str, AddressPool]], list[str]]:
    owned = effective_pools(eips).pools
    scope = [
        (name, pool.addresses)
        for name, pool in sorted(owned.items())
        if pool.addresses in announced and (not names or name in names)
    ]
    unknown = sorted(set(names) - {n for n, _ in scope})
    return scope, [f"pools: Eip {n!r}: no such Eip with protocol bgp" for n in unknown]


def _node_aliases(nodes: Iterable[Node]) -> dict[str, str]:
    """Every address of a node -> the node's next hop of that family (node mode: the router
    sees the address the node's speaker talks from, which may be any of them)."""
    aliases: dict[str, str] = {}
    for node in nodes:
        for text in node.addresses:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            hop = first_of_family(node.addresses, address.version)
            if hop is not None:
                aliases[str(address)] = hop
    return aliases


def desired_routes_from_cluster(
    state: ClusterState,
    *,
    mode: Mode = "node",
    class_name: str = LOAD_BALANCER_CLASS,
    secret_namespace: str = "porter-lb-system",
    bgp_peers: Sequence[str] = (),
    pools: Sequence[str] = (),
) -> ClusterRoutes:
    """Host prefix -> next-hop addresses the router should hold, as the speakers compute it.

    A node is a next hop when it is eligible for a Service holding the IP (Ready, not
    excluded, ready endpoint for Local) and selected by a usable BgpPeer (`bgp_peers` limits
    this to the named ones: the BgpPeers of the audited router). No usable BgpConf: the
    speakers run no BGP instance, so nothing is desired. `pools` limits the audit to the
    named Eips (default: every Eip with protocol bgp). Problems that change the answer (an
    unreadable Node or Service, an unknown name) are put in `warnings`.
    """
    warnings: list[str] = []
    nodes = _read_nodes(state.nodes, warnings)
    announced, eip_errors = bgp_pools(state.eips)
    warnings += [f"ignored: {error}" for _, error in eip_errors]
    scope, unknown_pools = _pools_in_scope(state.eips, announced, pools)
    warnings += unknown_pools
    aliases = _node_aliases(nodes.values()) if mode == "node" else {}
    if choose_bgpconf(state.bgpconfs) is None:
        warnings.append("no BgpConf: the speakers run no BGP instance and announce nothing")
        return ClusterRoutes({}, {}, scope, aliases, warnings)

    peers = state.bgppeers
    if state.secrets is None:
        warnings.append("Secrets not readable: BgpPeers' password Secrets assumed present")
        peers = [_without_secret_refs(p) for p in peers]
    specs, rejected = usable_peer_specs(
        peers, state.secrets or {}, mode=mode, secret_namespace=secret_namespace
    )
    warnings += [f"ignored: {message}" for _, _, message in rejected]
    if bgp_peers:
        for name in sorted(set(bgp_peers) - {s.name for s in specs}):
            warnings.append(f"bgp_peers: BgpPeer {name!r}: no such usable BgpPeer")
        specs = [s for s in specs if s.name in bgp_peers]
    selected = frozenset(
        name
        for name, node in nodes.items()
        if any(s.peer.node_selector.matches(node.labels) for s in specs)
    )

    slices: defaultdict[str, list[Obj]] = defaultdict(list)
    for endpoint_slice in state.endpoint_slices:
        if key := slice_service_key(endpoint_slice):
            slices[key].append(endpoint_slice)
    table = RouteTable()
    for service in state.services:
        key = service_key(service)
        try:
            share = service_share(
                service,
                functools.partial(slices.__getitem__, key),
                nodes=nodes,
                pools=announced,
                selected=selected,
                class_name=class_name,
            )
        except ModelError as error:
            warnings.append(f"ignored: {error}")
            continue
        if share:
            table.set_service(key, share)

    desired: dict[str, set[str]] = {}
    addresses = {name: node.addresses for name, node in nodes.items()}
    for path in central_paths(table.as_dict(), addresses):
        desired.setdefault(path.prefix, set()).add(path.next_hop)
    in_scope = {p: frozenset(h) for p, h in desired.items() if _in_pools(p, scope)}
    owners = {p: tuple(sorted(table.by_prefix.get(p, {}))) for p in in_scope}
    return ClusterRoutes(in_scope, owners, scope, aliases, warnings)


# --- pure: the comparison -----------------------------------------------------------------------


def _in_pools(prefix: str, pools: Iterable[tuple[str, AddressPool]]) -> bool:
    """True when the whole prefix lies inside one pool (a covering aggregate is not ours)."""
    network = ipaddress.ip_network(prefix, strict=False)
    return any(
        pool.contains(network.network_address) and pool.contains(network.broadcast_address)
        for _, pool in pools
    )


def _prefix_order(prefix: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(prefix, strict=False)
    return network.version, int(network.network_address), network.prefixlen


def _hop_order(hop: str) -> tuple[int, int]:
    address = ipaddress.ip_address(hop)
    return address.version, int(address)


def _sorted_hops(hops: Iterable[str]) -> list[str]:
    return sorted(hops, key=_hop_order)


def _canonical(observed: Mapping[str, Iterable[str]], aliases: Mapping[str, str]) -> Routes:
    result: dict[str, set[str]] = {}
    for prefix, hops in observed.items():
        key = str(ipaddress.ip_network(prefix, strict=False))
        canonical = result.setdefault(key, set())
        for hop in hops:
            text = str(ipaddress.ip_address(hop))
            canonical.add(aliases.get(text, text))
    return {p: frozenset(h) for p, h in result.items()}


def compare(
    desired: Mapping[str, frozenset[str]],
    observed: Mapping[str, Iterable[str]],
    pools: Sequence[tuple[str, AddressPool]],
    *,
    aliases: Mapping[str, str] | None = None,
    services: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The drift between `desired` and `observed` (prefix -> next hops) within `pools`.

    Prefixes outside every pool are ignored on both sides. Observed next hops are mapped
    through `aliases` (another address of a node -> the node's next hop) before comparing.
    A router entry with no next hop at all counts as absent. `services` (prefix -> Service
    keys) only annotates the entries. Returns a JSON-ready report: `in_sync`, `missing`,
    `stale`, `wrong_next_hops` (sorted by prefix) and their `counts`.
    """
    owners = services or {}
    want = {p: h for p, h in desired.items() if h and _in_pools(p, pools)}
    have = {
        p: h for p, h in _canonical(observed, aliases or {}).items() if h and _in_pools(p, pools)
    }
    missing = [
        {"prefix": p, "want": _sorted_hops(want[p]), "services": list(owners.get(p, ()))}
        for p in sorted(want.keys() - have.keys(), key=_prefix_order)
    ]
    stale = [
        {"prefix": p, "have": _sorted_hops(have[p])}
        for p in sorted(have.keys() - want.keys(), key=_prefix_order)
    ]
    wrong = [
        {
            "prefix": p,
            "want": _sorted_hops(want[p]),
            "have": _sorted_hops(have[p]),
            "missing_next_hops": _sorted_hops(want[p] - have[p]),
            "unexpected_next_hops": _sorted_hops(have[p] - want[p]),
            "services": list(owners.get(p, ())),
        }
        for p in sorted(want.keys() & have.keys(), key=_prefix_order)
        if want[p] != have[p]
    ]
    return {
        "in_sync": not (missing or stale or wrong),
        "missing": missing,
        "stale": stale,
        "wrong_next_hops": wrong,
        "counts": {
            "desired": len(want),
            "observed": len(have),
            "missing": len(missing),
            "stale": len(stale),
            "wrong_next_hops": len(wrong),
        },
    }


def drift_summary(report: Mapping[str, Any]) -> str:
    """One line naming the drifting prefixes, for a failure message."""
    parts = []
    for kind in ("missing", "stale", "wrong_next_hops"):
        entries = report[kind]
        if entries:
            shown = ", ".join(e["prefix"] for e in entries[:5])
            more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
            parts.append(f"{len(entries)} {kind.replace('_', ' ')} ({shown}{more})")
    return "routes drift from the cluster: " + "; ".join(parts) if parts else "in sync"


# --- pure: router output parsers ----------------------------------------------------------------


_BIRD_NOISE = ("BIRD ", "Table ", "Network not found", "Access restricted")
"""Lines of birdc's output that are not routes: banner, table headers, `-r`'s notice."""


def parse_bird_routes(text: str) -> dict[str, set[str]]:
    """Prefix -> next hops from BIRD 2's `show route all` (every path, not only the best).

    A path's next hop is its `BGP.next_hop` attribute (the first address: IPv6 may add a
    link-local one), else its `via` gateways (several for a multipath route). BIRD's
    banner, table headers and restricted mode's notice are skipped.
    """
    routes: dict[str, set[str]] = {}
    prefix = ""
    paths: list[tuple[str, list[str], list[str]]] = []  # (prefix, via hops, BGP.next_hop)

    for line in text.splitlines():
        if not line.strip() or line.startswith(_BIRD_NOISE):
            continue
        if not line[0].isspace():
            fields = line.split()
            prefix = fields[0]
            paths.append((prefix, [], []))
            continue
        fields = line.split()
        if not paths:
            continue
        if fields[0] in ("unicast", "unreachable", "blackhole", "prohibit") or fields[0].startswith(
            "["
        ):
            paths.append((prefix, [], []))  # another path of the same prefix
        elif fields[0] == "via" and len(fields) > 1:
            paths[-1][1].append(fields[1])
        elif fields[0] == "BGP.next_hop:" and len(fields) > 1:
            paths[-1][2].append(fields[1])
    for path_prefix, via, bgp_next_hop in paths:
        hops = routes.setdefault(path_prefix, set())
        hops.update(bgp_next_hop[:1] or via)
    return routes


def parse_frr_bgp_json(document: Mapping[str, Any] | str) -> dict[str, set[str]]:
    """Prefix -> next hops from FRR's `show bgp ipv4|ipv6 unicast json` (every valid path).

    IPv6 paths list a global and a link-local next hop; the link-local one is left out.
    """
    data = json.loads(document) if isinstance(document, str) else document
    routes: dict[str, set[str]] = {}
    for prefix, paths in (data.get("routes") or {}).items():
        hops = routes.setdefault(prefix, set())
        for path in paths:
            if path.get("valid") is False:
                continue
            for hop in path.get("nexthops") or []:
                if hop.get("ip") and hop.get("scope", "global") == "global":
                    hops.add(str(hop["ip"]))
    return routes


BIRD_SHOW_ROUTES = "show route all where source = RTS_BGP"
"""The BIRD command the audit reads (restricted: `birdc -r`)."""

FRR_SHOW_ROUTES = ("show bgp ipv4 unicast json", "show bgp ipv6 unicast json")
"""The FRR commands the audit reads (vtysh -c), one per family."""


def routes_from_output(router: RouterKind, outputs: Sequence[str]) -> dict[str, set[str]]:
    """The BGP routes in what the router's own commands printed, run elsewhere (on the router,
    over SSH): for `bird` the output of `birdc -r` + BIRD_SHOW_ROUTES, for `frr` one JSON
    document per command of FRR_SHOW_ROUTES. AuditError names what is not such output."""
    if router == "bird":
        text = "\n".join(outputs)
        for refusal in ("Access denied", "Unable to connect"):
            if refusal in text:
                line = next(x for x in text.splitlines() if refusal in x)
                raise AuditError(f"router_output: birdc could not read the routes: {line.strip()}")
        return parse_bird_routes(text)
    if router == "frr":
        routes: dict[str, set[str]] = {}
        for index, output in enumerate(outputs):
            try:
                document = json.loads(output or "{}")
            except ValueError:
                raise AuditError(
                    f"router_output[{index}]: not the JSON of vtysh's "
                    f"'show bgp ... unicast json': {output[:200]!r}"
                ) from None
            if not isinstance(document, dict):
                raise AuditError(f"router_output[{index}]: a JSON object expected")
            routes.update(parse_frr_bgp_json(document))
        return routes
    raise AuditError(f"router_output: only for router bird or frr, not {router}")
