# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""The cluster-facing BGP configuration of an FRR router, as data.

A typed model (:class:`BgpConfig`, :class:`Neighbor`), its rendering to FRR
configuration statements and text, the parser of ``show running-config`` back
to the model, and the difference between two configurations as the ordered
``vtysh`` commands that turn one into the other.

What this module owns on the router:

* the default-VRF ``router bgp <asn>`` lines it knows: ``bgp router-id``,
  ``no bgp ebgp-requires-policy``, ``bgp bestpath as-path multipath-relax``,
  ``timers bgp``, neighbours and peer groups (``remote-as``, ``description``,
  ``password``, ``timers``, ``timers connect``), ``bgp listen range`` and, in
  ``address-family ipv4 unicast``, ``maximum-paths`` and the neighbours'
  route-maps;
* the policies it generates when EIP pools are given: prefix-list
  ``PORTER-LB-EIP-POOLS`` (each pool's /32 host routes), route-map
  ``PORTER-LB-EIP-IN`` (permit those) and route-map ``PORTER-LB-DENY-OUT``
  (announce nothing to the cluster).

Any other line is left alone.  A configuration is held as *statements*: a
context (``()`` for the top level, ``("router bgp 65000",)``, ``("router bgp
65000", "address-family ipv4 unicast")`` ...) and one line, in FRR's own
spelling, so the difference between two configurations is a difference of
statement lists and a parsed configuration renders back to the same text.

PURE: standard library only, no I/O, no Ansible imports (see addresses.py).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from ansible_collections.porter.lb.plugins.module_utils import bgp_resource

__all__ = [
    "AF",
    "PREFIX_LIST",
    "ROUTE_MAP_IN",
    "ROUTE_MAP_OUT",
    "BgpConfig",
    "FrrBgpConfigError",
    "Neighbor",
    "commands_for",
    "config_from_dict",
    "config_statements",
    "config_text",
    "diff_statements",
    "owned_statements",
    "parse_config",
    "statements_text",
]

PREFIX_LIST = "PORTER-LB-EIP-POOLS"
ROUTE_MAP_IN = "PORTER-LB-EIP-IN"
ROUTE_MAP_OUT = "PORTER-LB-DENY-OUT"
AF = "address-family ipv4 unicast"
MAX_ASN = 4294967295
MAX_PATHS = 64  # Debian's FRR 8.4 is built with MULTIPATH_NUM 64


class FrrBgpConfigError(bgp_resource.BgpOptionError):
    """An option breaks a rule; the message names the option, the value and the rule."""


@dataclasses.dataclass(frozen=True)
class Neighbor(bgp_resource.PlainData):
    """A BGP neighbour (an IP address) or a peer group (a name) with its listen ranges."""

    address: str
    remote_as: str  # an AS number, "external" or "internal"
    peer_group: bool = False
    description: str | None = None
    password: str | None = None
    keepalive: int | None = None
    hold_time: int | None = None
    connect_retry: int | None = None
    listen_ranges: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BgpConfig(bgp_resource.PlainData):
    """The owned part of ``router bgp <asn>`` and its policies.

    ``pools`` non-empty means explicit policies: every neighbour gets
    ``route-map PORTER-LB-EIP-IN in`` (the pools' /32s) and
    ``route-map PORTER-LB-DENY-OUT out``.
    """

    asn: int
    router_id: str | None = None
    keepalive: int | None = None
    hold_time: int | None = None
    ebgp_requires_policy: bool = True
    multipath_relax: bool = False
    maximum_paths: int | None = None
    pools: tuple[str, ...] = ()
    neighbors: tuple[Neighbor, ...] = ()


# --- validation -------------------------------------------------------------


def _int(field, value, low, high):
    return bgp_resource.integer(FrrBgpConfigError, field, value, low, high)


def _timers(field, keepalive, hold_time):
    return bgp_resource.timers(FrrBgpConfigError, field, keepalive, hold_time)


def _text(field, value):
    return bgp_resource.one_line(FrrBgpConfigError, field, value)


def _password(field, value):
    """FRR takes a neighbour's password as one word (``password LINE``: one token)."""
    value = _text(field, value)
    if value is not None and len(value.split()) != 1:
        raise FrrBgpConfigError(field, bgp_resource.MASK, "must be one word (no spaces)")
    return value


def _neighbor(index, data):
    field = "neighbors[%d]" % index
    if not isinstance(data, dict):
        raise FrrBgpConfigError(field, data, "must be a dictionary")
    address = _text(field + ".address", data.get("address"))
    if address is None:
        raise FrrBgpConfigError(field + ".address", None, "is required")
    peer_group = bool(data.get("peer_group"))
    if peer_group:
        if not re.match(r"^[A-Za-z][A-Za-z0-9_.-]*$", address):
            raise FrrBgpConfigError(
                field + ".address",
                address,
                "a peer group is named by a word (letters, digits, '_', '.', '-')",
            )
    else:
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise FrrBgpConfigError(
                field + ".address", address, "must be an IP address (or set peer_group: true)"
            ) from None
    remote_as = data.get("remote_as")
    if remote_as is None:
        raise FrrBgpConfigError(field + ".remote_as", None, "is required")
    remote_as = str(remote_as)
    if remote_as not in ("external", "internal"):
        remote_as = str(_int(field + ".remote_as", remote_as, 1, MAX_ASN))
    keepalive, hold_time = _timers(field, data.get("keepalive"), data.get("hold_time"))
    ranges = []
    for network in data.get("listen_ranges") or ():
        if not peer_group:
            raise FrrBgpConfigError(
                field + ".listen_ranges", network, "only a peer group (peer_group: true) listens"
            )
        try:
            ranges.append(str(ipaddress.ip_network(str(network))))
        except ValueError:
            raise FrrBgpConfigError(
                field + ".listen_ranges", network, "must be a network with no host bits set"
            ) from None
    return Neighbor(
        address=address,
        remote_as=remote_as,
        peer_group=peer_group,
        description=_text(field + ".description", data.get("description")),
        password=_password(field + ".password", data.get("password")),
        keepalive=keepalive,
        hold_time=hold_time,
        connect_retry=_int(field + ".connect_retry", data.get("connect_retry"), 1, 65535),
        listen_ranges=tuple(ranges),
    )


def config_from_dict(data, whole=True):
    """Validate module options (snake_case, as in the module's ``config``) into a BgpConfig.

    ``multipath_relax`` None means: decide from the neighbours' ASNs.  `whole` False skips
    the rules that span the whole configuration (for a part merged into what is running,
    which is checked again once merged).
    """
    asn = _int("asn", data.get("asn"), 1, MAX_ASN)
    if asn is None:
        raise FrrBgpConfigError("asn", None, "is required")
    router_id = bgp_resource.ipv4_router_id(FrrBgpConfigError, data.get("router_id"))
    keepalive, hold_time = _timers("timers", data.get("keepalive"), data.get("hold_time"))
    neighbors = tuple(_neighbor(i, n) for i, n in enumerate(data.get("neighbors") or ()))
    bgp_resource.unique_addresses(FrrBgpConfigError, neighbors)
    pools = []
    for pool in data.get("pools") or ():
        try:
            network = ipaddress.ip_network(str(pool))
        except ValueError:
            raise FrrBgpConfigError(
                "pools", pool, "must be a network with no host bits set"
            ) from None
        if network.version != 4:
            raise FrrBgpConfigError("pools", pool, "only IPv4 pools (address-family ipv4 unicast)")
        pools.append(str(network))
    requires_policy = data.get("ebgp_requires_policy")
    requires_policy = True if requires_policy is None else bool(requires_policy)
    ebgp = [n for n in neighbors if n.remote_as != "internal" and n.remote_as != str(asn)]
    if whole and requires_policy and ebgp and not pools:
        raise FrrBgpConfigError(
            "pools",
            [],
            "FRR drops every route from eBGP neighbours without a policy: give the EIP pools "
            "or set ebgp_requires_policy: false",
        )
    relax = data.get("multipath_relax")
    return BgpConfig(
        asn=asn,
        router_id=router_id,
        keepalive=keepalive,
        hold_time=hold_time,
        ebgp_requires_policy=requires_policy,
        multipath_relax=bgp_resource.wants_multipath_relax(neighbors)
        if relax is None
        else bool(relax),
        maximum_paths=_int("maximum_paths", data.get("maximum_paths"), 1, MAX_PATHS),
        pools=tuple(pools),
        neighbors=tuple(sorted(neighbors, key=bgp_resource.neighbor_order)),
    )


# --- rendering --------------------------------------------------------------


def _neighbor_lines(n, mask):
    lines = []
    if n.peer_group:
        lines.append("neighbor %s peer-group" % n.address)
    lines.append("neighbor %s remote-as %s" % (n.address, n.remote_as))
    if n.description is not None:
        lines.append("neighbor %s description %s" % (n.address, n.description))
    if n.password is not None:
        lines.append(
            "neighbor %s password %s" % (n.address, bgp_resource.MASK if mask else n.password)
        )
    if n.keepalive is not None:
        lines.append("neighbor %s timers %d %d" % (n.address, n.keepalive, n.hold_time))
    if n.connect_retry is not None:
        lines.append("neighbor %s timers connect %d" % (n.address, n.connect_retry))
    return lines


def config_statements(config, mask=False):
    """The statements FRR's ``show running-config`` holds for `config`, in FRR's order.

    `mask` hides passwords (for diffs and returned commands).
    """
    bgp = ("router bgp %d" % config.asn,)
    af = (*bgp, AF)
    out = []
    for index, pool in enumerate(config.pools):
        out.append(
            ((), "ip prefix-list %s seq %d permit %s ge 32" % (PREFIX_LIST, 5 * (index + 1), pool))
        )
    if config.pools:
        out.append(((), "route-map %s permit 10" % ROUTE_MAP_IN))
        out.append(
            (
                ("route-map %s permit 10" % ROUTE_MAP_IN,),
                "match ip address prefix-list " + PREFIX_LIST,
            )
        )
        out.append(((), "route-map %s deny 10" % ROUTE_MAP_OUT))
    out.append(((), bgp[0]))
    if config.router_id is not None:
        out.append((bgp, "bgp router-id " + config.router_id))
    if not config.ebgp_requires_policy:
        out.append((bgp, "no bgp ebgp-requires-policy"))
    if config.multipath_relax:
        out.append((bgp, "bgp bestpath as-path multipath-relax"))
    if config.keepalive is not None:
        out.append((bgp, "timers bgp %d %d" % (config.keepalive, config.hold_time)))
    for neighbor in config.neighbors:
        out.extend((bgp, line) for line in _neighbor_lines(neighbor, mask))
    for neighbor in config.neighbors:
        out.extend(
            (bgp, "bgp listen range %s peer-group %s" % (network, neighbor.address))
            for network in neighbor.listen_ranges
        )
    if config.pools:
        for neighbor in config.neighbors:
            out.append((af, "neighbor %s route-map %s in" % (neighbor.address, ROUTE_MAP_IN)))
            out.append((af, "neighbor %s route-map %s out" % (neighbor.address, ROUTE_MAP_OUT)))
    if config.maximum_paths is not None:
        out.append((af, "maximum-paths %d" % config.maximum_paths))
    return out


def statements_text(statements):
    """FRR configuration text for statements, laid out as ``show running-config`` does."""
    text = []
    previous_plain = False
    for header, lines, af_lines in bgp_resource.statement_blocks(
        statements, ("router bgp ", "route-map ")
    ):
        if header is None:
            text.append(lines[0])
            previous_plain = True
            continue
        if previous_plain:
            text.append("!")
        previous_plain = False
        text.append(header)
        text.extend(" " + line for line in lines)
        if af_lines:
            text.append(" !")
            text.append(" " + AF)
            text.extend("  " + line for line in af_lines)
            text.append(" exit-address-family")
        text.append("exit")
        text.append("!")
    if previous_plain:
        text.append("!")
    return "\n".join(text) + "\n" if text else ""


def config_text(config, mask=False):
    return statements_text(config_statements(config, mask))


# --- parsing ----------------------------------------------------------------

_NAME = r"(?P<name>\S+)"
# Lines this module owns inside router bgp (context length 1) and its address family (2).
_BGP_LINES = [
    re.compile(r"^bgp router-id \S+$"),
    re.compile(r"^no bgp ebgp-requires-policy$"),
    re.compile(r"^bgp bestpath as-path multipath-relax$"),
    re.compile(r"^timers bgp \d+ \d+$"),
    re.compile(r"^neighbor \S+ peer-group$"),
    re.compile(r"^neighbor \S+ remote-as \S+$"),
    re.compile(r"^neighbor \S+ description .+$"),
    re.compile(r"^neighbor \S+ password \S+$"),
    re.compile(r"^neighbor \S+ timers \d+ \d+$"),
    re.compile(r"^neighbor \S+ timers connect \d+$"),
    re.compile(r"^bgp listen range \S+ peer-group \S+$"),
]
_AF_LINES = [
    re.compile(r"^neighbor \S+ route-map %s in$" % ROUTE_MAP_IN),
    re.compile(r"^neighbor \S+ route-map %s out$" % ROUTE_MAP_OUT),
    re.compile(r"^maximum-paths \d+$"),
]


_OWNED_ROUTE_MAPS = (
    "route-map %s permit 10" % ROUTE_MAP_IN,
    "route-map %s deny 10" % ROUTE_MAP_OUT,
)


def _top_level(line):
    """The context a top-level line opens and the statement it is, if owned."""
    if re.match(r"^router bgp \d+$", line):
        return (line,), ((), line)
    if line.startswith("route-map "):
        return (line,), (((), line) if line in _OWNED_ROUTE_MAPS else None)
    if line.startswith("ip prefix-list %s " % PREFIX_LIST):
        return (), ((), line)
    if line.startswith("router "):
        return ("other",), None  # another VRF or protocol: not ours
    return (), None


def _owned_in(context, line):
    if context[0].startswith("route-map "):
        return context[0] == _OWNED_ROUTE_MAPS[0] and line == (
            "match ip address prefix-list " + PREFIX_LIST
        )
    if len(context) == 1:
        return any(p.match(line) for p in _BGP_LINES)
    return context[1] == AF and any(p.match(line) for p in _AF_LINES)


def owned_statements(text):
    """The statements of ``show running-config`` (or a config file) that this module owns."""
    out = []
    context = ()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("!"):
            continue
        if line in ("exit", "end"):
            context = ()
        elif line == "exit-address-family":
            context = context[:1]
        elif not raw.startswith(" "):
            context, statement = _top_level(line)
            if statement:
                out.append(statement)
        elif context and context != ("other",):
            if line.startswith("address-family ") and context[0].startswith("router bgp "):
                context = (context[0], line)
            elif _owned_in(context, line):
                out.append((context, line))
    return out


def _neighbor_line(entry, line):
    """Apply one owned ``neighbor <name> ...`` line to a neighbour's fields."""
    rest = line.split()[2:]
    if rest == ["peer-group"]:
        entry["peer_group"] = True
    elif rest[0] == "remote-as":
        entry["remote_as"] = rest[1]
    elif rest[0] == "description":
        entry["description"] = line.split(" description ", 1)[1]
    elif rest[0] == "password":
        entry["password"] = rest[1]
    elif rest[:2] == ["timers", "connect"]:
        entry["connect_retry"] = int(rest[2])
    elif rest[0] == "timers":
        entry["keepalive"], entry["hold_time"] = int(rest[1]), int(rest[2])


def _bgp_line(fields, line):
    """Apply one owned router-bgp line (not a neighbour's) to the config's fields."""
    words = line.split()
    if words[:2] == ["bgp", "router-id"]:
        fields["router_id"] = words[2]
    elif line == "no bgp ebgp-requires-policy":
        fields["ebgp_requires_policy"] = False
    elif line == "bgp bestpath as-path multipath-relax":
        fields["multipath_relax"] = True
    elif words[0] == "timers":
        fields["keepalive"], fields["hold_time"] = int(words[2]), int(words[3])
    elif words[0] == "maximum-paths":
        fields["maximum_paths"] = int(words[1])


def parse_config(text):
    """The BgpConfig of a running configuration, or None when it has no ``router bgp``.

    Raises FrrBgpConfigError for an owned line it cannot read (a hand-edited file).
    """
    statements = owned_statements(text)
    headers = [
        line for context, line in statements if not context and line.startswith("router bgp ")
    ]
    if not headers:
        return None
    fields = {"asn": int(headers[0].split()[2]), "ebgp_requires_policy": True}
    fields["multipath_relax"] = False
    neighbors = {}
    pools = []

    def neighbor(name):
        return neighbors.setdefault(name, {"address": name, "remote_as": ""})

    for context, line in statements:
        words = line.split()
        if not context and line.startswith("ip prefix-list "):
            if not _POOL_LINE.match(line):
                raise FrrBgpConfigError("running_config", line, "is not a line frr_bgp writes")
            pools.append(words[6])
        elif not context or context[0] != headers[0]:
            continue
        elif words[:3] == ["bgp", "listen", "range"]:
            entry = neighbor(words[5])
            entry["listen_ranges"] = (*entry.get("listen_ranges", ()), words[3])
        elif words[0] == "neighbor":
            if len(context) == 1:
                _neighbor_line(neighbor(words[1]), line)
        else:
            _bgp_line(fields, line)
    fields["pools"] = tuple(pools)
    for name, entry in neighbors.items():
        if not entry.get("peer_group") and not _is_address(name):
            raise FrrBgpConfigError(
                "running_config",
                "neighbor " + name,
                "is neither an IP address nor a peer group ('neighbor %s peer-group')" % name,
            )
    fields["neighbors"] = tuple(
        sorted((Neighbor(**entry) for entry in neighbors.values()), key=bgp_resource.neighbor_order)
    )
    return BgpConfig(**fields)


_POOL_LINE = re.compile(r"^ip prefix-list %s seq \d+ permit \S+ ge 32$" % PREFIX_LIST)


def _is_address(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# --- difference -------------------------------------------------------------

# Lines whose new value replaces the old one in FRR: the key is the line without its value.
_REPLACING = [
    re.compile(r"^(bgp router-id) "),
    re.compile(r"^(timers bgp) "),
    re.compile(r"^(maximum-paths) "),
    re.compile(r"^(neighbor \S+ remote-as) "),
    re.compile(r"^(neighbor \S+ description) "),
    re.compile(r"^(neighbor \S+ password) "),
    re.compile(r"^(neighbor \S+ timers connect) "),
    re.compile(r"^(neighbor \S+ timers) \d"),
    re.compile(r"^(ip prefix-list \S+ seq \d+) "),
]


def _replacing_key(context, line):
    for pattern in _REPLACING:
        match = pattern.match(line)
        if match:
            return (context, match.group(1))
    return None


def _negate(line):
    return line[3:] if line.startswith("no ") else "no " + line


def _defined_neighbors(statements):
    names = {}
    for context, line in statements:
        match = re.match(r"^neighbor (\S+) (remote-as|peer-group)", line)
        if len(context) == 1 and match:
            names[(context[0], match.group(1))] = True
    return names


def diff_statements(before, after):
    """The ordered (context, line) operations that turn `before` into `after`.

    Order: policies are created before anything refers to them; listen ranges and
    neighbours are removed before what they refer to; a removed neighbour (or
    router bgp) is removed as one ``no`` command, not line by line.
    """
    before_set = set(before)
    after_set = set(after)
    after_headers = {line for context, line in after if not context}
    before_neighbors = _defined_neighbors(before)
    after_neighbors = _defined_neighbors(after)
    gone_routers = [
        line
        for context, line in before
        if not context and line.startswith("router bgp ") and line not in after_headers
    ]
    gone_neighbors = [key for key in before_neighbors if key not in after_neighbors]
    replaced_keys = {_replacing_key(*s) for s in after if s not in before_set}
    replaced_keys.discard(None)

    def covered(context, line):
        if context and context[0] in gone_routers:
            return True
        return any(
            context and context[0] == router and line.startswith("neighbor %s " % name)
            for router, name in gone_neighbors
        )

    added = [s for s in after if s not in before_set]
    removed = [s for s in before if s not in after_set]
    top_added = [
        (context, line)
        for context, line in added
        if (not context and not line.startswith("router bgp "))
        or (context and context[0].startswith("route-map "))
    ]
    bgp_added = [s for s in added if s not in top_added]

    ops = [((), "no " + router) for router in gone_routers]
    ops += top_added
    listen_removals = [s for s in removed if s[1].startswith("bgp listen range ")]
    for context, line in listen_removals + [s for s in removed if s not in listen_removals]:
        if not context or context[0].startswith("route-map "):
            continue
        if covered(context, line) or _replacing_key(context, line) in replaced_keys:
            continue
        ops.append((context, _negate(line)))
    for router, name in gone_neighbors:
        if router not in gone_routers:
            ops.append(((router,), "no neighbor " + name))
    ops += bgp_added
    for context, line in removed:
        if (
            not context
            and not line.startswith("router bgp ")
            and _replacing_key(context, line) not in replaced_keys
        ):
            ops.append(((), "no " + line))
    return ops


def commands_for(ops):
    """vtysh commands (after ``configure terminal``) for operations, entering and leaving
    each context as needed."""
    return bgp_resource.view_commands(ops, ("router bgp ", "route-map "), _leave)


def _leave(view):
    return "exit-address-family" if view.startswith("address-family") else "exit"
