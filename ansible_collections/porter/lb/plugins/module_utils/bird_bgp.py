# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""The cluster-facing BGP configuration of a BIRD 2 router: model, renderer, parser.

``BirdBgpConfig`` describes what a router facing a porter-lb cluster needs:

* its local AS and (optionally) router id;
* the neighbours: a static list of nodes / central speakers, and/or one
  ``neighbor range`` (BIRD's dynamic BGP: any peer inside the prefix may connect);
* ADD-PATH receive (a central speaker sends one path per node);
* an import filter that accepts only host routes (/32, /128) inside the EIP pools,
  and exports nothing to the cluster;
* a kernel protocol per address family exporting the BGP routes with
  ``merge paths on limit N`` so the kernel gets ECMP routes;
* session timers and an optional TCP-MD5 password;
* per neighbour, the neighbour's TCP port (when not 179) and BFD with its timers, run by a
  ``protocol bfd porter_bfd`` the file holds while any neighbour uses BFD.

``render(config)`` writes one BIRD configuration file, meant to be included from the main
``bird.conf``; ``parse(text)`` reads such a file back, and ``parse(render(c)) == c`` for every
valid ``c``.  Both follow ``TABLE``, the parser table (one entry per line shape; see
config_lines.py).  The file format is owned by this module: the parser accepts exactly what
the renderer writes (plus blank lines and comments) and raises ``BirdBgpConfigError`` for
anything else, so a hand-edited file is reported rather than silently misread.  ``RULES``
are bird_bgp's answers to the shared resource states (network_resource.py); the live
sessions are read by bird_sessions.py.

Pure Python: standard library only, no I/O, no Ansible imports.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

from ansible_collections.porter.lb.plugins.module_utils import (
    bgp_session,
    config_lines,
    network_resource,
)
from ansible_collections.porter.lb.plugins.module_utils.bird_sessions import (
    Session,
    parse_show_protocols_all,
)

__all__ = [
    "HEADER",
    "RULES",
    "TABLE",
    "BirdBgpConfig",
    "BirdBgpConfigError",
    "Neighbor",
    "NeighborRange",
    "Session",
    "Timers",
    "config_from_dict",
    "parse",
    "parse_show_protocols_all",
    "render",
]

HEADER = "# Managed by porter.lb.bird_bgp: changes made here are overwritten."
FILTER_NAME = "porter_eip_pools"
TEMPLATE_NAME = "porter_cluster"
KERNEL_NAMES = {4: "porter_kernel4", 6: "porter_kernel6"}
BFD_NAME = "porter_bfd"
Bfd = bgp_session.Bfd
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_AS = 4294967295


class BirdBgpConfigError(ValueError):
    """Invalid BGP configuration: names the option, the value and the rule broken."""

    def __init__(self, option: str, value: object, rule: str) -> None:
        self.option = option
        self.value = value
        self.rule = rule
        super().__init__("%s %r: %s" % (option, value, rule))


@dataclasses.dataclass(frozen=True)
class Neighbor:
    """One static BGP peer; ``name`` becomes the BIRD protocol name.  ``port``: the
    neighbour's TCP port; ``bfd``: BFD for the session."""

    name: str
    address: str
    asn: int
    port: int = bgp_session.DEFAULT_PORT
    bfd: Bfd = bgp_session.BFD_OFF

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "address": self.address,
            "as": self.asn,
            "port": self.port,
            "bfd": self.bfd.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class NeighborRange:
    """A dynamic peer: any speaker inside ``prefix`` with AS ``asn`` may open a session.

    BIRD names the spawned sessions ``<name>1``, ``<name>2``, ... (``dynamic name``).  It
    has no port: BIRD only accepts these sessions (on its own port), it never connects.
    """

    name: str
    prefix: str
    asn: int
    bfd: Bfd = bgp_session.BFD_OFF

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "prefix": self.prefix, "as": self.asn, "bfd": self.bfd.to_dict()}


