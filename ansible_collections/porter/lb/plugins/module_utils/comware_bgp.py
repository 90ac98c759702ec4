# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""The cluster-facing BGP configuration of an H3C Comware 7 switch, as data.

A typed model (:class:`BgpConfig`, :class:`Neighbor`) shaped like frr_bgp's, its rendering
to Comware configuration statements and text, the parser of ``display
current-configuration`` back to the model, the resource-state merges, and the difference
between two configurations as the ordered commands (entered after ``system-view``) that
turn one into the other, removals spelled ``undo ...``.

What this module owns on the switch:

* in the default instance's ``bgp <asn>`` view: ``router-id``, ``timer keepalive K hold H``,
  ``graceful-restart``, peer groups (``group <name> external|internal``), peers and groups'
  ``as-number``, ``description``, ``connect-interface``, ``ebgp-max-hop``, ``password``,
  ``timer keepalive K hold H``, and the dynamic peer ranges ``peer <net> <len> group <name>``;
* in its ``address-family ipv4 unicast`` view: ``balance [ebgp|ibgp|eibgp] N``, ``balance
  as-path-relax``, each neighbour's ``enable``, ``additional-paths receive`` and, with EIP
  pools, ``route-policy PORTER-LB-EIP-IN import`` / ``route-policy PORTER-LB-DENY-OUT export``;
* the policies generated for the EIP pools: ``ip prefix-list PORTER-LB-EIP-POOLS`` (each
  pool's /32 host routes), ``route-policy PORTER-LB-EIP-IN permit node 10`` (matching it) and
  ``route-policy PORTER-LB-DENY-OUT deny node 10``.

Any other line is left alone.  As in frr_bgp, a configuration is held as *statements*: a view
(``()`` for system view, ``("bgp 65000",)``, ``("bgp 65000", "address-family ipv4 unicast")``)
and one line in Comware's spelling, so a difference is a difference of statement lists.

The command syntax follows H3C's Comware 7 command references (BGP and routing-policy
chapters of the S6800/S6850/S9850 and HPE FlexFabric 5710 Layer 3 IP Routing command
references); it has not been run against a switch here (see docs/comware.md).

PURE: standard library only, no I/O, no Ansible imports (see addresses.py).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from ansible_collections.porter.lb.plugins.module_utils import bgp_resource

__all__ = [
    "AF",
    "BALANCE_KINDS",
    "PREFIX_LIST",
    "ROUTE_POLICY_IN",
    "ROUTE_POLICY_OUT",
    "BgpConfig",
    "ComwareBgpConfigError",
    "Neighbor",
    "commands_for",
    "config_from_dict",
    "config_statements",
    "config_text",
    "deleted_config",
    "diff_statements",
    "keep_device_passwords",
    "masked",
    "merged_config",
    "owned_statements",
    "parse_config",
    "parse_peer_states",
    "replaced_config",
    "statements_text",
]

PREFIX_LIST = "PORTER-LB-EIP-POOLS"
ROUTE_POLICY_IN = "PORTER-LB-EIP-IN"
ROUTE_POLICY_OUT = "PORTER-LB-DENY-OUT"
AF = "address-family ipv4 unicast"
MAX_ASN = 4294967295
MAX_BALANCE = 32  # balance's documented range is 1 to 32 on Comware 7 (some models: 64)
MAX_EBGP_HOP = 255
BALANCE_KINDS = ("ebgp", "ibgp", "eibgp")
_GROUP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,46}$")  # 1 to 47 characters
_INTERFACE = re.compile(r"^[A-Za-z][A-Za-z-]*\d+(?:[/:.]\d+)*$")


class ComwareBgpConfigError(bgp_resource.BgpOptionError):
    """An option breaks a rule; the message names the option, the value and the rule."""


