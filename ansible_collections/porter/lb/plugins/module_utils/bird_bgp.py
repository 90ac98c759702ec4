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
* session timers and an optional TCP-MD5 password.

``render(config)`` writes one BIRD configuration file, meant to be included from the main
``bird.conf``; ``parse(text)`` reads such a file back, and ``parse(render(c)) == c`` for every
valid ``c``.  The file format is owned by this module: the parser accepts exactly what the
renderer writes (plus blank lines and comments) and raises ``BirdBgpConfigError`` for anything
else, so a hand-edited file is reported rather than silently misread.

Pure Python: standard library only, no I/O, no Ansible imports.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

__all__ = [
    "HEADER",
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
    """One static BGP peer; ``name`` becomes the BIRD protocol name."""

    name: str
    address: str
    asn: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "address": self.address, "as": self.asn}


@dataclasses.dataclass(frozen=True)
class NeighborRange:
    """A dynamic peer: any speaker inside ``prefix`` with AS ``asn`` may open a session.

    BIRD names the spawned sessions ``<name>1``, ``<name>2``, ... (``dynamic name``).
    """

    name: str
    prefix: str
    asn: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "prefix": self.prefix, "as": self.asn}


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
            Neighbor(str(item.get("name")), str(item.get("address")), as_of(item, option + ".as"))
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


# --- rendering ---------------------------------------------------------------------------------


def _host_len(version: int) -> int:
    return 32 if version == 4 else 128


def render(config: BirdBgpConfig) -> str:
    """The BIRD configuration text for ``config`` (one file, included from bird.conf)."""
    validate(config)
    t = config.timers
    lines = [HEADER]
    if config.router_id is not None:
        lines.append("router id %s;" % config.router_id)
    lines.append("")
    defines = []
    for version in config.families:
        pools = [p for p in config.pools if ipaddress.ip_network(p).version == version]
        host = _host_len(version)
        lines += [
            "protocol kernel %s {" % KERNEL_NAMES[version],
            "  ipv%d { import none; export filter { if source = RTS_BGP then accept; reject; }; };"
            % version,
            "  merge paths on limit %d;" % config.merge_paths_limit,
            "  netlink rx buffer 16777216;",
            "}",
            "",
        ]
        defines.append(
            "define %s_v%d = [ %s ];"
            % (FILTER_NAME, version, ", ".join("%s{%d,%d}" % (p, host, host) for p in pools))
        )
    lines += defines
    lines.append("filter %s {" % FILTER_NAME)
    for version in config.families:
        lines.append(
            "  if net.type = NET_IP%d && net ~ %s_v%d then accept;"
            % (version, FILTER_NAME, version)
        )
    lines += ["  reject;", "}", "", "template bgp %s {" % TEMPLATE_NAME]
    lines += [
        "  local as %d;" % config.local_as,
        "  hold time %d;" % t.hold,
        "  keepalive time %d;" % t.keepalive,
        "  connect retry time %d;" % t.connect_retry,
        "  error wait time %d, %d;" % (t.error_wait_min, t.error_wait_max),
    ]
    if config.password is not None:
        lines.append('  password "%s";' % config.password)
    add_paths = " add paths rx;" if config.add_paths_rx else ""
    for version in config.families:
        lines.append(
            "  ipv%d { import filter %s; export none;%s };" % (version, FILTER_NAME, add_paths)
        )
    lines += ["}", ""]
    for n in config.neighbors:
        lines.append(
            "protocol bgp %s from %s { neighbor %s as %d; }"
            % (n.name, TEMPLATE_NAME, n.address, n.asn)
        )
    if config.neighbor_range is not None:
        r = config.neighbor_range
        lines.append(
            'protocol bgp %s from %s { neighbor range %s as %d; dynamic name "%s"; }'
            % (r.name, TEMPLATE_NAME, r.prefix, r.asn, r.name)
        )
    return "\n".join(lines) + "\n"


def redact(text: str) -> str:
    """``text`` with any rendered password replaced by asterisks (for diffs and logs)."""
    return re.sub(r'(^\s*password ")[^"]*(";)', r"\1********\2", text, flags=re.MULTILINE)


# --- parsing -----------------------------------------------------------------------------------