@dataclasses.dataclass(frozen=True)
class Timers:
    """BGP session timers, in seconds (BIRD's ``hold time``, ``keepalive time``,
    ``connect retry time`` and ``error wait time MIN, MAX``)."""

    hold: int = 9
    keepalive: int = 3
    connect_retry: int = 1
    error_wait_min: int = 1
    error_wait_max: int = 5

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BirdBgpConfig:
    local_as: int
    pools: tuple[str, ...]
    neighbors: tuple[Neighbor, ...] = ()
    neighbor_range: NeighborRange | None = None
    router_id: str | None = None
    add_paths_rx: bool = False
    merge_paths_limit: int = 16
    timers: Timers = Timers()
    password: str | None = None

    def __post_init__(self) -> None:
        validate(self)

    @property
    def uses_bfd(self) -> bool:
        sessions = (*self.neighbors, *([self.neighbor_range] if self.neighbor_range else []))
        return any(session.bfd.enabled for session in sessions)

    @property
    def families(self) -> tuple[int, ...]:
        return tuple(sorted({ipaddress.ip_network(p).version for p in self.pools}))

    def to_dict(self) -> dict[str, object]:
        return {
            "local_as": self.local_as,
            "router_id": self.router_id,
            "neighbors": [n.to_dict() for n in self.neighbors],
            "neighbor_range": self.neighbor_range.to_dict() if self.neighbor_range else None,
            "pools": list(self.pools),
            "add_paths_rx": self.add_paths_rx,
            "merge_paths_limit": self.merge_paths_limit,
            "timers": self.timers.to_dict(),
            "password": self.password,
        }


