"""The node's netlink adapter (porter_lb.host.rtnl), the one place porter-lb talks netlink:

* `HostRules` keeps the kernel's rules and local routes equal to what
  `porter_lb.host.acceptance` says the node must accept (for BGP and layer-2 EIPs);
* `Links` reads the node's interfaces and routes for the layer-2 announcer.

Both work inside a node's network namespace (`porter_lb.host.netns`) when given one.
"""

from __future__ import annotations

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
from typing import Any, TypeVar

from porter_lb.host.acceptance import (
    DEFAULT_DESTINATION,
    HostDelta,
    HostRulesConfig,
    HostRulesError,
    HostState,
    LocalRoute,
    Rule,
    accepted_prefixes,
    canonical_host_prefix,
    desired_state,
    host_delta,
    owned_state,
    setting_problems,
    settings_to_read,
)
from porter_lb.host.netns import entered, netns_path
from porter_lb.host.rtnl import NetlinkError, Route, Rtnl, RuleEntry, route_body, rule_body
from porter_lb.telemetry import metrics

log = logging.getLogger(__name__)

_IFF_UP = 0x1
_IFF_RUNNING = 0x40
_IFF_LOWER_UP = 0x10000


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

    Every netlink call runs on ONE worker thread, which owns the socket. With `netns` (a
    name under /run/netns, or an absolute path: `porter_lb.host.netns`) that thread enters
    the namespace before anything else, so the agent can run in the host's namespace and
    program a node namespace (the lab); the rest of the process stays where it is. The
    sysctl checks read /proc/sys from the same thread, so they see the namespace's values.
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
    _ipr: Rtnl | None = field(default=None, init=False)
    _lo: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-rules")

    # Public API: any thread.

    def sync(self, prefixes: Iterable[str], source: str = "bgp") -> None:
        """Accept exactly the union of every source's prefixes; raise HostRulesError."""
        if self.config.mode == "off":
            return
        with self._lock:
            self._wanted[source] = frozenset(canonical_host_prefix(p) for p in prefixes)
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

    def _socket(self) -> Rtnl:
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
            try:
                self._lo = socket.if_nametoindex("lo")
            except OSError:
                raise HostRulesError("no 'lo' interface: local routes need it") from None
            self._ipr = Rtnl()  # requests only: no multicast groups joined
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
        ipr = self._socket()
        rules: list[Rule] = []
        routes: list[LocalRoute] = []
        try:
            for version, family in _AF.items():
                for entry in ipr.rules(family):
                    rule = _rule_from_entry(entry)
                    if rule is not None:
                        rules.append(rule)
                for read in ipr.routes(family):
                    route = _route_from_entry(read, version)
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
            family, dst = _AF[network.version], str(network.network_address)
            try:
                if isinstance(entry, Rule):
                    body = rule_body(
                        family,
                        dst,
                        network.prefixlen,
                        table=entry.table,
                        priority=entry.priority,
                        protocol=entry.protocol,
                    )
                    ipr.change_rule(command == "add", body, f"{command} {_describe(entry)}")
                else:
                    body = route_body(
                        family,
                        dst,
                        network.prefixlen,
                        table=entry.table,
                        protocol=entry.protocol,
                        scope=_RT_SCOPE_HOST,
                        kind=_RTN_LOCAL,
                        oif=self._lo,
                    )
                    ipr.change_route(command == "add", body, f"{command} {_describe(entry)}")
            except NetlinkError as error:
                ignored = _IGNORED_ON_ADD if command == "add" else _IGNORED_ON_REMOVE
                if error.code not in ignored:
                    raise HostRulesError(error.args[1]) from None
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


def _rule_from_entry(entry: RuleEntry) -> Rule | None:
    if entry.dst is None:
        return None  # porter-lb's rules always name a destination
    return Rule(
        str(ipaddress.ip_network(f"{entry.dst}/{entry.dst_len}", strict=False)),
        entry.table,
        entry.priority,
        entry.protocol,
    )


def _route_from_entry(route: Route, version: int) -> LocalRoute | None:
    if route.type != _RTN_LOCAL:
        return None
    destination = route.dst or DEFAULT_DESTINATION[version].split("/")[0]
    return LocalRoute(
        str(ipaddress.ip_network(f"{destination}/{route.dst_len}", strict=False)),
        route.table,
        route.protocol,
    )


@dataclass(frozen=True)
class Link:
    """An interface of the node, as the responder needs it."""

    name: str
    index: int
    mac: bytes
    running: bool
    link_local: str = ""  # an fe80:: address, the source of advertisements


class Links:
    """The node's interfaces and routes, read over netlink inside `netns`."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        with entered(netns):
            self._ipr = Rtnl()  # the netlink socket stays in the namespace it was made in

    def close(self) -> None:
        self._ipr.close()

    def all(self) -> dict[str, Link]:
        local: dict[int, str] = {}
        for address in self._ipr.addresses(socket.AF_INET6):
            if address.scope == 253 and address.index not in local:
                local[address.index] = address.address
        found: dict[str, Link] = {}
        for link in self._ipr.links():
            flags = link.flags
            found[link.name] = Link(
                name=link.name,
                index=link.index,
                mac=link.address,
                running=bool(flags & _IFF_UP) and bool(flags & (_IFF_LOWER_UP | _IFF_RUNNING)),
                link_local=local.get(link.index, ""),
            )
        return found

    def toward(self, ip: str, links: Mapping[str, Link]) -> str | None:
        """The interface the routing table sends packets for `ip` out of (None: no route)."""
        try:
            route = self._ipr.route_get(ip)
        except OSError:  # unreachable: no interface
            return None
        if route is None:
            return None
        return next((link.name for link in links.values() if link.index == route.oif), None)

    def sysctl(self, key: str) -> str | None:
        with entered(self.netns):
            try:
                with open(f"/proc/sys/{key.replace('.', '/')}") as file:
                    return file.read().strip()
            except OSError:
                return None