_LINE_RULES = [
    ("router_id", re.compile(r"^router id (\S+);$")),
    ("kernel", re.compile(r"^protocol kernel porter_kernel([46]) \{$")),
    (
        "kernel_channel",
        re.compile(
            r"^ipv([46]) \{ import none; export filter \{ if source = RTS_BGP then accept; reject; "
            r"\}; \};$"
        ),
    ),
    ("merge", re.compile(r"^merge paths on limit (\d+);$")),
    ("netlink", re.compile(r"^netlink rx buffer 16777216;$")),
    ("close", re.compile(r"^\}$")),
    ("define", re.compile(r"^define %s_v([46]) = \[ (.*) \];$" % FILTER_NAME)),
    ("filter", re.compile(r"^filter %s \{$" % FILTER_NAME)),
    (
        "filter_rule",
        re.compile(r"^if net\.type = NET_IP([46]) && net ~ %s_v\1 then accept;$" % FILTER_NAME),
    ),
    ("reject", re.compile(r"^reject;$")),
    ("template", re.compile(r"^template bgp %s \{$" % TEMPLATE_NAME)),
    ("local_as", re.compile(r"^local as (\d+);$")),
    ("hold", re.compile(r"^hold time (\d+);$")),
    ("keepalive", re.compile(r"^keepalive time (\d+);$")),
    ("connect_retry", re.compile(r"^connect retry time (\d+);$")),
    ("error_wait", re.compile(r"^error wait time (\d+), (\d+);$")),
    ("password", re.compile(r'^password "([^"\\]*)";$')),
    (
        "channel",
        re.compile(
            r"^ipv([46]) \{ import filter %s; export none;( add paths rx;)? \};$" % FILTER_NAME
        ),
    ),
    (
        "neighbor",
        re.compile(r"^protocol bgp (\w+) from %s \{ neighbor (\S+) as (\d+); \}$" % TEMPLATE_NAME),
    ),
    (
        "neighbor_range",
        re.compile(
            r"^protocol bgp (\w+) from %s \{ neighbor range (\S+) as (\d+);"
            r' dynamic name "(\w+)"; \}$' % TEMPLATE_NAME
        ),
    ),
]
_POOL = re.compile(r"^(\S+)\{(\d+),(\d+)\}$")


def _statements(text: str) -> list[tuple[str, tuple[str, ...], int]]:
    """Each statement of ``text`` as (kind, groups, line number); unknown lines raise."""
    found = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        matches = [(kind, rule.match(line)) for kind, rule in _LINE_RULES]
        hit = next(((kind, m) for kind, m in matches if m), None)
        if hit is None:
            raise BirdBgpConfigError(
                "line %d" % number, line, "is not a statement porter.lb.bird_bgp writes"
            )
        found.append((hit[0], tuple(g or "" for g in hit[1].groups()), number))
    return found


def _pools_of(groups: tuple[str, ...], number: int) -> list[str]:
    pools = []
    for item in groups[1].split(", "):
        pool = _POOL.match(item.strip())
        if not pool:
            raise BirdBgpConfigError("line %d" % number, item, "is not POOL{LEN,LEN}")
        pools.append(pool.group(1))
    return pools


def parse(text: str) -> BirdBgpConfig:
    """Read a file written by ``render`` back into the model (``parse(render(c)) == c``)."""
    statements = _statements(text)
    one = {kind: groups for kind, groups, _number in statements}
    if "local_as" not in one:
        raise BirdBgpConfigError("text", "", "has no 'local as' statement")
    add_paths = {bool(groups[1]) for kind, groups, _number in statements if kind == "channel"}
    if len(add_paths) > 1:
        raise BirdBgpConfigError("text", "", "channels disagree about 'add paths rx'")
    timers = {k: int(one[k][0]) for k in ("hold", "keepalive", "connect_retry") if k in one}
    if "error_wait" in one:
        timers["error_wait_min"], timers["error_wait_max"] = map(int, one["error_wait"])
    ranges = [
        NeighborRange(g[0], g[1], int(g[2]))
        for k, g, _number in statements
        if k == "neighbor_range"
    ]
    if len(ranges) > 1:
        raise BirdBgpConfigError("text", "", "has more than one neighbor range")
    return BirdBgpConfig(
        local_as=int(one["local_as"][0]),
        router_id=one["router_id"][0] if "router_id" in one else None,
        neighbors=tuple(
            Neighbor(g[0], g[1], int(g[2])) for k, g, _number in statements if k == "neighbor"
        ),
        neighbor_range=ranges[0] if ranges else None,
        pools=tuple(p for k, g, n in statements if k == "define" for p in _pools_of(g, n)),
        add_paths_rx=add_paths == {True},
        merge_paths_limit=int(one["merge"][0]) if "merge" in one else 16,
        timers=Timers(**timers),
        password=one["password"][0] if "password" in one else None,
    )