@dataclasses.dataclass(frozen=True)
class Neighbor(bgp_resource.PlainData):
    """A BGP peer (an IPv4 address) or a peer group (a name) with its dynamic peer ranges.

    ``password`` is the plain text given to the module, or, when parsed from the switch,
    the ``cipher`` text Comware stores instead.
    """

    address: str
    remote_as: str  # an AS number; for a peer group also "external" or "internal"
    peer_group: bool = False
    description: str | None = None
    password: str | None = None
    keepalive: int | None = None
    hold_time: int | None = None
    connect_interface: str | None = None
    ebgp_max_hop: int | None = None
    additional_paths_receive: bool = False
    listen_ranges: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BgpConfig(bgp_resource.PlainData):
    """The owned part of ``bgp <asn>`` and its policies.

    ``maximum_paths`` is ``balance``'s number, ``maximum_paths_for`` its keyword (None: plain
    ``balance N``, EBGP and IBGP routes each).  ``pools`` non-empty means explicit policies on
    every neighbour: import the pools' /32s, export nothing.
    """

    asn: int
    router_id: str | None = None
    keepalive: int | None = None
    hold_time: int | None = None
    graceful_restart: bool = False
    multipath_relax: bool = False
    maximum_paths: int | None = None
    maximum_paths_for: str | None = None
    pools: tuple[str, ...] = ()
    neighbors: tuple[Neighbor, ...] = ()


# --- validation -------------------------------------------------------------


def _int(field, value, low, high):
    return bgp_resource.integer(ComwareBgpConfigError, field, value, low, high)


def _timers(field, keepalive, hold_time):
    keepalive, hold_time = bgp_resource.timers(
        ComwareBgpConfigError, field, keepalive, hold_time, keepalive_max=21845
    )
    if hold_time is not None and hold_time != 0 and keepalive * 3 > hold_time:
        raise ComwareBgpConfigError(
            field + ".keepalive", keepalive, "Comware wants it at most a third of hold_time"
        )
    return keepalive, hold_time


def _text(field, value, spaces=True):
    value = bgp_resource.one_line(ComwareBgpConfigError, field, value)
    if value is not None and not spaces and " " in value:
        raise ComwareBgpConfigError(field, value, "must be one word (no spaces)")
    return value


def _password(field, value):
    """A plain-text password, or ``cipher <text>``: the encrypted form Comware displays."""
    if value is None:
        return None
    text = _text(field, value)
    secret = text[len("cipher ") :] if text.startswith("cipher ") else text
    if not secret or " " in secret:
        raise ComwareBgpConfigError(
            field, bgp_resource.MASK, "must be one word (or 'cipher <text>')"
        )
    return text


def _bool(value):
    return bool(value) if value is not None else False


def _listen_ranges(field, networks, peer_group, remote_as):
    ranges = []
    for network in networks or ():
        if not peer_group:
            raise ComwareBgpConfigError(
                field + ".listen_ranges", network, "only a peer group (peer_group: true) listens"
            )
        if remote_as == "external":
            raise ComwareBgpConfigError(
                field + ".remote_as",
                remote_as,
                "dynamic peers take their AS from the group: give the group an AS number",
            )
        try:
            ranges.append(str(ipaddress.IPv4Network(str(network))))
        except ValueError:
            raise ComwareBgpConfigError(
                field + ".listen_ranges",
                network,
                "must be an IPv4 network with no host bits set",
            ) from None
    return ranges


