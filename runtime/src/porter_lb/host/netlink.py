"""The node's netlink adapter (pyroute2), the one place porter-lb talks netlink:

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
    destination = msg.get_attr("RTA_DST") or DEFAULT_DESTINATION[version].split("/")[0]
    return LocalRoute(
        str(ipaddress.ip_network(f"{destination}/{msg['dst_len']}", strict=False)),
        _table(msg, "RTA_TABLE"),
        int(msg["proto"]),
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
    """The node's interfaces and routes, read over netlink inside `netns` (pyroute2)."""

    def __init__(self, netns: str) -> None:
        from pyroute2 import IPRoute

        self.netns = netns
        with entered(netns):
            self._ipr = IPRoute()  # the netlink socket stays in the namespace it was made in

    def close(self) -> None:
        self._ipr.close()

    def all(self) -> dict[str, Link]:
        local: dict[int, str] = {}
        for address in self._ipr.get_addr(family=socket.AF_INET6):
            if address.get("scope") == 253 and address["index"] not in local:
                local[address["index"]] = str(address.get_attr("IFA_ADDRESS"))
        found: dict[str, Link] = {}
        for message in self._ipr.get_links():
            name = str(message.get_attr("IFLA_IFNAME"))
            mac_text = message.get_attr("IFLA_ADDRESS") or ""
            flags = int(message.get("flags", 0))
            try:
                mac = bytes.fromhex(str(mac_text).replace(":", ""))
            except ValueError:
                continue
            found[name] = Link(
                name=name,
                index=int(message["index"]),
                mac=mac,
                running=bool(flags & _IFF_UP) and bool(flags & (_IFF_LOWER_UP | _IFF_RUNNING)),
                link_local=local.get(int(message["index"]), ""),
            )
        return found

    def toward(self, ip: str, links: Mapping[str, Link]) -> str | None:
        """The interface the routing table sends packets for `ip` out of (None: no route)."""
        try:
            routes = self._ipr.route("get", dst=ip)
        except Exception:  # noqa: BLE001 - unreachable: no interface
            return None
        if not routes:
            return None
        index = routes[0].get_attr("RTA_OIF")
        return next((link.name for link in links.values() if link.index == index), None)

    def sysctl(self, key: str) -> str | None:
        with entered(self.netns):
            try:
                with open(f"/proc/sys/{key.replace('.', '/')}") as file:
                    return file.read().strip()
            except OSError:
                return None