# --- live state --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Session:
    """One BGP protocol as ``birdc show protocols all`` reports it."""

    name: str
    neighbor: str | None
    state: str  # the BGP state: Idle, Connect, Active, OpenSent, OpenConfirm, Established
    protocol_state: str  # BIRD's: up, start, down
    neighbor_as: int | None = None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def parse_show_protocols_all(text: str) -> list[Session]:
    """The BGP protocols in ``birdc show protocols all`` output, in the order shown."""
    sessions: list[Session] = []
    current: dict[str, object] | None = None

    def flush() -> None:
        if current is not None:
            sessions.append(Session(**current))  # type: ignore[arg-type]

    for raw in text.splitlines():
        if raw and not raw[0].isspace():
            fields = raw.split()
            flush()
            current = None
            if len(fields) >= 4 and fields[1] == "BGP":
                current = {
                    "name": fields[0],
                    "neighbor": None,
                    "state": fields[5] if len(fields) > 5 else "",
                    "protocol_state": fields[3],
                    "neighbor_as": None,
                }
            continue
        if current is None:
            continue
        line = raw.strip()
        if line.startswith("BGP state:"):
            current["state"] = line.split(":", 1)[1].strip()
        elif line.startswith("Neighbor address:"):
            current["neighbor"] = line.split(":", 1)[1].strip().split("%")[0]
        elif line.startswith("Neighbor AS:"):
            current["neighbor_as"] = int(line.split(":", 1)[1].strip())
    flush()
    return sessions


# --- resource-module states --------------------------------------------------------------------


def _given(data: dict[str, object] | None) -> dict[str, object]:
    return {k: v for k, v in (data or {}).items() if v is not None}


def merge_config(have: BirdBgpConfig | None, want: dict[str, object]) -> BirdBgpConfig:
    """``merged``: ``want`` on top of ``have``; neighbours are matched by name (a given one
    replaces the one of the same name, others are kept), pools are added, timers merged."""
    result = have.to_dict() if have else {}
    for key, value in _given(want).items():
        if key == "neighbors":
            by_name = {str(n["name"]): n for n in _dicts(result.get("neighbors"))}
            for item in _dicts(value):
                by_name[str(item.get("name"))] = item
            result[key] = list(by_name.values())
        elif key == "pools":
            pools = [str(p) for p in _list(result.get("pools"))]
            result[key] = pools + [str(p) for p in _list(value) if str(p) not in pools]
        elif key == "timers" and isinstance(value, dict):
            timers = dict(_given(result.get("timers")))  # type: ignore[arg-type]
            timers.update(_given(value))
            result[key] = timers
        else:
            result[key] = value
    return config_from_dict(result)


def replace_config(have: BirdBgpConfig | None, want: dict[str, object]) -> BirdBgpConfig:
    """``replaced``: every option given in ``want`` replaces the existing value as a whole
    (the neighbour list, the pools, all timers); options not given are kept."""
    result = have.to_dict() if have else {}
    result.update(_given(want))
    return config_from_dict(result)


def override_config(want: dict[str, object]) -> BirdBgpConfig:
    """``overridden``: the configuration becomes exactly ``want`` (defaults for the rest)."""
    return config_from_dict(_given(want))


def delete_config(have: BirdBgpConfig | None, want: dict[str, object]) -> BirdBgpConfig | None:
    """``deleted``: with neighbours or a neighbor_range named in ``want``, remove just those;
    otherwise remove the whole configuration (None)."""
    given = _given(want)
    names = {str(n.get("name")) for n in _dicts(given.get("neighbors"))}
    dynamic = given.get("neighbor_range")
    if have is None or (not names and dynamic is None):
        return None
    result = have.to_dict()
    result["neighbors"] = [n for n in _dicts(result["neighbors"]) if str(n["name"]) not in names]
    if dynamic is not None:
        result["neighbor_range"] = None
    if not result["neighbors"] and result["neighbor_range"] is None:
        return None
    return config_from_dict(result)


def _dicts(value: object) -> list[dict[str, object]]:
    return [item for item in _list(value) if isinstance(item, dict)]
