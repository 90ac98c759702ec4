"""Host rules: make this node accept the EIPs it may receive.

A router sends a packet for an EIP to a node because the node announced it (BGP) or answers
ARP/NDP for it (layer 2). The EIP is not assigned to any interface of the node, so without
more the node would drop the packet, or forward it back to the router. Two ways to accept it,
chosen by configuration (`--host-rules`):

* **table** (Porter's design, the seeds'): one `ip rule` per EIP sends packets to it to a
  dedicated table, which holds one local default route::

      2019: from all to 203.0.113.10 lookup 2019 proto 201
      local default dev lo table 2019 proto 201 scope host

* **local**: one local route per EIP in the kernel's `local` table, as if the address were
  assigned, without an address on any interface (so nothing answers ARP for it)::

      local 203.0.113.10 dev lo table local proto 201 scope host

* **off**: nothing is touched (kube-proxy's IPVS or iptables rules already accept the IPs).

**What it owns.** Rules with its priority and protocol number; routes with its protocol
number in its table and in the `local` table. Nothing else is read as its own or ever
changed, and everything it owns that is not wanted is removed — at start too, so a crash
leaves nothing stale and a restart adds nothing twice. A node switched between `table` and
`local` cleans up the other mode's entries. Changing the table, priority or protocol number
leaves entries under the old numbers behind (they are no longer its own).

**Order.** Accepting must precede announcing, and stopping must follow withdrawal, or packets
already on their way are forwarded back to the router. The speaker calls `HostRules.sync`
with the union of old and new prefixes before it adds paths, and with the new set after it
withdraws (`Speaker(accept_prefixes=...)`). Nothing is removed when the agent stops: the
routes stay announced by gobgpd, so the node must go on accepting them.

This module is pure and table-tested (`desired_state`, `owned_state`, `host_delta`,
`accepted_prefixes`, `setting_problems`); `porter_lb.host.netlink.HostRules` applies it over
netlink.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PRIORITY",
    "DEFAULT_PROTOCOL",
    "DEFAULT_TABLE",
    "LOCAL_TABLE",
    "MODES",
    "HostDelta",
    "HostRulesConfig",
    "HostRulesError",
    "HostState",
    "LocalRoute",
    "Mode",
    "Rule",
    "accepted_prefixes",
    "desired_state",
    "host_delta",
    "owned_state",
    "setting_problems",
    "settings_to_read",
]

Mode = Literal["table", "local", "off"]
MODES: tuple[Mode, ...] = ("table", "local", "off")

DEFAULT_TABLE = 2019
"""The dedicated routing table of mode `table` (Porter's year; not one of 253-255)."""
DEFAULT_PRIORITY = 2019
"""Priority of the `ip rule`s: after `local` (0), before `main` (32766)."""
DEFAULT_PROTOCOL = 201
"""Route and rule protocol number marking porter-lb's entries (`ip route ... proto 201`);
not one of iproute2's named protocols (kernel 0-4, daemons 8-192)."""
LOCAL_TABLE = 255
_RESERVED_TABLES = (0, 253, 254, 255)  # unspec, default, main, local


class HostRulesError(RuntimeError):
    """Host rules could not be read or changed; the message names the entry and the cause."""


@dataclass(frozen=True)
class HostRulesConfig:
    """How the node accepts EIPs; the numbers say which kernel entries are porter-lb's."""

    mode: Mode = "table"
    table: int = DEFAULT_TABLE
    priority: int = DEFAULT_PRIORITY
    protocol: int = DEFAULT_PROTOCOL

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"--host-rules {self.mode!r}: must be one of {', '.join(MODES)}")
        if not 0 < self.table < 2**32 or self.table in _RESERVED_TABLES:
            raise ValueError(
                f"--host-rules-table {self.table}: must be 1-4294967295 and not 253, 254 or 255"
                " (default, main, local)"
            )
        if not 0 < self.priority < 32766:
            raise ValueError(
                f"--host-rules-priority {self.priority}: must be 1-32765"
                " (after the local table's rule 0, before main's 32766)"
            )
        if not 4 < self.protocol < 256:
            raise ValueError(
                f"--host-rules-protocol {self.protocol}: must be 5-255 (0-4 are the kernel's)"
            )


@dataclass(frozen=True, order=True)
class Rule:
    """`ip rule add to DESTINATION lookup TABLE priority PRIORITY protocol PROTOCOL`."""

    destination: str  # a canonical host prefix: 203.0.113.10/32, 2001:db8::10/128
    table: int
    priority: int
    protocol: int

    @property
    def family(self) -> int:
        return ipaddress.ip_network(self.destination).version


@dataclass(frozen=True, order=True)
class LocalRoute:
    """`ip route add local DESTINATION dev lo table TABLE proto PROTOCOL`."""

    destination: str  # 0.0.0.0/0 or ::/0 in the dedicated table; a host prefix in `local`
    table: int
    protocol: int

    @property
    def family(self) -> int:
        return ipaddress.ip_network(self.destination).version


@dataclass(frozen=True)
class HostState:
    """A set of porter-lb's kernel entries: wanted, or found."""

    rules: frozenset[Rule] = frozenset()
    routes: frozenset[LocalRoute] = frozenset()


@dataclass(frozen=True)
class HostDelta:
    """Changes, each group in the order it must be applied: routes are added before the rules
    that lead to them, rules removed before the routes they lead to."""

    add_routes: tuple[LocalRoute, ...] = ()
    add_rules: tuple[Rule, ...] = ()
    remove_rules: tuple[Rule, ...] = ()
    remove_routes: tuple[LocalRoute, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add_routes or self.add_rules or self.remove_rules or self.remove_routes)


