# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""The cluster-facing BGP configuration of an FRR router, as data.

A typed model (:class:`BgpConfig`, :class:`Neighbor`), the parser table
(``TABLE``: one entry per line shape, which renders, owns and reads it), the
text layout of ``show running-config``, the difference between two
configurations as the ordered ``vtysh`` commands that turn one into the other,
and the rules the shared resource states follow (``RULES``, see
network_resource.py).

What this module owns on the router is what ``TABLE`` lists: the default-VRF
``router bgp <asn>`` lines it knows, the policies it generates for the EIP
pools (prefix-list ``PORTER-LB-EIP-POOLS``, route-maps ``PORTER-LB-EIP-IN``
and ``PORTER-LB-DENY-OUT``) and the BFD profiles it generates for neighbours'
BFD timers other than the defaults (``PORTER-LB-BFD-TX<ms>-RX<ms>-M<n>``
inside bfdd's ``bfd`` node, which itself stays; ``neighbor X bfd profile NAME``
is owned only for these names, and a neighbour naming another profile is
refused, never rewritten). Any other line is left alone.  A configuration is
held as *statements*: a context (``()`` for the top level, ``("router bgp
65000",)``, ``("router bgp 65000", "address-family ipv4 unicast")``,
``("bfd", "profile NAME")`` ...) and one line, in FRR's own spelling, so the
difference between two configurations is a difference of statement lists and
a parsed configuration renders back to the same text.

PURE: standard library only, no I/O, no Ansible imports (see addresses.py).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from ansible_collections.porter.lb.plugins.module_utils import (
    bgp_resource,
    bgp_session,
    config_lines,
    network_resource,
)
from ansible_collections.porter.lb.plugins.module_utils.bgp_session import Bfd

__all__ = [
    "AF",
    "BFD",
    "PREFIX_LIST",
    "ROUTE_MAP_IN",
    "ROUTE_MAP_OUT",
    "RULES",
    "TABLE",
    "BgpConfig",
    "FrrBgpConfigError",
    "Neighbor",
    "bfdd_running",
    "commands_for",
    "config_from_dict",
    "config_statements",
    "config_text",
    "diff_statements",
    "missing_statements",
    "owned_statements",
    "parse_config",
    "statements_text",
    "uses_bfd",
]

PREFIX_LIST = "PORTER-LB-EIP-POOLS"
ROUTE_MAP_IN = "PORTER-LB-EIP-IN"
ROUTE_MAP_OUT = "PORTER-LB-DENY-OUT"
AF = "address-family ipv4 unicast"
BFD = "bfd"  # bfdd's top-level node, which holds the profiles
BFD_PROFILE_PREFIX = "PORTER-LB-BFD-"
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
    port: int | None = None  # None: FRR's default, 179
    bfd: Bfd | None = None  # None: no BFD


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


def _port(field, value, peer_group, whole):
    if value is None:
        return None
    port = bgp_session.port(FrrBgpConfigError, field, value)
    if peer_group and port != bgp_session.DEFAULT_PORT:
        raise FrrBgpConfigError(
            field,
            value,
            "a port is the neighbour's listening port; a peer group's sessions come from its "
            "listen ranges, accepted on the router's own port (FRR never connects to them)",
        )
    return None if whole and port == bgp_session.DEFAULT_PORT else port


def _bfd(field, value, whole):
    if value is None:
        return None
    bfd = bgp_session.bfd_from_dict(FrrBgpConfigError, field, value)
    return None if whole and not bfd.enabled else bfd


def _neighbor(index, data, whole=True):
    """One neighbour's options as a Neighbor.  `whole`: the port 179 and BFD off, which FRR
    does not show, become None (a partial configuration keeps them, so that ``merged`` can
    set them over what runs)."""
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
        port=_port(field + ".port", data.get("port"), peer_group, whole),
        bfd=_bfd(field + ".bfd", data.get("bfd"), whole),
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
    neighbors = tuple(_neighbor(i, n, whole) for i, n in enumerate(data.get("neighbors") or ()))
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


# --- the parser table -------------------------------------------------------------


def _unreadable(match):
    raise FrrBgpConfigError("running_config", match.string, "is not a line frr_bgp writes")


def _with_pools(config, line):
    """A line of the policies, which exist only with EIP pools."""
    return line if config.pools else None


_ROUTE_MAP_IN = "route-map %s permit 10" % ROUTE_MAP_IN
_ROUTE_MAP_OUT = "route-map %s deny 10" % ROUTE_MAP_OUT
_MATCH_POOLS = "match ip address prefix-list " + PREFIX_LIST
_POOL_KEY = r"^(ip prefix-list \S+ seq \d+) "
_PROFILE = r"^profile (?P<profile>%s\S+)$" % BFD_PROFILE_PREFIX
_N = r"^neighbor (?P<address>\S+) "
_line, _when, _ints = config_lines.line, config_lines.when, config_lines.ints


def _has_bfd(neighbor):
    return neighbor.bfd is not None and neighbor.bfd.enabled


def bfd_profile(bfd):
    """The name of the profile holding `bfd`'s timers; None for the defaults, which
    ``neighbor ... bfd`` alone gives (FRR's bfdd defaults are porter-lb's)."""
    if bfd is None or not bfd.enabled or bfd.default_timers:
        return None
    return "%sTX%d-RX%d-M%d" % (
        BFD_PROFILE_PREFIX,
        bfd.transmit_interval,
        bfd.receive_interval,
        bfd.detect_multiplier,
    )


def _profiles(config):
    """The profiles the neighbours' BFD timers need, each once, in name order."""
    found = {bfd_profile(n.bfd): n.bfd for n in config.neighbors if bfd_profile(n.bfd)}
    return [found[name] for name in sorted(found)]


def _profile_timer(name, text, default):
    """A profile's timer line; bfdd shows none for a default value, so none is written."""
    return lambda c, bfd: None if getattr(bfd, name) == default else text % getattr(bfd, name)


_ITEMS = {
    "pool": lambda c: [(i + 1, pool) for i, pool in enumerate(c.pools)],
    "bfd_profile": _profiles,
    "neighbor": lambda c: c.neighbors,
    "listen_range": lambda c: [(n, net) for n in c.neighbors for net in n.listen_ranges],
}

# fmt: off
TABLE = config_lines.Table([
    # top level: the policies, generated from the pools, and the router's header
    _line("pool", "top", r"^ip prefix-list %s seq \d+ permit (?P<pool>\S+) ge 32$" % PREFIX_LIST,
          lambda c, p: "ip prefix-list %s seq %d permit %s ge 32" % (PREFIX_LIST, 5 * p[0], p[1]),
          each="pool", key=_POOL_KEY, read=lambda m: {"pools": (m["pool"],)}, fields=("pools",)),
    # any other line of the owned prefix-list is owned (so it is replaced), but not readable
    _line("pool_other", "top", r"^ip prefix-list %s " % PREFIX_LIST,
          each="pool", key=_POOL_KEY, read=_unreadable),
    _line("route_map_in", "top", "^%s$" % _ROUTE_MAP_IN,
          lambda c, _: _with_pools(c, _ROUTE_MAP_IN)),
    _line("route_map_in_match", "route_map_in", "^%s$" % _MATCH_POOLS,
          lambda c, _: _with_pools(c, _MATCH_POOLS)),
    _line("route_map_out", "top", "^%s$" % _ROUTE_MAP_OUT,
          lambda c, _: _with_pools(c, _ROUTE_MAP_OUT)),
    _line("router_bgp", "top", r"^router bgp (?P<asn>\d+)$",
          lambda c, _: "router bgp %d" % c.asn, read=_ints("asn"), fields=("asn",)),
    # router bgp
    _line("router_id", "bgp", r"^bgp router-id (?P<router_id>\S+)$",
          lambda c, _: _when(c.router_id, "bgp router-id %s", c.router_id),
          key=r"^(bgp router-id) ", fields=("router_id",)),
    _line("ebgp_requires_policy", "bgp", r"^no bgp ebgp-requires-policy$",
          lambda c, _: None if c.ebgp_requires_policy else "no bgp ebgp-requires-policy",
          read=lambda m: {"ebgp_requires_policy": False}, fields=("ebgp_requires_policy",)),
    _line("multipath_relax", "bgp", r"^bgp bestpath as-path multipath-relax$",
          lambda c, _: "bgp bestpath as-path multipath-relax" if c.multipath_relax else None,
          read=lambda m: {"multipath_relax": True}, fields=("multipath_relax",)),
    _line("timers", "bgp", r"^timers bgp (?P<keepalive>\d+) (?P<hold_time>\d+)$",
          lambda c, _: _when(c.keepalive, "timers bgp %d %d", c.keepalive, c.hold_time),
          key=r"^(timers bgp) ", read=_ints("keepalive", "hold_time"),
          fields=("keepalive", "hold_time")),
    # each neighbour's lines, one neighbour after the other
    _line("peer_group", "bgp", _N + r"peer-group$",
          lambda c, n: "neighbor %s peer-group" % n.address if n.peer_group else None,
          each="neighbor", read=lambda m: {"address": m["address"], "peer_group": True},
          fields=("peer_group",)),
    _line("remote_as", "bgp", _N + r"remote-as (?P<remote_as>\S+)$",
          lambda c, n: "neighbor %s remote-as %s" % (n.address, n.remote_as),
          each="neighbor", key=r"^(neighbor \S+ remote-as) ", fields=("remote_as",)),
    _line("description", "bgp", _N + r"description (?P<description>.+)$",
          lambda c, n: _when(n.description, "neighbor %s description %s", n.address,
                             n.description),
          each="neighbor", key=r"^(neighbor \S+ description) ", fields=("description",)),
    _line("password", "bgp", _N + r"password (?P<password>\S+)$",
          lambda c, n: _when(n.password, "neighbor %s password %s", n.address, n.password),
          each="neighbor", key=r"^(neighbor \S+ password) ", fields=("password",)),
    _line("port", "bgp", _N + r"port (?P<port>\d+)$",
          lambda c, n: None if n.port in (None, bgp_session.DEFAULT_PORT)
          else "neighbor %s port %d" % (n.address, n.port),
          each="neighbor", key=r"^(neighbor \S+ port) ", read=_ints("port"), fields=("port",)),
    _line("neighbor_timers", "bgp", _N + r"timers (?P<keepalive>\d+) (?P<hold_time>\d+)$",
          lambda c, n: _when(n.keepalive, "neighbor %s timers %d %d", n.address, n.keepalive,
                             n.hold_time),
          each="neighbor", key=r"^(neighbor \S+ timers) \d",
          read=_ints("keepalive", "hold_time"), fields=("keepalive", "hold_time")),
    _line("connect_retry", "bgp", _N + r"timers connect (?P<connect_retry>\d+)$",
          lambda c, n: _when(n.connect_retry, "neighbor %s timers connect %d", n.address,
                             n.connect_retry),
          each="neighbor", key=r"^(neighbor \S+ timers connect) ", read=_ints("connect_retry"),
          fields=("connect_retry",)),
    # BFD: on, and the profile with its timers unless they are the defaults
    _line("bfd", "bgp", _N + r"bfd$",
          lambda c, n: "neighbor %s bfd" % n.address if _has_bfd(n) else None,
          each="neighbor", read=lambda m: {"address": m["address"], "bfd": True},
          fields=("bfd",)),
    # only a profile of the module's: another one is left alone (parse_config refuses it)
    _line("bfd_profile", "bgp", _N + r"bfd profile (?P<bfd_profile>%s\S+)$" % BFD_PROFILE_PREFIX,
          lambda c, n: _when(bfd_profile(n.bfd), "neighbor %s bfd profile %s", n.address,
                             bfd_profile(n.bfd)),
          each="neighbor", key=r"^(neighbor \S+ bfd profile) ", fields=("bfd",)),
    # the listen ranges, after every neighbour (a range names its peer group)
    _line("listen_range", "bgp", r"^bgp listen range (?P<net>\S+) peer-group (?P<address>\S+)$",
          lambda c, r: "bgp listen range %s peer-group %s" % (r[1], r[0].address),
          each="listen_range", read=lambda m: {"address": m["address"],
                                               "listen_ranges": (m["net"],)},
          fields=("listen_ranges",)),
    # address-family ipv4 unicast: the policies applied (derived from the pools), ECMP
    _line("route_map_in_applied", "af", r"^neighbor \S+ route-map %s in$" % ROUTE_MAP_IN,
          lambda c, n: _with_pools(c, "neighbor %s route-map %s in" % (n.address, ROUTE_MAP_IN)),
          each="neighbor", read=lambda m: {}),
    _line("route_map_out_applied", "af", r"^neighbor \S+ route-map %s out$" % ROUTE_MAP_OUT,
          lambda c, n: _with_pools(c, "neighbor %s route-map %s out" % (n.address,
                                                                        ROUTE_MAP_OUT)),
          each="neighbor", read=lambda m: {}),
    _line("maximum_paths", "af", r"^maximum-paths (?P<maximum_paths>\d+)$",
          lambda c, _: _when(c.maximum_paths, "maximum-paths %d", c.maximum_paths),
          key=r"^(maximum-paths) ", read=_ints("maximum_paths"), fields=("maximum_paths",)),
    # bfd: the profiles of the neighbours' timers (bfdd's order: multiplier, tx, rx)
    _line("profile", "bfd", _PROFILE, lambda c, b: "profile " + bfd_profile(b),
          each="bfd_profile"),
    _line("detect_multiplier", "bfd_profile", r"^detect-multiplier (?P<detect_multiplier>\d+)$",
          _profile_timer("detect_multiplier", "detect-multiplier %d",
                         bgp_session.DEFAULT_MULTIPLIER),
          each="bfd_profile", key=r"^(detect-multiplier) ", read=_ints("detect_multiplier")),
    _line("transmit_interval", "bfd_profile", r"^transmit-interval (?P<transmit_interval>\d+)$",
          _profile_timer("transmit_interval", "transmit-interval %d",
                         bgp_session.DEFAULT_INTERVAL),
          each="bfd_profile", key=r"^(transmit-interval) ", read=_ints("transmit_interval")),
    _line("receive_interval", "bfd_profile", r"^receive-interval (?P<receive_interval>\d+)$",
          _profile_timer("receive_interval", "receive-interval %d", bgp_session.DEFAULT_INTERVAL),
          each="bfd_profile", key=r"^(receive-interval) ", read=_ints("receive_interval")),
], _ITEMS)
# fmt: on
"""FRR's owned lines, one entry per shape, in the order ``show running-config`` shows them."""


def _context(view, asn, profile=None):
    bgp = "router bgp %d" % asn
    return {
        "top": (),
        "route_map_in": (_ROUTE_MAP_IN,),
        "bgp": (bgp,),
        "af": (bgp, AF),
        "bfd": (BFD,),
        "bfd_profile": (BFD, profile),
    }[view]


def _bfd_view(context):
    """bfdd's node, or an owned profile in it (None: another profile, or a peer)."""
    if len(context) == 1:
        return "bfd"
    return "bfd_profile" if TABLE.owns("bfd", context[1]) else None


def _view(context):
    """The table's name of a context (None: a context the module does not own)."""
    if not context:
        return "top"
    if context[0] == _ROUTE_MAP_IN:
        return "route_map_in"
    if context[0] == BFD:
        return _bfd_view(context)
    if not context[0].startswith("router bgp "):
        return None
    if len(context) == 1:
        return "bgp"
    return "af" if context[1] == AF else None


# --- rendering --------------------------------------------------------------


def config_statements(config, mask=False):
    """The statements FRR's ``show running-config`` holds for `config`, in FRR's order.

    `mask` hides passwords (for diffs and returned commands).
    """
    if mask:
        config = bgp_resource.masked_passwords(config)
    statements = []
    profile = None
    for view, line in TABLE.render(config):
        if view == "bfd":
            profile = line
        statements.append((_context(view, config.asn, profile), line))
    return statements


def _in_bfd(statement):
    return bool(statement[0]) and statement[0][0] == BFD


def _bfd_text(statements):
    """The ``bfd`` block as ``show running-config`` lays it out, for the owned profiles."""
    text = []
    for context, line in statements:
        if len(context) == 1:
            if text:
                text += [" exit", " !"]
            text.append(" " + line)
        else:
            text.append("  " + line)
    return [BFD, *text, " exit", " !", "exit", "!"] if text else []


def statements_text(statements):
    """FRR configuration text for statements, laid out as ``show running-config`` does."""
    text = []
    previous_plain = False
    bfd = [s for s in statements if _in_bfd(s)]
    statements = [s for s in statements if not _in_bfd(s)]
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
    text += _bfd_text(bfd)
    return "\n".join(text) + "\n" if text else ""


def config_text(config, mask=False):
    return statements_text(config_statements(config, mask))


# --- ownership and parsing --------------------------------------------------------


def _top_level(line):
    """The context a top-level line opens and the statement it is, if owned."""
    if TABLE.owns("top", line):
        opens = line.startswith(("router bgp ", "route-map "))
        return ((line,) if opens else ()), ((), line)
    if line.startswith("route-map "):
        return (line,), None
    if line == BFD:
        return (BFD,), None  # bfdd's node: only the profiles in it may be the module's
    if line.startswith("router "):
        return ("other",), None  # another VRF or protocol: not ours
    return (), None


def owned_statements(text):
    """The statements of ``show running-config`` (or a config file) that this module owns."""
    out = []
    context = ()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("!"):
            continue
        if line in ("exit", "end"):
            # an indented exit leaves a node inside a top-level one (a bfd profile)
            context = context[:1] if raw.startswith(" ") else ()
        elif line == "exit-address-family":
            context = context[:1]
        elif not raw.startswith(" "):
            context, statement = _top_level(line)
            if statement:
                out.append(statement)
        elif context and context != ("other",):
            if line.startswith("address-family ") and context[0].startswith("router bgp "):
                context = (context[0], line)
            elif context == (BFD,) and line.startswith("profile "):
                if TABLE.owns("bfd", line):
                    out.append((context, line))
                context = (BFD, line)
            elif context == (BFD,) and line.startswith("peer "):
                # a static bfdd peer: its lines (a "profile NAME" naming even one of the
                # module's profiles) are the peer's, never a profile definition
                context = (BFD, line)
            elif _view(context) is not None and TABLE.owns(_view(context), line):
                out.append((context, line))
    return out


def parse_config(text):
    """The BgpConfig of a running configuration, or None when it has no ``router bgp``.

    Raises FrrBgpConfigError for an owned line it cannot read (a hand-edited file), and for
    a neighbour naming a BFD profile other than the module's ``PORTER-LB-BFD-*``.
    """
    statements = owned_statements(text)
    headers = [
        line for context, line in statements if not context and line.startswith("router bgp ")
    ]
    if not headers:
        return None
    # only the first router bgp counts; its AS is in the header, skipped with the others
    ours = [(c, line) for c, line in statements if c[:1] in ((), (headers[0],))]
    _refuse_foreign_profiles(text, headers[0])
    profiles = _read_profiles(s for s in statements if _in_bfd(s))
    fields, neighbors = config_lines.read_statements(
        TABLE,
        [(c, line) for c, line in ours if not line.startswith("router bgp ")],
        _view,
        "address",
    )
    fields = {"ebgp_requires_policy": True, "multipath_relax": False, "pools": (), **fields}
    fields["asn"] = int(headers[0].split()[2])
    for name, entry in neighbors.items():
        if not entry.get("peer_group") and not _is_address(name):
            raise FrrBgpConfigError(
                "running_config",
                "neighbor " + name,
                "is neither an IP address nor a peer group ('neighbor %s peer-group')" % name,
            )
    for entry in neighbors.values():
        _read_bfd(entry, profiles)
    fields["neighbors"] = tuple(
        sorted(
            (Neighbor(**{"remote_as": "", **entry}) for entry in neighbors.values()),
            key=bgp_resource.neighbor_order,
        )
    )
    return BgpConfig(**fields)


def _read_profiles(statements):
    """The owned profiles' timers by name (a timer bfdd does not show is the default)."""
    profiles = {}
    for context, line in statements:
        if len(context) == 1:
            profiles[TABLE.match("bfd", line)[1]["profile"]] = {}
        else:
            shape, match = TABLE.match("bfd_profile", line)
            profiles[TABLE.match("bfd", context[1])[1]["profile"]].update(shape.values(match))
    return profiles


_FOREIGN_PROFILE = re.compile(r"^ neighbor (\S+) bfd profile (\S+)$")


def _refuse_foreign_profiles(text, header):
    """Raise for a neighbour of `header` (the owned ``router bgp``) that names a BFD profile
    the module does not own.  Its timers are not the module's to read, and any BFD the
    module wrote for that neighbour would replace the profile (``neighbor X bfd profile``)
    or drop it (``no neighbor X bfd``): the user must settle it, not the module."""
    inside = False
    for raw in text.splitlines():
        if not raw.startswith(" "):
            inside = raw.strip() == header
            continue
        match = _FOREIGN_PROFILE.match(raw.rstrip()) if inside else None
        if match and not match.group(2).startswith(BFD_PROFILE_PREFIX):
            address, profile = match.groups()
            raise FrrBgpConfigError(
                "neighbor %s" % address,
                "bfd profile " + profile,
                "a BFD profile frr_bgp does not own (it owns %s*): it neither reads its timers "
                "nor replaces or removes it; remove 'neighbor %s bfd profile %s' on the router, "
                "or name one of the module's profiles" % (BFD_PROFILE_PREFIX, address, profile),
            )


def _read_bfd(entry, profiles):
    """A neighbour's ``bfd`` and ``bfd profile`` lines (read into `entry`) as its Bfd (only
    the module's profiles are read: parse_config refuses another)."""
    enabled = entry.pop("bfd", False)
    profile = entry.pop("bfd_profile", None)
    if enabled or profile is not None:
        entry["bfd"] = Bfd(True, **profiles.get(profile, {}))


def _is_address(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# --- difference -------------------------------------------------------------


def _replacing_key(context, line):
    """What a new line replaces in place (see config_lines.Line.key), or None."""
    view = _view(context)
    key = TABLE.key(view, line) if view is not None else None
    return None if key is None else (context, key)


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

    removed_bfd = {
        (c, line) for c, line in before if line.endswith(" bfd") and (c, line) not in after_set
    }

    def covered(context, line):
        if context and context[0] in gone_routers:
            return True
        if _in_bfd((context, line)):  # inside a profile that goes as a whole
            return len(context) == 2 and ((BFD,), context[1]) not in after_set
        profile = re.match(r"^(neighbor \S+ bfd) profile ", line)
        if profile and (context, profile.group(1)) in removed_bfd:
            return True  # "no neighbor X bfd" removes the profile too
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
        or _in_bfd((context, line))  # profiles exist before neighbours name them
    ]
    bgp_added = [s for s in added if s not in top_added]

    ops = [((), "no " + router) for router in gone_routers]
    ops += top_added
    listen_removals = [s for s in removed if s[1].startswith("bgp listen range ")]
    for context, line in listen_removals + [s for s in removed if s not in listen_removals]:
        if not context or context[0].startswith("route-map ") or context[0] == BFD:
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
    # profiles go once no neighbour names them
    for context, line in removed:
        if (
            _in_bfd((context, line))
            and not covered(context, line)
            and _replacing_key(context, line) not in replaced_keys
        ):
            ops.append((context, _negate(line)))
    return ops


_NEIGHBOR_BFD = re.compile(r"^neighbor \S+ bfd(?: profile \S+)?$")


def uses_bfd(statements):
    """Whether `statements` hold a BFD line (``neighbor X bfd``, its profile, or a line in
    bfdd's node): bfdd must run for them, even for the default timers (no profile)."""
    return any(_in_bfd(s) or _NEIGHBOR_BFD.match(s[1]) for s in statements)


def bfdd_running(show_daemons):
    """Whether vtysh's ``show daemons`` (the daemons it reaches, e.g. `` zebra bgpd bfdd``)
    lists bfdd."""
    return "bfdd" in show_daemons.split()


def missing_statements(sent, shown):
    """The (context, line) statements of `sent` that `shown` lacks.  Pairs, not lines: the
    same line (``detect-multiplier 5``) may stand in several profiles."""
    shown = set(shown)
    return [s for s in sent if s not in shown]


def commands_for(ops):
    """vtysh commands (after ``configure terminal``) for operations, entering and leaving
    each context as needed."""
    return bgp_resource.view_commands(ops, ("router bgp ", "route-map "), _leave)


def _leave(view):
    return "exit-address-family" if view.startswith("address-family") else "exit"


# --- resource states ----------------------------------------------------------


class _StateRules(network_resource.StateRules):
    """frr_bgp's answers to the shared states (network_resource): neighbours matched by
    address and merged field by field, another AS starts over, ``replaced`` resets the
    settings it does not give, multipath_relax stays on once derived or set."""

    view_option = "asn"
    derived = ("multipath_relax",)

    def validate(self, data, partial=False):
        return config_from_dict(data, whole=not partial)

    def wanted(self, data):
        # merged lays the validated options over the running ones (unset: None or empty)
        return config_from_dict(data, whole=False).to_dict()

    def is_given(self, value):
        return value is not None and value != []

    def settled(self, data):
        # True stays; False is derived again from all the neighbours
        return {**data, "multipath_relax": data.get("multipath_relax") or None}

    def render(self, config):
        return config_text(config)

    def parse(self, text):
        return parse_config(text)


RULES = _StateRules()
