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

The pure part (`desired_state`, `owned_state`, `host_delta`, `accepted_prefixes`,
`setting_problems`) is table-tested; `HostRules` is the pyroute2 adapter.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from porter_lb.host.netns import netns_path
from porter_lb.telemetry import metrics

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PRIORITY",
    "DEFAULT_PROTOCOL",
    "DEFAULT_TABLE",
    "LOCAL_TABLE",
    "MODES",
    "HostDelta",
    "HostRules",
    "HostRulesConfig",
    "HostRulesError",
    "HostState",
    "LocalRoute",
    "Mode",
    "Rule",
    "accepted_prefixes",
    "add_host_rule_options",
    "desired_state",
    "host_delta",
    "host_rules_from_args",
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


_DEFAULT_DESTINATION = {4: "0.0.0.0/0", 6: "::/0"}


def _host_prefix(prefix: str) -> str:
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
    hosts = sorted({_host_prefix(p) for p in prefixes})
    if config.mode == "table":
        families = {ipaddress.ip_network(p).version for p in hosts}
        return HostState(
            frozenset(Rule(p, config.table, config.priority, config.protocol) for p in hosts),
            frozenset(
                LocalRoute(_DEFAULT_DESTINATION[f], config.table, config.protocol) for f in families
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


# --- the adapter ---------------------------------------------------------------------------------

T = TypeVar("T")

_IGNORED_ON_ADD = (errno.EEXIST,)
_IGNORED_ON_REMOVE = (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_RT_SCOPE_HOST = 254
_RTN_LOCAL = 2


@dataclass
class HostRules:
    """Keeps this node's kernel entries (see the module docstring) equal to what it accepts.

    `sync(prefixes, source)` is level-triggered: it sets what `source` ("bgp", "layer2")
    wants accepted, and brings the kernel to the union of all sources. The first call reads
    what the kernel holds, so whatever a crashed run left is corrected; later calls apply
    only the difference from what this object holds, and read the kernel again after an
    error or once `reread_interval` seconds have passed.

    Every netlink call runs on ONE worker thread (pyroute2 0.9's sockets are bound to an
    asyncio loop of the thread that made them). With `netns` (a name under /run/netns, or an
    absolute path: `porter_lb.host.netns`) that thread enters the namespace before anything
    else, so the agent can run in the host's namespace and program a node namespace (the
    lab); the rest of the process stays where it is. The sysctl checks read /proc/sys from
    the same thread, so they see the namespace's values.
    """

    config: HostRulesConfig
    netns: str = ""
    node: str = ""
    reread_interval: float = 300.0
    on_change: Callable[[frozenset[str]], None] | None = None  # accepted prefixes, for status
    _wanted: dict[str, frozenset[str]] = field(default_factory=dict, init=False)
    _held: HostState | None = field(default=None, init=False)
    _read_at: float = field(default=0.0, init=False)
    _applied: frozenset[str] | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _executor: ThreadPoolExecutor = field(init=False)
    _ipr: Any = field(default=None, init=False)
    _lo: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-rules")

    # Public API: any thread.

    def sync(self, prefixes: Iterable[str], source: str = "bgp") -> None:
        """Accept exactly the union of every source's prefixes; raise HostRulesError."""
        if self.config.mode == "off":
            return
        with self._lock:
            self._wanted[source] = frozenset(_host_prefix(p) for p in prefixes)
            wanted = frozenset().union(*self._wanted.values())
            if wanted == self._applied and not self._reread_due():
                return
            self._run(lambda: self._apply(wanted))
            self._applied = wanted

    def check_settings(self) -> dict[str, str]:
        """The Linux settings that are not as needed (see `setting_problems`), as read in the
        node's namespace: sysctl -> message."""
        return self._run(self._read_settings)

    def accepted(self) -> frozenset[str]:
        """What the kernel was last seen or made to accept (empty before the first sync)."""
        held = self._held
        return accepted_prefixes(held, self.config) if held is not None else frozenset()

    def close(self) -> None:
        def close_socket() -> None:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

        try:
            self._executor.submit(close_socket).result(timeout=10)
        finally:
            self._executor.shutdown(wait=True)

    # Worker thread only.

    def _run(self, call: Callable[[], T]) -> T:
        return self._executor.submit(call).result()

    def _reread_due(self) -> bool:
        return self._held is None or time.monotonic() - self._read_at >= self.reread_interval

    def _socket(self) -> Any:
        if self._ipr is None:
            if self.netns:
                path = netns_path(self.netns)
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError as error:
                    raise HostRulesError(
                        f"--netns {self.netns}: cannot open {path}: {error.strerror}"
                    ) from None
                try:
                    os.setns(fd, os.CLONE_NEWNET)
                finally:
                    os.close(fd)
            from pyroute2 import IPRoute  # netlink only where host rules are on

            self._ipr = IPRoute(groups=0)  # requests only: no multicast events to buffer
            found = self._ipr.link_lookup(ifname="lo")
            if not found:
                raise HostRulesError("no 'lo' interface: local routes need it")
            self._lo = found[0]
        return self._ipr

    def _read_settings(self) -> dict[str, str]:
        self._socket()  # enters the namespace first
        try:
            interfaces = os.listdir("/proc/sys/net/ipv4/conf")
        except OSError:
            interfaces = []
        interfaces = [i for i in interfaces if i not in ("all", "default")]
        values: dict[str, str | None] = {}
        for name in settings_to_read(interfaces):
            try:
                values[name] = Path("/proc/sys", *name.split(".")).read_text()
            except OSError:
                values[name] = None
        problems = setting_problems(values)
        for name in values:
            metrics.HOST_SETTING_OK.labels(self.node, name).set(0 if name in problems else 1)
        return problems

    def _read_kernel(self) -> HostState:
        from pyroute2.netlink.exceptions import NetlinkError

        ipr = self._socket()
        rules: list[Rule] = []
        routes: list[LocalRoute] = []
        try:
            for version, family in _AF.items():
                for msg in ipr.rule("dump", family=family):
                    rule = _rule_from_message(msg)
                    if rule is not None:
                        rules.append(rule)
                for msg in ipr.route("dump", family=family):
                    route = _route_from_message(msg, version)
                    if route is not None:
                        routes.append(route)
        except NetlinkError as error:
            raise HostRulesError(f"reading rules and routes: {error}") from None
        return owned_state(rules, routes, self.config)

    def _apply(self, prefixes: frozenset[str]) -> None:
        try:
            if self._reread_due():
                self._held = self._read_kernel()
                self._read_at = time.monotonic()
            assert self._held is not None
            before = accepted_prefixes(self._held, self.config)
            delta = host_delta(self._held, desired_state(prefixes, self.config))
            if delta:
                self._change(delta)
            after = accepted_prefixes(self._held, self.config)
        except Exception:
            self._held = None  # read the kernel again next time
            raise
        if before != after:
            log.info(
                "host rules changed",
                extra={
                    "accepting": sorted(after - before),
                    "stopped": sorted(before - after),
                    "accepted": len(after),
                    "mode": self.config.mode,
                },
            )
        self._report(before, after)
        if self.on_change is not None:
            self.on_change(after)

    def _report(self, before: frozenset[str], after: frozenset[str]) -> None:
        for prefix in before - after:
            with contextlib.suppress(KeyError):
                metrics.ACCEPTED_IP.remove(self.node, prefix.split("/")[0])
        for prefix in after - before:
            metrics.ACCEPTED_IP.labels(self.node, prefix.split("/")[0]).set(1)
        metrics.ACCEPTED_IPS.labels(self.node).set(len(after))

    def _change(self, delta: HostDelta) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        assert self._held is not None
        ipr = self._socket()
        rules, routes = set(self._held.rules), set(self._held.routes)
        steps: list[tuple[str, Rule | LocalRoute]] = [
            *(("add", r) for r in delta.add_routes),
            *(("add", r) for r in delta.add_rules),
            *(("del", r) for r in delta.remove_rules),
            *(("del", r) for r in delta.remove_routes),
        ]
        for command, entry in steps:
            network = ipaddress.ip_network(entry.destination)
            try:
                if isinstance(entry, Rule):
                    ipr.rule(
                        command,
                        family=_AF[network.version],
                        dst=str(network.network_address),
                        dst_len=network.prefixlen,
                        table=entry.table,
                        priority=entry.priority,
                        protocol=entry.protocol,
                    )
                else:
                    ipr.route(
                        command,
                        family=_AF[network.version],
                        dst=str(network.network_address),
                        dst_len=network.prefixlen,
                        type="local",
                        scope=_RT_SCOPE_HOST,
                        table=entry.table,
                        oif=self._lo,
                        proto=entry.protocol,
                    )
            except NetlinkError as error:
                ignored = _IGNORED_ON_ADD if command == "add" else _IGNORED_ON_REMOVE
                if error.code not in ignored:
                    raise HostRulesError(f"{command} {_describe(entry)}: {error}") from None
            target: set[Any] = rules if isinstance(entry, Rule) else routes
            (target.add if command == "add" else target.discard)(entry)
        self._held = HostState(frozenset(rules), frozenset(routes))


def _describe(entry: Rule | LocalRoute) -> str:
    if isinstance(entry, Rule):
        return (
            f"rule 'to {entry.destination} lookup {entry.table}"
            f" priority {entry.priority} proto {entry.protocol}'"
        )
    return f"route 'local {entry.destination} dev lo table {entry.table} proto {entry.protocol}'"


def _table(msg: Any, attr: str) -> int:
    table = msg.get_attr(attr)
    return int(table if table is not None else msg["table"])


def _rule_from_message(msg: Any) -> Rule | None:
    destination = msg.get_attr("FRA_DST")
    if destination is None:
        return None  # porter-lb's rules always name a destination
    return Rule(
        str(ipaddress.ip_network(f"{destination}/{msg['dst_len']}", strict=False)),
        _table(msg, "FRA_TABLE"),
        int(msg.get_attr("FRA_PRIORITY") or 0),
        int(msg.get_attr("FRA_PROTOCOL") or 0),
    )


def _route_from_message(msg: Any, version: int) -> LocalRoute | None:
    if msg["type"] != _RTN_LOCAL:
        return None
    destination = msg.get_attr("RTA_DST") or _DEFAULT_DESTINATION[version].split("/")[0]
    return LocalRoute(
        str(ipaddress.ip_network(f"{destination}/{msg['dst_len']}", strict=False)),
        _table(msg, "RTA_TABLE"),
        int(msg["proto"]),
    )


# --- the agent's options -------------------------------------------------------------------------


def add_host_rule_options(parser: argparse.ArgumentParser) -> None:
    """`porter-lb agent`'s host-rule options (see docs/agent.md)."""
    parser.add_argument(
        "--host-rules",
        choices=MODES,
        default=os.environ.get("PORTER_LB_HOST_RULES", "off"),
        help="how this node accepts the EIPs it announces: an ip rule per EIP to a table with"
        " a local default route (table), a local route per EIP (local), or not at all (off:"
        " kube-proxy accepts them) (default: $PORTER_LB_HOST_RULES or %(default)s)",
    )
    parser.add_argument(
        "--host-rules-table",
        type=int,
        default=DEFAULT_TABLE,
        help="routing table of mode table (default: %(default)s)",
    )
    parser.add_argument(
        "--host-rules-priority",
        type=int,
        default=DEFAULT_PRIORITY,
        help="priority of the ip rules of mode table (default: %(default)s)",
    )
    parser.add_argument(
        "--host-rules-protocol",
        type=int,
        default=DEFAULT_PROTOCOL,
        help="protocol number marking porter-lb's rules and routes (default: %(default)s)",
    )
    parser.add_argument(
        "--netns",
        default="",
        help="network namespace holding the node's interfaces, rules and routes: a name under"
        " /run/netns or an absolute path (default: the agent's own; the lab runs agents in the"
        " host's)",
    )


def host_rules_from_args(args: argparse.Namespace) -> HostRules | None:
    """The agent's HostRules (None with `--host-rules off`), its settings checked: each
    problem is logged as a warning naming the sysctl and the value wanted.

    Raises ValueError for bad numbers and HostRulesError when the namespace cannot be
    entered or read.
    """
    config = HostRulesConfig(
        args.host_rules, args.host_rules_table, args.host_rules_priority, args.host_rules_protocol
    )
    if config.mode == "off":
        return None
    rules = HostRules(config, netns=args.netns, node=args.node)
    try:
        problems = rules.check_settings()
    except Exception:
        rules.close()
        raise
    for name, message in sorted(problems.items()):
        log.warning("host setting: %s", message, extra={"sysctl": name, "netns": args.netns})
    log.info(
        "host rules on",
        extra={
            "mode": config.mode,
            "table": config.table,
            "priority": config.priority,
            "protocol": config.protocol,
            "netns": args.netns,
        },
    )
    return rules