def _neighbor(index, data, asn):
    field = "neighbors[%d]" % index
    if not isinstance(data, dict):
        raise ComwareBgpConfigError(field, data, "must be a dictionary")
    address = _text(field + ".address", data.get("address"))
    if address is None:
        raise ComwareBgpConfigError(field + ".address", None, "is required")
    peer_group = bool(data.get("peer_group"))
    if peer_group:
        if not _GROUP_NAME.match(address):
            raise ComwareBgpConfigError(
                field + ".address",
                address,
                "a peer group is named by a word of 1 to 47 characters (letters, digits, '_', "
                "'.', '-'), starting with a letter",
            )
    else:
        try:
            address = str(ipaddress.IPv4Address(address))
        except ValueError:
            raise ComwareBgpConfigError(
                field + ".address",
                address,
                "must be an IPv4 address (address-family ipv4 unicast), or set peer_group: true",
            ) from None
    remote_as = data.get("remote_as")
    if remote_as is None:
        raise ComwareBgpConfigError(field + ".remote_as", None, "is required")
    remote_as = str(remote_as)
    if remote_as in ("external", "internal"):
        if not peer_group:
            raise ComwareBgpConfigError(
                field + ".remote_as",
                remote_as,
                "a peer needs an AS number (external/internal name a peer group's type)",
            )
    else:
        remote_as = str(_int(field + ".remote_as", remote_as, 1, MAX_ASN))
        if peer_group and remote_as == str(asn):
            remote_as = "internal"  # Comware: `group NAME internal`, no as-number
    keepalive, hold_time = _timers(field, data.get("keepalive"), data.get("hold_time"))
    ranges = _listen_ranges(field, data.get("listen_ranges"), peer_group, remote_as)
    interface = _text(field + ".connect_interface", data.get("connect_interface"), spaces=False)
    if interface is not None and not _INTERFACE.match(interface):
        raise ComwareBgpConfigError(
            field + ".connect_interface",
            interface,
            "must be an interface name such as Vlan-interface100 or LoopBack0",
        )
    return Neighbor(
        address=address,
        remote_as=remote_as,
        peer_group=peer_group,
        description=_text(field + ".description", data.get("description")),
        password=_password(field + ".password", data.get("password")),
        keepalive=keepalive,
        hold_time=hold_time,
        connect_interface=interface,
        ebgp_max_hop=_int(field + ".ebgp_max_hop", data.get("ebgp_max_hop"), 1, MAX_EBGP_HOP),
        additional_paths_receive=_bool(data.get("additional_paths_receive")),
        listen_ranges=tuple(ranges),
    )


def _check_unique(neighbors):
    bgp_resource.unique_addresses(ComwareBgpConfigError, neighbors)
    ranges = {}
    for index, neighbor in enumerate(neighbors):
        for network in neighbor.listen_ranges:
            if network in ranges:
                raise ComwareBgpConfigError(
                    "neighbors[%d].listen_ranges" % index,
                    network,
                    "already listened on by peer group %r" % ranges[network],
                )
            ranges[network] = neighbor.address


def _balance(data):
    maximum_paths = _int("maximum_paths", data.get("maximum_paths"), 1, MAX_BALANCE)
    maximum_paths_for = data.get("maximum_paths_for")
    if maximum_paths_for is not None:
        if maximum_paths_for not in BALANCE_KINDS:
            raise ComwareBgpConfigError(
                "maximum_paths_for",
                maximum_paths_for,
                "must be one of %s" % ", ".join(BALANCE_KINDS),
            )
        if maximum_paths is None:
            raise ComwareBgpConfigError(
                "maximum_paths_for", maximum_paths_for, "needs maximum_paths"
            )
    return maximum_paths, maximum_paths_for


def config_from_dict(data):
    """Validate module options (snake_case, as in the module's ``config``) into a BgpConfig.

    ``multipath_relax`` None means: decide from the neighbours' ASNs.
    """
    asn = _int("asn", data.get("asn"), 1, MAX_ASN)
    if asn is None:
        raise ComwareBgpConfigError("asn", None, "is required")
    router_id = bgp_resource.ipv4_router_id(ComwareBgpConfigError, data.get("router_id"))
    keepalive, hold_time = _timers("timers", data.get("keepalive"), data.get("hold_time"))
    neighbors = tuple(_neighbor(i, n, asn) for i, n in enumerate(data.get("neighbors") or ()))
    _check_unique(neighbors)
    pools = []
    for pool in data.get("pools") or ():
        try:
            pools.append(str(ipaddress.IPv4Network(str(pool))))
        except ValueError:
            raise ComwareBgpConfigError(
                "pools", pool, "must be an IPv4 network with no host bits set"
            ) from None
    maximum_paths, maximum_paths_for = _balance(data)
    relax = data.get("multipath_relax")
    return BgpConfig(
        asn=asn,
        router_id=router_id,
        keepalive=keepalive,
        hold_time=hold_time,
        graceful_restart=_bool(data.get("graceful_restart")),
        multipath_relax=bgp_resource.wants_multipath_relax(neighbors)
        if relax is None
        else bool(relax),
        maximum_paths=maximum_paths,
        maximum_paths_for=maximum_paths_for,
        pools=tuple(pools),
        neighbors=tuple(sorted(neighbors, key=bgp_resource.neighbor_order)),
    )