def _check_as(option: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_AS:
        raise BirdBgpConfigError(option, value, "must be an AS number from 1 to %d" % _MAX_AS)
    return value


def _check_name(option: str, value: str) -> None:
    if not _NAME.match(value or "") or value.startswith("porter_"):
        raise BirdBgpConfigError(
            option,
            value,
            "must be a BIRD protocol name (a letter or '_', then letters, digits or '_'),"
            " not starting with the reserved 'porter_'",
        )


def validate(config: BirdBgpConfig) -> None:
    """Raise BirdBgpConfigError for the first rule ``config`` breaks."""
    _check_as("local_as", config.local_as)
    _validate_router_id(config)
    _validate_pools(config)
    _validate_neighbors(config)
    if not 1 <= config.merge_paths_limit <= 255:
        raise BirdBgpConfigError(
            "merge_paths_limit", config.merge_paths_limit, "must be from 1 to 255"
        )
    _validate_timers(config.timers)
    _validate_password(config.password)


def _validate_router_id(config: BirdBgpConfig) -> None:
    if config.router_id is not None:
        try:
            ipaddress.IPv4Address(config.router_id)
        except ValueError:
            raise BirdBgpConfigError(
                "router_id", config.router_id, "must be an IPv4 address"
            ) from None
        if config.router_id == "0.0.0.0":
            raise BirdBgpConfigError("router_id", config.router_id, "must not be 0.0.0.0")


def _validate_pools(config: BirdBgpConfig) -> None:
    if not config.pools:
        raise BirdBgpConfigError("pools", list(config.pools), "at least one EIP pool is required")
    for pool in config.pools:
        try:
            network = ipaddress.ip_network(pool)
        except ValueError:
            raise BirdBgpConfigError(
                "pools", pool, "must be an IPv4 or IPv6 CIDR with no host bits set"
            ) from None
        if str(network) != pool:
            raise BirdBgpConfigError("pools", pool, "must be written canonically as %s" % network)
    if len(set(config.pools)) != len(config.pools):
        raise BirdBgpConfigError("pools", list(config.pools), "must not repeat a pool")


def _validate_neighbors(config: BirdBgpConfig) -> None:
    if not config.neighbors and config.neighbor_range is None:
        raise BirdBgpConfigError("neighbors", [], "give at least one neighbour or a neighbor_range")
    names: set[str] = set()
    families = set(config.families)
    for index, neighbor in enumerate(config.neighbors):
        option = "neighbors[%d]" % index
        _check_name(option + ".name", neighbor.name)
        if neighbor.name in names:
            raise BirdBgpConfigError(option + ".name", neighbor.name, "names must be unique")
        names.add(neighbor.name)
        try:
            address = ipaddress.ip_address(neighbor.address)
        except ValueError:
            raise BirdBgpConfigError(
                option + ".address", neighbor.address, "must be an IPv4 or IPv6 address"
            ) from None
        if str(address) != neighbor.address:
            raise BirdBgpConfigError(
                option + ".address", neighbor.address, "must be written as %s" % address
            )
        if address.version not in families:
            raise BirdBgpConfigError(
                option + ".address",
                neighbor.address,
                "no EIP pool of IPv%d: the session would carry no routes" % address.version,
            )
        _check_as(option + ".as", neighbor.asn)
        bgp_session.port(BirdBgpConfigError, option + ".port", neighbor.port)
        bgp_session.bfd_from_dict(BirdBgpConfigError, option + ".bfd", neighbor.bfd)
    if config.neighbor_range is not None:
        _validate_neighbor_range(config.neighbor_range, names, families)


def _validate_neighbor_range(dynamic: NeighborRange, names: set[str], families: set[int]) -> None:
    _check_name("neighbor_range.name", dynamic.name)
    if dynamic.name in names:
        raise BirdBgpConfigError(
            "neighbor_range.name", dynamic.name, "is also the name of a neighbour"
        )
    try:
        network = ipaddress.ip_network(dynamic.prefix)
    except ValueError:
        raise BirdBgpConfigError(
            "neighbor_range.prefix", dynamic.prefix, "must be a CIDR with no host bits set"
        ) from None
    if str(network) != dynamic.prefix:
        raise BirdBgpConfigError(
            "neighbor_range.prefix", dynamic.prefix, "must be written as %s" % network
        )
    if network.version not in families:
        raise BirdBgpConfigError(
            "neighbor_range.prefix", dynamic.prefix, "no EIP pool of its IP family"
        )
    _check_as("neighbor_range.as", dynamic.asn)
    bgp_session.bfd_from_dict(BirdBgpConfigError, "neighbor_range.bfd", dynamic.bfd)


def _validate_timers(timers: Timers) -> None:
    if not (timers.hold == 0 or 3 <= timers.hold <= 65535):
        raise BirdBgpConfigError("timers.hold", timers.hold, "must be 0 or from 3 to 65535")
    if not 1 <= timers.keepalive <= 65535 or (timers.hold and timers.keepalive >= timers.hold):
        raise BirdBgpConfigError(
            "timers.keepalive", timers.keepalive, "must be from 1 to 65535 and below timers.hold"
        )
    if not 1 <= timers.connect_retry <= 65535:
        raise BirdBgpConfigError(
            "timers.connect_retry", timers.connect_retry, "must be from 1 to 65535"
        )
    if not 1 <= timers.error_wait_min <= timers.error_wait_max <= 65535:
        raise BirdBgpConfigError(
            "timers.error_wait_min",
            (timers.error_wait_min, timers.error_wait_max),
            "must satisfy 1 <= error_wait_min <= error_wait_max <= 65535",
        )


def _validate_password(password: str | None) -> None:
    if password is not None and (
        not password
        or '"' in password
        or "\\" in password
        or password.splitlines() != [password]  # "\r", "\x85" ... end a line too
        or len(password) > 80
    ):
        raise BirdBgpConfigError(
            "password",
            "********",
            "must be 1 to 80 characters without double quotes, backslashes or newlines",
        )


def config_from_dict(data: dict[str, object]) -> BirdBgpConfig:
    """Build a config from plain data in the module's option shape (``as`` for AS numbers)."""

    def as_of(item: dict[str, object], option: str) -> int:
        value = item.get("as", item.get("asn"))
        return _check_as(option, value)

    neighbors = []
    for index, item in enumerate(_list(data.get("neighbors"))):
        option = "neighbors[%d]" % index
        if not isinstance(item, dict):
            raise BirdBgpConfigError(option, item, "must be a dict with name, address and as")
        neighbors.append(
            Neighbor(
                str(item.get("name")),
                str(item.get("address")),
                as_of(item, option + ".as"),
                bgp_session.port(BirdBgpConfigError, option + ".port", item.get("port")),
                bgp_session.bfd_from_dict(BirdBgpConfigError, option + ".bfd", item.get("bfd")),
            )
        )
    dynamic = data.get("neighbor_range")
    neighbor_range = None
    if dynamic is not None:
        if not isinstance(dynamic, dict):
            raise BirdBgpConfigError("neighbor_range", dynamic, "must be a dict")
        neighbor_range = NeighborRange(
            str(dynamic.get("name") or "dynamic"),
            str(dynamic.get("prefix")),
            as_of(dynamic, "neighbor_range.as"),
            bgp_session.bfd_from_dict(BirdBgpConfigError, "neighbor_range.bfd", dynamic.get("bfd")),
        )
    timers_data = data.get("timers") or {}
    if not isinstance(timers_data, dict):
        raise BirdBgpConfigError("timers", timers_data, "must be a dict")
    timers = Timers(**{k: int(v) for k, v in timers_data.items() if v is not None})
    local_as = data.get("local_as")
    limit = data.get("merge_paths_limit")
    return BirdBgpConfig(
        local_as=_check_as("local_as", local_as),
        router_id=_opt_str(data.get("router_id")),
        neighbors=tuple(neighbors),
        neighbor_range=neighbor_range,
        pools=tuple(str(p) for p in _list(data.get("pools"))),
        add_paths_rx=bool(data.get("add_paths_rx")),
        merge_paths_limit=16 if limit is None else int(str(limit)),
        timers=timers,
        password=_opt_str(data.get("password")),
    )


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


# --- the parser table --------------------------------------------------------------------------


def _host_len(version: int) -> int:
    return 32 if version == 4 else 128


def _define(config: BirdBgpConfig, version: int) -> str:
    pools = [p for p in config.pools if ipaddress.ip_network(p).version == version]
    host = _host_len(version)
    items = ", ".join("%s{%d,%d}" % (p, host, host) for p in pools)
    return "define %s_v%d = [ %s ];" % (FILTER_NAME, version, items)


def _channel(config: BirdBgpConfig, version: int) -> str:
    add_paths = " add paths rx;" if config.add_paths_rx else ""
    return "  ipv%d { import filter %s; export none;%s };" % (version, FILTER_NAME, add_paths)


def _fixed(name: str, text: str, each: str = "config") -> config_lines.Line:
    """A line the file always holds as `text` (indented as written); it owns no field."""
    pattern = "^%s$" % re.escape(text.strip()) if text.strip() else "^$"
    return _line(name, "file", pattern, lambda c, _: text, each=each, read=lambda m: {})


_KERNEL_CHANNEL = (
    "  ipv%d { import none; export filter { if source = RTS_BGP then accept; reject; }; };"
)
_line, _when = config_lines.line, config_lines.when

# a session's BFD, inside its protocol line; BIRD's own defaults differ from porter-lb's
# (min rx 10 ms, min tx 100 ms, multiplier 5), so the timers are always written
_BFD = " bfd { min rx interval %d ms; min tx interval %d ms; multiplier %d; };"
_BFD_RE = r"(?: bfd \{ min rx interval (\d+) ms; min tx interval (\d+) ms; multiplier (\d+); \};)?"


def _bfd_text(bfd: Bfd) -> str:
    if not bfd.enabled:
        return ""
    return _BFD % (bfd.receive_interval, bfd.transmit_interval, bfd.detect_multiplier)


def _bfd_read(rx: str | None, tx: str | None, multiplier: str | None) -> Bfd:
    if rx is None:
        return bgp_session.BFD_OFF
    return Bfd(True, int(str(tx)), int(rx), int(str(multiplier)))


def _neighbor_text(config: BirdBgpConfig, n: Neighbor) -> str:
    port = "" if n.port == bgp_session.DEFAULT_PORT else " port %d" % n.port
    return "protocol bgp %s from %s { neighbor %s%s as %d;%s }" % (
        n.name,
        TEMPLATE_NAME,
        n.address,
        port,
        n.asn,
        _bfd_text(n.bfd),
    )


def _neighbor_read(m: re.Match[str]) -> dict[str, object]:
    port = bgp_session.DEFAULT_PORT if m[3] is None else int(m[3])
    bfd = _bfd_read(m[5], m[6], m[7])
    return {"neighbors": (Neighbor(m[1], m[2], int(m[4]), port, bfd),)}


def _range_text(config: BirdBgpConfig, r: NeighborRange) -> str:
    return 'protocol bgp %s from %s { neighbor range %s as %d; dynamic name "%s";%s }' % (
        r.name,
        TEMPLATE_NAME,
        r.prefix,
        r.asn,
        r.name,
        _bfd_text(r.bfd),
    )


def _range_read(m: re.Match[str]) -> dict[str, object]:
    bfd = _bfd_read(m[5], m[6], m[7])
    return {"neighbor_range": (NeighborRange(m[1], m[2], int(m[3]), bfd),)}


# The file is owned whole, so each line of it is an entry (the closing braces and blank lines
# once per place); the parser reads a line on its own, whatever block it is in.
_ITEMS = {
    "family": lambda c: c.families,
    "define": lambda c: c.families,
    "neighbor": lambda c: c.neighbors,
    "neighbor_range": lambda c: [c.neighbor_range] if c.neighbor_range else [],
    "bfd": lambda c: [c] if c.uses_bfd else [],
}

# fmt: off
TABLE = config_lines.Table([
    _line("header", "file", r"^# Managed by porter\.lb\.bird_bgp", lambda c, _: HEADER),
    _line("router_id", "file", r"^router id (?P<router_id>\S+);$",
          lambda c, _: _when(c.router_id, "router id %s;", c.router_id), fields=("router_id",)),
    _fixed("blank_top", ""),
    # per IP family: a kernel protocol exporting the BGP routes, ECMP merged
    _line("kernel", "file", r"^protocol kernel porter_kernel([46]) \{$",
          lambda c, v: "protocol kernel %s {" % KERNEL_NAMES[v], each="family",
          read=lambda m: {}),
    _line("kernel_channel", "file", r"^ipv([46]) \{ import none; export filter \{ if source = "
          r"RTS_BGP then accept; reject; \}; \};$",
          lambda c, v: _KERNEL_CHANNEL % v, each="family", read=lambda m: {}),
    _line("merge_paths", "file", r"^merge paths on limit (?P<merge_paths_limit>\d+);$",
          lambda c, _: "  merge paths on limit %d;" % c.merge_paths_limit, each="family",
          read=config_lines.ints("merge_paths_limit"), fields=("merge_paths_limit",)),
    _fixed("netlink", "  netlink rx buffer 16777216;", each="family"),
    _fixed("kernel_end", "}", each="family"),
    _fixed("blank_kernel", "", each="family"),
    # BFD, while a session uses it (the sessions' lines hold their timers)
    _fixed("bfd", "protocol bfd %s {}" % BFD_NAME, each="bfd"),
    _fixed("blank_bfd", "", each="bfd"),
    # the pools, and the filter accepting their host routes
    _line("pools", "file", r"^define %s_v([46]) = \[ (?P<pools>.*) \];$" % FILTER_NAME,
          _define, each="define", read=lambda m: {"pools": (m["pools"],)}, fields=("pools",)),
    _fixed("filter", "filter %s {" % FILTER_NAME),
    _line("filter_rule", "file",
          r"^if net\.type = NET_IP([46]) && net ~ %s_v\1 then accept;$" % FILTER_NAME,
          lambda c, v: "  if net.type = NET_IP%d && net ~ %s_v%d then accept;"
          % (v, FILTER_NAME, v), each="define", read=lambda m: {}),
    _fixed("reject", "  reject;"),
    _fixed("filter_end", "}"),
    _fixed("blank_filter", ""),
    # the template every session is made from
    _fixed("template", "template bgp %s {" % TEMPLATE_NAME),
    _line("local_as", "file", r"^local as (?P<local_as>\d+);$",
          lambda c, _: "  local as %d;" % c.local_as, fields=("local_as",)),
    _line("hold", "file", r"^hold time (?P<hold>\d+);$",
          lambda c, _: "  hold time %d;" % c.timers.hold, fields=("timers",)),
    _line("keepalive", "file", r"^keepalive time (?P<keepalive>\d+);$",
          lambda c, _: "  keepalive time %d;" % c.timers.keepalive, fields=("timers",)),
    _line("connect_retry", "file", r"^connect retry time (?P<connect_retry>\d+);$",
          lambda c, _: "  connect retry time %d;" % c.timers.connect_retry, fields=("timers",)),
    _line("error_wait", "file",
          r"^error wait time (?P<error_wait_min>\d+), (?P<error_wait_max>\d+);$",
          lambda c, _: "  error wait time %d, %d;"
          % (c.timers.error_wait_min, c.timers.error_wait_max),
          fields=("timers",)),
    _line("password", "file", r'^password "(?P<password>[^"\\]*)";$',
          lambda c, _: _when(c.password, '  password "%s";', c.password), fields=("password",)),
    _line("channel", "file",
          r"^ipv([46]) \{ import filter %s; export none;( add paths rx;)? \};$" % FILTER_NAME,
          _channel, each="family", read=lambda m: {"add_paths_rx": (bool(m[2]),)},
          fields=("add_paths_rx",)),
    _fixed("template_end", "}"),
    _fixed("blank_template", ""),
    # the sessions
    _line("neighbor", "file",
          r"^protocol bgp (\w+) from %s \{ neighbor (\S+)(?: port (\d+))? as (\d+);%s \}$"
          % (TEMPLATE_NAME, _BFD_RE),
          _neighbor_text, each="neighbor", read=_neighbor_read, fields=("neighbors",)),
    _line("neighbor_range", "file",
          r"^protocol bgp (\w+) from %s \{ neighbor range (\S+) as (\d+);"
          r' dynamic name "(\w+)";%s \}$' % (TEMPLATE_NAME, _BFD_RE),
          _range_text, each="neighbor_range", read=_range_read, fields=("neighbor_range",)),
], _ITEMS)
# fmt: on
"""The file's lines, one entry per line shape, in the order the file holds them."""


# --- rendering ---------------------------------------------------------------------------------


def render(config: BirdBgpConfig) -> str:
    """The BIRD configuration text for ``config`` (one file, included from bird.conf)."""
    validate(config)
    return "\n".join(line for _view, line in TABLE.render(config)) + "\n"


def redact(text: str) -> str:
    """``text`` with any rendered password replaced by asterisks (for diffs and logs)."""
    return re.sub(r'(^\s*password ")[^"]*(";)', r"\1********\2", text, flags=re.MULTILINE)


# --- parsing -----------------------------------------------------------------------------------

_POOL = re.compile(r"^(\S+)\{(\d+),(\d+)\}$")


def _statements(text: str) -> list[tuple[dict[str, Any], int]]:
    """The values each statement of ``text`` holds, with its line number; unknown lines
    raise."""
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        hit = TABLE.match("file", line)
        if hit is None:
            raise BirdBgpConfigError(
                "line %d" % number, line, "is not a statement porter.lb.bird_bgp writes"
            )
        found.append((hit[0].values(hit[1]), number))
    return found


def _pools_of(items: str, number: int) -> list[str]:
    pools = []
    for item in items.split(", "):
        pool = _POOL.match(item.strip())
        if not pool:
            raise BirdBgpConfigError("line %d" % number, item, "is not POOL{LEN,LEN}")
        pools.append(pool.group(1))
    return pools


def parse(text: str) -> BirdBgpConfig:
    """Read a file written by ``render`` back into the model (``parse(render(c)) == c``)."""
    statements = _statements(text)
    one: dict[str, Any] = {}
    for values, _number in statements:
        config_lines.apply(one, values)
    if "local_as" not in one:
        raise BirdBgpConfigError("text", "", "has no 'local as' statement")
    add_paths = set(one.get("add_paths_rx", ()))
    if len(add_paths) > 1:
        raise BirdBgpConfigError("text", "", "channels disagree about 'add paths rx'")
    timers = {k: int(v) for k, v in one.items() if k in _TIMERS}
    ranges = one.get("neighbor_range", ())
    if len(ranges) > 1:
        raise BirdBgpConfigError("text", "", "has more than one neighbor range")
    return BirdBgpConfig(
        local_as=int(one["local_as"]),
        router_id=one.get("router_id"),
        neighbors=one.get("neighbors", ()),
        neighbor_range=ranges[0] if ranges else None,
        pools=tuple(
            pool
            for values, number in statements
            for items in values.get("pools", ())
            for pool in _pools_of(items, number)
        ),
        add_paths_rx=add_paths == {True},
        merge_paths_limit=int(one.get("merge_paths_limit", 16)),
        timers=Timers(**timers),
        password=one.get("password"),
    )


_TIMERS = ("hold", "keepalive", "connect_retry", "error_wait_min", "error_wait_max")


# --- resource-module states --------------------------------------------------------------------


def _given(data: object) -> dict[str, object]:
    return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else {}


class _StateRules(network_resource.StateRules):
    """bird_bgp's answers to the shared states (network_resource): neighbours matched by name
    and replaced whole, pools added, timers merged; ``replaced`` keeps the options it does
    not give; ``deleted`` may remove the neighbor_range, and nothing left is no file."""

    key = "name"
    whole_items = True
    keep_unset = True
    removable = ("neighbor_range",)

    def validate(self, data, partial=False):
        return config_from_dict(data)

    def merge_option(self, name, old, new):
        if name == "pools":
            pools = [str(p) for p in _list(old)]
            return pools + [str(p) for p in _list(new) if str(p) not in pools]
        if name == "timers" and isinstance(new, dict):
            return {**_given(old), **_given(new)}
        return new

    def is_empty(self, data):
        return not data["neighbors"] and data["neighbor_range"] is None

    def render(self, config):
        return render(config)

    def parse(self, text):
        return parse(text)


RULES = _StateRules()


def merge_config(have: BirdBgpConfig | None, want: dict[str, object]) -> BirdBgpConfig:
    """``merged``: ``want`` on top of ``have``; neighbours are matched by name (a given one
    replaces the one of the same name, others are kept), pools are added, timers merged."""
    return network_resource.merged(RULES, have, want)


def replace_config(have: BirdBgpConfig | None, want: dict[str, object]) -> BirdBgpConfig:
    """``replaced``: every option given in ``want`` replaces the existing value as a whole
    (the neighbour list, the pools, all timers); options not given are kept."""
    return network_resource.replaced(RULES, have, want)


def override_config(want: dict[str, object]) -> BirdBgpConfig:
    """``overridden``: the configuration becomes exactly ``want`` (defaults for the rest)."""
    return network_resource.overridden(RULES, want)


def delete_config(have: BirdBgpConfig | None, want: dict[str, object]) -> BirdBgpConfig | None:
    """``deleted``: with neighbours or a neighbor_range named in ``want``, remove just those;
    otherwise remove the whole configuration (None)."""
    return network_resource.deleted(RULES, have, want)