DEFAULT_DESTINATION = {4: "0.0.0.0/0", 6: "::/0"}
"""The local default route of mode `table`, per IP version."""


def canonical_host_prefix(prefix: str) -> str:
    """`prefix` (or an IP) as a canonical /32 or /128; ValueError for anything wider."""
    network = ipaddress.ip_network(prefix)
    if network.prefixlen != network.max_prefixlen:
        raise ValueError(f"host rules: {prefix!r} is not a host prefix (/32 or /128)")
    return str(network)


def desired_state(prefixes: Iterable[str], config: HostRulesConfig) -> HostState:
    """The entries that make the node accept `prefixes` (host prefixes), and nothing else.

    `table`: one rule per prefix, and one local default route per family in use in the
    dedicated table (none when no prefix of that family is accepted). `local`: one local route
    per prefix in the `local` table. `off`: nothing.
    """
    hosts = sorted({canonical_host_prefix(p) for p in prefixes})
    if config.mode == "table":
        families = {ipaddress.ip_network(p).version for p in hosts}
        return HostState(
            frozenset(Rule(p, config.table, config.priority, config.protocol) for p in hosts),
            frozenset(
                LocalRoute(DEFAULT_DESTINATION[f], config.table, config.protocol) for f in families
            ),
        )
    if config.mode == "local":
        return HostState(
            frozenset(), frozenset(LocalRoute(p, LOCAL_TABLE, config.protocol) for p in hosts)
        )
    return HostState()


def owned_state(
    rules: Iterable[Rule], routes: Iterable[LocalRoute], config: HostRulesConfig
) -> HostState:
    """Which of the kernel's rules and local routes are porter-lb's: rules with its priority
    and protocol; routes with its protocol in its table or the `local` table."""
    return HostState(
        frozenset(
            r for r in rules if r.priority == config.priority and r.protocol == config.protocol
        ),
        frozenset(
            r
            for r in routes
            if r.protocol == config.protocol and r.table in (config.table, LOCAL_TABLE)
        ),
    )


def host_delta(current: HostState, desired: HostState) -> HostDelta:
    """What turns the owned `current` into `desired`; entries in both are left alone."""
    return HostDelta(
        add_routes=tuple(sorted(desired.routes - current.routes)),
        add_rules=tuple(sorted(desired.rules - current.rules)),
        remove_rules=tuple(sorted(current.rules - desired.rules)),
        remove_routes=tuple(sorted(current.routes - desired.routes)),
    )


def accepted_prefixes(state: HostState, config: HostRulesConfig) -> frozenset[str]:
    """The host prefixes an owned state makes the node accept, for status: in `table` mode
    those with a rule, while the table has the family's local default; in `local` mode those
    with a local route."""
    if config.mode == "table":
        defaults = {r.family for r in state.routes if r.table == config.table}
        return frozenset(
            r.destination for r in state.rules if r.table == config.table and r.family in defaults
        )
    if config.mode == "local":
        return frozenset(
            r.destination
            for r in state.routes
            if r.table == LOCAL_TABLE and ipaddress.ip_network(r.destination).prefixlen > 0
        )
    return frozenset()


def settings_to_read(interfaces: Iterable[str]) -> list[str]:
    """The sysctls `setting_problems` looks at, for these interfaces (lo excluded)."""
    names = ["net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter"]
    names += [f"net.ipv4.conf.{i}.rp_filter" for i in sorted(interfaces) if i != "lo"]
    return names


def setting_problems(values: Mapping[str, str | None]) -> dict[str, str]:
    """The Linux settings that are not as porter-lb needs them: sysctl -> message.

    * `net.ipv4.ip_forward` = 1: a node forwards EIP traffic on to pods (kube-proxy DNAT).
    * `rp_filter` 0 (off) or 2 (loose) on every interface, the effective value being the
      higher of `conf.all` and `conf.<interface>`: with 1 (strict) a packet for an EIP is
      dropped when the route back to its source leaves by another interface (multi-homed
      nodes, asymmetric ECMP paths).

    `values` maps sysctl names to their values as read (None: could not be read).
    """
    problems: dict[str, str] = {}
    forward = values.get("net.ipv4.ip_forward")
    if forward is None:
        problems["net.ipv4.ip_forward"] = "net.ipv4.ip_forward could not be read; want 1"
    elif forward.strip() != "1":
        problems["net.ipv4.ip_forward"] = (
            f"net.ipv4.ip_forward is {forward.strip()}; want 1 (sysctl -w net.ipv4.ip_forward=1)"
            ": without it EIP traffic is not forwarded to pods on this node"
        )
    strict = "1 (strict); want 2 (loose) or 0"
    why = ": EIP traffic whose reply route leaves by another interface is dropped"

    def level(name: str) -> int | None:
        text = values.get(name)
        try:
            return int(text) if text is not None else None
        except ValueError:
            return None

    if level("net.ipv4.conf.all.rp_filter") == 1:
        problems["net.ipv4.conf.all.rp_filter"] = (
            f"net.ipv4.conf.all.rp_filter is {strict}"
            f" (sysctl -w net.ipv4.conf.all.rp_filter=2){why}"
        )
        return problems
    for name in sorted(values):
        if name.startswith("net.ipv4.conf.") and name.endswith(".rp_filter"):
            if name == "net.ipv4.conf.all.rp_filter":
                continue
            if level(name) == 1:
                problems[name] = f"{name} is {strict} (sysctl -w {name}=2){why}"
    return problems