# --- resource states ----------------------------------------------------------


def _given(data):
    """The options a user gave: Ansible passes the others as None."""
    return {k: v for k, v in data.items() if v is not None}


def merged_config(have, data):
    """`have` with the options given in `data` (module options) merged in: the settings it
    gives replace those running, the neighbours it lists are merged field by field, the
    others are kept.  Validated as a whole once merged."""
    if have is None or (data.get("asn") is not None and int(data["asn"]) != have.asn):
        return config_from_dict(data)
    result = have.to_dict()
    result["multipath_relax"] = have.multipath_relax or None  # else: decided again
    given = _given(data)
    by_address = {n["address"]: n for n in result["neighbors"]}
    for option in given.pop("neighbors", ()) or ():
        entry = _given(option)
        old = by_address.get(entry.get("address"))
        if old is None:
            result["neighbors"].append(entry)
        else:
            old.update(entry)
    result.update(given)
    return config_from_dict(result)


def replaced_config(have, data):
    """`data` as the global settings, its neighbours replacing those of the same address;
    running neighbours it does not list are kept."""
    want = config_from_dict(data)
    if have is None or have.asn != want.asn:
        return want
    listed = {n.address for n in want.neighbors}
    result = want.to_dict()
    result["neighbors"] += [n.to_dict() for n in have.neighbors if n.address not in listed]
    result["multipath_relax"] = data.get("multipath_relax")
    return config_from_dict(result)


def deleted_config(have, names):
    """`have` without the neighbours named (None: without any BGP at all)."""
    if have is None or not names:
        return None
    result = have.to_dict()
    result["neighbors"] = [n for n in result["neighbors"] if n["address"] not in names]
    result["multipath_relax"] = have.multipath_relax or None
    return config_from_dict(result)


# --- rendering --------------------------------------------------------------


def _peer_lines(n, mask):
    name = n.address
    lines = []
    if n.peer_group:
        kind = "internal" if n.remote_as == "internal" else "external"
        lines.append("group %s %s" % (name, kind))
        if n.remote_as not in ("external", "internal"):
            lines.append("peer %s as-number %s" % (name, n.remote_as))
    else:
        lines.append("peer %s as-number %s" % (name, n.remote_as))
    if n.description is not None:
        lines.append("peer %s description %s" % (name, n.description))
    if n.connect_interface is not None:
        lines.append("peer %s connect-interface %s" % (name, n.connect_interface))
    if n.ebgp_max_hop is not None:
        lines.append("peer %s ebgp-max-hop %d" % (name, n.ebgp_max_hop))
    if n.password is not None:
        if n.password.startswith("cipher "):
            lines.append("peer %s password %s" % (name, n.password))
        else:
            lines.append(
                "peer %s password simple %s" % (name, bgp_resource.MASK if mask else n.password)
            )
    if n.keepalive is not None:
        lines.append("peer %s timer keepalive %d hold %d" % (name, n.keepalive, n.hold_time))
    return lines


def _range(network):
    net = ipaddress.IPv4Network(network)
    return "%s %d" % (net.network_address, net.prefixlen)


