"""Layer-2 announcement, decided: which ONE node answers ARP/NDP for each Service IP.

Pure and level-triggered, like `porter_lb.routing.routes`: from Services, EndpointSlices, Nodes, the
layer2 Eips and which nodes are alive (per-node heartbeat Leases, `porter_lb.layer2.heartbeat`),
every agent computes the same answer, with no coordination beyond seeing the same objects.

* **Candidates** for an IP: the nodes eligible for a Service holding it — exactly
  `routes.eligible_nodes` (externalTrafficPolicy Local: Ready nodes with a ready endpoint;
  Cluster: every Ready node; never NotReady or excluded nodes) — that are alive and have not
  reported the IP's Eip unusable (its interface missing or without carrier).
* **Winner**: highest rendezvous (highest-random-weight) score of (IP, node): SHA-256 of the
  two, so every agent ranks alike, whatever its process or host; when a node leaves, only the
  IPs it held move, and they spread over the others instead of piling on one.

`interface` of a layer2 Eip names the link to answer on: a name (`eth0`), or `can_reach:<ip>`,
the link the node's routing table uses to reach that address. `lo` is refused (nothing
answers ARP there), as are empty names and malformed addresses.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from porter_lb.model.addresses import AddressPool
from porter_lb.model.resources import (
    Endpoint,
    ModelError,
    Node,
    Pool,
    ServiceTraffic,
)
from porter_lb.model.validation import effective_pools
from porter_lb.routing.routes import eligible_nodes

__all__ = [
    "CAN_REACH_PREFIX",
    "Assignment",
    "InterfaceSpec",
    "Layer2Pool",
    "announcer",
    "assignments",
    "layer2_pool",
    "layer2_pools",
    "node_assignments",
    "parse_interface",
    "rank",
    "rendezvous_score",
]

CAN_REACH_PREFIX = "can_reach:"
_IFNAMSIZ = 15  # Linux interface names: at most 15 bytes


@dataclass(frozen=True)
class InterfaceSpec:
    """Where a node answers for a layer2 Eip: a link by `name`, or the link toward `can_reach`."""

    name: str = ""
    can_reach: str = ""

    def __str__(self) -> str:
        return self.name or f"{CAN_REACH_PREFIX}{self.can_reach}"


def parse_interface(value: object, eip: str = "") -> InterfaceSpec:
    """`spec.interface` of a layer2 Eip; ModelError naming the Eip, field, value and rule."""
    field = "spec.interface"
    if not isinstance(value, str) or not value.strip():
        raise ModelError("Eip", eip, field, value, "a layer2 Eip needs an interface")
    text = value.strip()
    if text.startswith(CAN_REACH_PREFIX):
        target = text.removeprefix(CAN_REACH_PREFIX).strip()
        try:
            address = ipaddress.ip_address(target)
        except ValueError:
            raise ModelError(
                "Eip", eip, field, value, f"{CAN_REACH_PREFIX} must be followed by an IP address"
            ) from None
        return InterfaceSpec(can_reach=str(address))
    if text == "lo":
        raise ModelError("Eip", eip, field, value, "lo cannot answer ARP or NDP; name a link")
    if len(text.encode()) > _IFNAMSIZ or "/" in text or any(c.isspace() for c in text):
        raise ModelError(
            "Eip", eip, field, value, "not an interface name (at most 15 bytes, no '/' or space)"
        )
    return InterfaceSpec(name=text)


@dataclass(frozen=True)
class Layer2Pool:
    """A layer2 Eip as the election needs it: its name, addresses and interface."""

    name: str
    addresses: AddressPool
    interface: InterfaceSpec


def layer2_pool(pool: Pool) -> Layer2Pool | None:
    """The Layer2Pool of a `protocol: layer2` Pool (None for other protocols).

    Raises ModelError when its interface is unusable (see `parse_interface`).
    """
    if pool.protocol != "layer2":
        return None
    return Layer2Pool(pool.name, pool.addresses, parse_interface(pool.interface, pool.name))


def layer2_pools(
    eips: Iterable[dict[str, Any]],
) -> tuple[list[Layer2Pool], list[tuple[dict[str, Any], ModelError]]]:
    """The layer-2 pools of the Eips that own their addresses (`validation.effective_pools`:
    not being deleted, readable, not the loser of a conflict), by name; and the Eips that
    could not be read or whose interface is unusable, with why."""
    listed = list(eips)
    effective = effective_pools(listed)
    by_name = {str((eip.get("metadata") or {}).get("name", "")): eip for eip in listed}
    pools: list[Layer2Pool] = []
    errors: list[tuple[dict[str, Any], ModelError]] = list(effective.invalid)
    for name, owned in effective.pools.items():
        try:
            pool = layer2_pool(owned)
        except ModelError as error:
            errors.append((by_name[name], error))
            continue
        if pool is not None:
            pools.append(pool)
    return sorted(pools, key=lambda p: p.name), errors


def rendezvous_score(ip: str, node: str) -> int:
    """The weight of `node` for `ip`: the first 8 bytes of SHA-256(ip NUL node), big-endian.

    `ip` is used in canonical form, so 2001:DB8::1 and 2001:db8::1 score alike.
    """
    canonical = str(ipaddress.ip_address(ip))
    digest = hashlib.sha256(f"{canonical}\0{node}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def rank(ip: str, nodes: Iterable[str]) -> list[str]:
    """`nodes` best first for `ip` (score descending, then name: a total order)."""
    return sorted(set(nodes), key=lambda node: (-rendezvous_score(ip, node), node))


def announcer(ip: str, candidates: Iterable[str]) -> str | None:
    """The node that answers for `ip` among `candidates`; None when there is none."""
    ranked = rank(ip, candidates)
    return ranked[0] if ranked else None


@dataclass(frozen=True)
class Assignment:
    """One layer2 IP: the Eip it comes from, the node answering for it, the Services using it."""

    ip: str
    pool: str
    node: str
    services: tuple[str, ...]


def assignments(
    services: Iterable[ServiceTraffic],
    endpoints_by_service: Mapping[str, Sequence[Endpoint]],
    nodes: Mapping[str, Node],
    pools: Sequence[Layer2Pool],
    alive: Mapping[str, frozenset[str]],
) -> dict[str, Assignment]:
    """Every layer2 IP in use that some node may answer for: IP -> Assignment.

    `alive` maps each node whose heartbeat is fresh to the names of the Eips it reported it
    cannot answer for (empty: all). IPs outside `pools` are not layer2's and are left out;
    an IP whose candidates are all dead or unable is absent too: nobody answers, rather than
    a node that cannot serve it. Services sharing an IP contribute the union of their
    eligible nodes.
    """
    candidates: dict[str, set[str]] = {}
    holders: dict[str, list[str]] = {}
    pool_of: dict[str, str] = {}
    for traffic in services:
        eligible: frozenset[str] | None = None
        for ip in traffic.ips:
            pool = next((p for p in pools if ip in p.addresses), None)
            if pool is None:
                continue
            if eligible is None:
                eligible = eligible_nodes(traffic, endpoints_by_service.get(traffic.key, ()), nodes)
            canonical = str(ipaddress.ip_address(ip))
            pool_of[canonical] = pool.name
            holders.setdefault(canonical, []).append(traffic.key)
            candidates.setdefault(canonical, set()).update(
                node for node in eligible if node in alive and pool.name not in alive[node]
            )
    result: dict[str, Assignment] = {}
    for ip in sorted(candidates, key=lambda text: ipaddress.ip_address(text).packed):
        winner = announcer(ip, candidates[ip])
        if winner is not None:
            result[ip] = Assignment(ip, pool_of[ip], winner, tuple(sorted(holders[ip])))
    return result


def node_assignments(all_assignments: Mapping[str, Assignment], node: str) -> dict[str, Assignment]:
    """The IPs `node` answers for."""
    return {ip: a for ip, a in all_assignments.items() if a.node == node}