def config_statements(config, mask=False):
    """The statements ``display current-configuration`` holds for `config`.

    `mask` hides plain-text passwords (for diffs and returned commands).
    """
    bgp = ("bgp %d" % config.asn,)
    af = (*bgp, AF)
    out = []
    for index, pool in enumerate(config.pools):
        out.append(
            (
                (),
                "ip prefix-list %s index %d permit %s greater-equal 32 less-equal 32"
                % (PREFIX_LIST, 10 * (index + 1), _range(pool)),
            )
        )
    if config.pools:
        policy_in = "route-policy %s permit node 10" % ROUTE_POLICY_IN
        out.append(((), policy_in))
        out.append(((policy_in,), "if-match ip address prefix-list " + PREFIX_LIST))
        out.append(((), "route-policy %s deny node 10" % ROUTE_POLICY_OUT))
    out.append(((), bgp[0]))
    if config.router_id is not None:
        out.append((bgp, "router-id " + config.router_id))
    if config.keepalive is not None:
        out.append((bgp, "timer keepalive %d hold %d" % (config.keepalive, config.hold_time)))
    if config.graceful_restart:
        out.append((bgp, "graceful-restart"))
    for neighbor in config.neighbors:
        out.extend((bgp, line) for line in _peer_lines(neighbor, mask))
    for neighbor in config.neighbors:
        out.extend(
            (bgp, "peer %s group %s" % (_range(network), neighbor.address))
            for network in neighbor.listen_ranges
        )
    if config.maximum_paths is not None:
        kind = config.maximum_paths_for + " " if config.maximum_paths_for else ""
        out.append((af, "balance %s%d" % (kind, config.maximum_paths)))
    if config.multipath_relax:
        out.append((af, "balance as-path-relax"))
    for neighbor in config.neighbors:
        out.append((af, "peer %s enable" % neighbor.address))
        if neighbor.additional_paths_receive:
            out.append((af, "peer %s additional-paths receive" % neighbor.address))
        if config.pools:
            out.append((af, "peer %s route-policy %s import" % (neighbor.address, ROUTE_POLICY_IN)))
            out.append(
                (af, "peer %s route-policy %s export" % (neighbor.address, ROUTE_POLICY_OUT))
            )
    return out


def statements_text(statements):
    """Comware configuration text for statements, laid out as ``display
    current-configuration`` does: ``#`` between top-level blocks, one space of indent per
    view, `` #`` before an address family."""
    text = []
    for header, lines, af_lines in bgp_resource.statement_blocks(statements):
        text.append("#")
        text.append(header)
        text.extend(" " + line for line in lines)
        if af_lines:
            text.append(" #")
            text.append(" " + AF)
            text.extend("  " + line for line in af_lines)
    if text:
        text.append("#")
    return "\n".join(text) + "\n" if text else ""


def config_text(config, mask=False):
    return statements_text(config_statements(config, mask))


# --- parsing ----------------------------------------------------------------

_PEER = r"peer (?:\S+|\d+\.\d+\.\d+\.\d+ \d+)"
# Lines this module owns in bgp view (context length 1) and its ipv4 unicast family (2).
_BGP_LINES = [
    re.compile(r"^router-id \S+$"),
    re.compile(r"^timer keepalive \d+ hold \d+$"),
    re.compile(r"^graceful-restart$"),
    re.compile(r"^group \S+ (?:external|internal)$"),
    re.compile(r"^group \S+$"),  # an internal group: Comware may show it without the type
    re.compile(r"^peer \S+ as-number \d+$"),
    re.compile(r"^peer \S+ description .+$"),
    re.compile(r"^peer \S+ connect-interface \S+$"),
    re.compile(r"^peer \S+ ebgp-max-hop \d+$"),
    re.compile(r"^peer \S+ password (?:cipher|simple) \S+$"),
    re.compile(r"^peer \S+ timer keepalive \d+ hold \d+$"),
    re.compile(r"^peer \d+\.\d+\.\d+\.\d+ \d+ group \S+$"),
]
_AF_LINES = [
    re.compile(r"^balance (?:(?:ebgp|ibgp|eibgp) )?\d+$"),
    re.compile(r"^balance as-path-relax$"),
    re.compile(r"^peer \S+ enable$"),
    re.compile(r"^peer \S+ additional-paths receive$"),
    re.compile(r"^peer \S+ route-policy %s import$" % ROUTE_POLICY_IN),
    re.compile(r"^peer \S+ route-policy %s export$" % ROUTE_POLICY_OUT),
]
_OWNED_POLICIES = (
    "route-policy %s permit node 10" % ROUTE_POLICY_IN,
    "route-policy %s deny node 10" % ROUTE_POLICY_OUT,
)


def _top_level(line):
    """The view a top-level line opens and the statement it is, if owned."""
    if re.match(r"^bgp \d+$", line):
        return (line,), ((), line)
    if line.startswith("route-policy "):
        return (line,), (((), line) if line in _OWNED_POLICIES else None)
    if line.startswith("ip prefix-list %s index " % PREFIX_LIST):
        return (), ((), line)
    return ("other",), None  # another view (bgp N instance X, interface ...): not ours


def _owned_in(context, line):
    if context[0].startswith("route-policy "):
        return context[0] == _OWNED_POLICIES[0] and line == (
            "if-match ip address prefix-list " + PREFIX_LIST
        )
    if len(context) == 1:
        return any(p.match(line) for p in _BGP_LINES)
    return context[1] == AF and any(p.match(line) for p in _AF_LINES)


def owned_statements(text):
    """The statements of ``display current-configuration`` (whole, or its bgp part) that this
    module owns."""
    out = []
    context = ()
    for raw in text.splitlines():
        line = raw.strip()
        if raw.rstrip() == "#":
            context = ()  # the end of a top-level view
        if not line or line.startswith("#") or line in ("return", "quit"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        if indent == 0:
            context, statement = _top_level(line)
            if statement:
                out.append(statement)
        elif indent == 1 and context and context[0] != "other":
            context = context[:1]
            if context[0].startswith("bgp ") and (
                line.startswith("address-family ") or line.startswith("ip vpn-instance ")
            ):
                context = (context[0], line)
            elif _owned_in(context, line):
                out.append((context, line))
        elif indent >= 2 and len(context) == 2 and _owned_in(context, line):
            out.append((context, line))
    # `group X` without a type is an internal group: hold it as Comware's full spelling.
    return [
        (c, line + " internal") if re.match(r"^group \S+$", line) else (c, line) for c, line in out
    ]


def _peer_line(entry, words, line):
    """Apply one owned ``peer <name> ...`` line of bgp view to a neighbour's fields."""
    rest = words[2:]
    if rest[0] == "as-number":
        entry["remote_as"] = rest[1]
    elif rest[0] == "description":
        entry["description"] = line.split(" description ", 1)[1]
    elif rest[0] == "connect-interface":
        entry["connect_interface"] = rest[1]
    elif rest[0] == "ebgp-max-hop":
        entry["ebgp_max_hop"] = int(rest[1])
    elif rest[0] == "password":
        entry["password"] = rest[2] if rest[1] == "simple" else "cipher " + rest[2]
    elif rest[0] == "timer":
        entry["keepalive"], entry["hold_time"] = int(rest[2]), int(rest[4])


def parse_config(text):
    """The BgpConfig of a running configuration, or None when it has no ``bgp <asn>``."""
    statements = owned_statements(text)
    headers = [line for context, line in statements if not context and line.startswith("bgp ")]
    if not headers:
        return None
    fields = {"asn": int(headers[0].split()[1]), "multipath_relax": False, "pools": []}
    neighbors = {}

    def neighbor(name):
        return neighbors.setdefault(name, {"address": name, "remote_as": ""})

    for context, line in statements:
        try:
            _parse_line(fields, neighbor, headers[0], context, line)
        except (ValueError, IndexError):
            raise ComwareBgpConfigError(
                "running_config", line, "is not a line this module can read"
            ) from None
    for name, entry in neighbors.items():
        if not entry.get("peer_group"):
            try:
                ipaddress.IPv4Address(name)
            except ValueError:
                raise ComwareBgpConfigError(
                    "running_config",
                    name,
                    "a peer must be an IPv4 address or a group defined by a 'group' line",
                ) from None
    fields["pools"] = tuple(fields["pools"])
    fields["neighbors"] = tuple(
        sorted((Neighbor(**entry) for entry in neighbors.values()), key=bgp_resource.neighbor_order)
    )
    return BgpConfig(**fields)


def _parse_line(fields, neighbor, header, context, line):
    """Apply one owned statement to the fields of the BgpConfig being read."""
    words = line.split()
    if not context and line.startswith("ip prefix-list "):
        fields["pools"].append("%s/%s" % (words[6], words[7]))
    elif not context or context[0] != header:
        return
    elif len(context) == 2:
        _af_line(fields, neighbor, words)
    elif words[0] == "group":
        entry = neighbor(words[1])
        entry["peer_group"] = True
        if not entry["remote_as"] or words[2] == "internal":
            entry["remote_as"] = words[2]
    elif words[0] == "peer" and len(words) == 5 and words[3] == "group":
        entry = neighbor(words[4])
        network = "%s/%s" % (words[1], words[2])
        entry["listen_ranges"] = (*entry.get("listen_ranges", ()), network)
    elif words[0] == "peer":
        _peer_line(neighbor(words[1]), words, line)
    elif words[0] == "router-id":
        fields["router_id"] = words[1]
    elif words[0] == "timer":
        fields["keepalive"], fields["hold_time"] = int(words[2]), int(words[4])
    elif words[0] == "graceful-restart":
        fields["graceful_restart"] = True


def _af_line(fields, neighbor, words):
    if words[0] == "balance" and words[1] == "as-path-relax":
        fields["multipath_relax"] = True
    elif words[0] == "balance":
        fields["maximum_paths"] = int(words[-1])
        if len(words) == 3:
            fields["maximum_paths_for"] = words[1]
    elif words[0] == "peer" and words[2:] == ["additional-paths", "receive"]:
        neighbor(words[1])["additional_paths_receive"] = True


# --- passwords ----------------------------------------------------------------

_PASSWORD = re.compile(r"^(peer \S+ password) (?:cipher|simple) ")


def keep_device_passwords(before, after):
    """`after` with each plain-text password replaced by the cipher text `before` holds for
    the same peer.

    Comware stores a password only as cipher text, so a running password cannot be compared
    with a wanted one; with ``update_password: on_create`` a peer that has one keeps it.
    """
    held = {}
    for context, line in before:
        match = _PASSWORD.match(line)
        if match:
            held[(context, match.group(1))] = line
    out = []
    for context, line in after:
        match = _PASSWORD.match(line)
        key = (context, match.group(1)) if match else None
        out.append((context, held.get(key, line)) if key else (context, line))
    return out


def masked(text):
    """`text` (commands or configuration) with every peer password hidden."""
    return re.sub(
        r"^(\s*(?:undo )?peer \S+ password (?:cipher|simple) ).*$",
        r"\1" + bgp_resource.MASK,
        text,
        flags=re.M,
    )


# --- difference -------------------------------------------------------------

# Lines a new value replaces in place: the key is the line without its value, and it is also
# what `undo` takes to remove the line.
_KEYED = [
    re.compile(r"^(router-id) "),
    re.compile(r"^(timer) keepalive "),
    re.compile(r"^(peer \S+ description) "),
    re.compile(r"^(peer \S+ connect-interface) "),
    re.compile(r"^(peer \S+ ebgp-max-hop) "),
    re.compile(r"^(peer \S+ password) "),
    re.compile(r"^(peer \S+ timer) keepalive "),
    re.compile(r"^(ip prefix-list \S+ index \d+) "),
]
# Lines removed by an `undo` of their first words (no in-place replacement).
_UNDO_PREFIX = [
    re.compile(r"^(balance(?: (?:ebgp|ibgp|eibgp))?) \d+$"),
    re.compile(r"^(peer \S+ route-policy \S+ (?:import|export))$"),
]


def _keyed(line):
    for pattern in _KEYED:
        match = pattern.match(line)
        if match:
            return match.group(1)
    return None


def _undo(line):
    """The command that removes a line."""
    key = _keyed(line)
    if key is not None:
        return "undo " + key
    for pattern in _UNDO_PREFIX:
        match = pattern.match(line)
        if match:
            return "undo " + match.group(1)
    if line.startswith("group "):
        return "undo group " + line.split()[1]
    return "undo " + line


def _identity(statements):
    """Each peer's or group's defining line (as-number, group type): a change of it means
    removing the peer and creating it again, as Comware does not change a peer's AS or a
    group's type in place."""
    names = {}
    for context, line in statements:
        words = line.split()
        if len(context) != 1:
            continue
        if words[0] == "group" or (words[0] == "peer" and words[2:3] == ["as-number"]):
            names.setdefault((context[0], words[1]), set()).add(line)
    return names


def _peer_name(line):
    words = line.split()
    if words[0] in ("peer", "group"):
        return words[1]
    return None


def _refers(statement, keys):
    """Whether a bgp-view or address-family statement is about one of the (view, peer) keys:
    names it, or is a dynamic range of that group."""
    context, line = statement
    if not context or not context[0].startswith("bgp "):
        return False
    words = line.split()
    if words[0] not in ("peer", "group"):
        return False
    if (context[0], words[1]) in keys:
        return True
    return len(words) == 5 and words[3] == "group" and (context[0], words[4]) in keys


def diff_statements(before, after):
    """The ordered (context, command) operations that turn `before` into `after`.

    Order: policies before anything refers to them; then removals (lines first, then whole
    peers, then the groups they may refer to), then additions in rendering order (groups
    before the ranges and address-family lines that refer to them), then the policies no
    longer wanted.  A removed peer, group or ``bgp`` view goes by one ``undo`` command, not
    line by line; a peer whose AS (or group whose type) changes is removed and created again.
    """
    before_set = set(before)
    after_set = set(after)
    after_headers = {line for context, line in after if not context}
    before_ids = _identity(before)
    after_ids = _identity(after)
    gone_routers = {
        line
        for context, line in before
        if not context and line.startswith("bgp ") and line not in after_headers
    }
    gone = {
        key
        for key, lines in before_ids.items()
        if key[0] not in gone_routers and after_ids.get(key) != lines
    }
    added = [s for s in after if s not in before_set or _refers(s, gone)]
    removed = [s for s in before if s not in after_set]
    replaced_keys = {(s[0], _keyed(s[1])) for s in added if _keyed(s[1])}
    top_added = [
        (context, line)
        for context, line in added
        if (not context and not line.startswith("bgp "))
        or (context and context[0].startswith("route-policy "))
    ]
    ops = [((), "undo " + router) for router in sorted(gone_routers)]
    ops += top_added
    ranges = [s for s in removed if s[1].split()[3:4] == ["group"] and len(s[0]) == 1]
    for context, line in ranges + [s for s in removed if s not in ranges]:
        if not context or context[0].startswith("route-policy "):
            continue
        if context[0] in gone_routers or _refers((context, line), gone):
            continue
        if (context, _keyed(line)) in replaced_keys:
            continue
        ops.append((context, _undo(line)))
    groups = {
        (context[0], line.split()[1]) for context, line in before if line.startswith("group ")
    }
    ops += [((key[0],), "undo peer " + key[1]) for key in sorted(gone) if key not in groups]
    ops += [((key[0],), "undo group " + key[1]) for key in sorted(gone) if key in groups]
    ops += [s for s in added if s not in top_added]
    for context, line in removed:
        if (
            not context
            and not line.startswith("bgp ")
            and (context, _keyed(line)) not in replaced_keys
        ):
            ops.append(((), _undo(line)))
    return ops


def commands_for(ops):
    """Commands (after ``system-view``) for operations, entering and leaving each view as
    needed with ``quit``; the last one ends back in system view."""
    return bgp_resource.view_commands(ops, ("bgp ", "route-policy "), lambda view: "quit")


# --- sessions -----------------------------------------------------------------

_PEER_ROW = re.compile(
    r"^\s*\*?\s*(?P<address>\d+\.\d+\.\d+\.\d+)\s+(?P<asn>\d+)\s+\d+\s+\d+\s+\d+\s+\d+\s+\S+\s+"
    r"(?P<state>\S+)\s*$"
)


def parse_peer_states(text):
    """Each peer's state from ``display bgp peer ipv4``'s table (Peer, AS, MsgRcvd, MsgSent,
    OutQ, PrefRcv, Up/Down, State)."""
    states = {}
    for line in text.splitlines():
        match = _PEER_ROW.match(line)
        if match:
            states[match.group("address")] = match.group("state")
    return states
