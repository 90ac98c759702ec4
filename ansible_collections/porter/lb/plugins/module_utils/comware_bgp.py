# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""The cluster-facing BGP configuration of an H3C Comware 7 switch, as data.

The model and its validation (comware_bgp_model.py, re-exported here), the parser table
(``TABLE``: one entry per line shape, which renders, owns and reads it), the layout of
``display current-configuration``, the difference between two configurations as the
ordered commands (entered after ``system-view``) that turn one into the other, removals
spelled ``undo ...``, and the rules the shared resource states follow (``RULES``, see
network_resource.py).

What this module owns on the switch is what ``TABLE`` lists: in the default instance's
``bgp <asn>`` view and its ``address-family ipv4 unicast`` the lines it knows, and the
policies generated for the EIP pools (``ip prefix-list PORTER-LB-EIP-POOLS``,
``route-policy PORTER-LB-EIP-IN permit node 10``, ``route-policy PORTER-LB-DENY-OUT deny
node 10``).

Any other line is left alone.  As in frr_bgp, a configuration is held as *statements*: a view
(``()`` for system view, ``("bgp 65000",)``, ``("bgp 65000", "address-family ipv4 unicast")``)
and one line in Comware's spelling, so a difference is a difference of statement lists.

The command syntax follows H3C's Comware 7 command references (BGP and routing-policy
chapters of the S6800/S6850/S9850 and HPE FlexFabric 5710 Layer 3 IP Routing command
references); it has not been run against a switch here (see docs/comware.md).

PURE: standard library only, no I/O, no Ansible imports (see addresses.py).
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.porter.lb.plugins.module_utils import (
    bgp_resource,
    config_lines,
    network_resource,
)
from ansible_collections.porter.lb.plugins.module_utils.comware_bgp_model import (
    BALANCE_KINDS,
    BgpConfig,
    ComwareBgpConfigError,
    Neighbor,
    config_from_dict,
)

__all__ = [
    "AF",
    "BALANCE_KINDS",
    "PREFIX_LIST",
    "ROUTE_POLICY_IN",
    "ROUTE_POLICY_OUT",
    "RULES",
    "TABLE",
    "BgpConfig",
    "ComwareBgpConfigError",
    "Neighbor",
    "commands_for",
    "config_from_dict",
    "config_statements",
    "config_text",
    "deleted_config",
    "diff_statements",
    "keep_bfd_modes",
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

# --- the parser table -------------------------------------------------------------


def _range(network):
    net = ipaddress.IPv4Network(network)
    return "%s %d" % (net.network_address, net.prefixlen)


def _pool_read(match):
    """A pool from an owned prefix-list line, read by its words as the switch spaces them."""
    words = match.string.split()
    if len(words) < 8:
        raise ComwareBgpConfigError(
            "running_config", match.string, "is not a line this module can read"
        )
    return {"pools": ("%s/%s" % (words[6], words[7]),)}


def _with_pools(config, line):
    """A line of the policies, which exist only with EIP pools."""
    return line if config.pools else None


def _group_line(n):
    if not n.peer_group:
        return None
    return "group %s %s" % (n.address, "internal" if n.remote_as == "internal" else "external")


def _password_line(n):
    if n.password is None:
        return None
    if n.password.startswith("cipher "):  # held as the switch showed it
        return "peer %s password %s" % (n.address, n.password)
    return "peer %s password simple %s" % (n.address, n.password)


_POLICY_IN = "route-policy %s permit node 10" % ROUTE_POLICY_IN
_POLICY_OUT = "route-policy %s deny node 10" % ROUTE_POLICY_OUT
_MATCH_POOLS = "if-match ip address prefix-list " + PREFIX_LIST
_POOL_KEY = r"^(ip prefix-list \S+ index \d+) "
_P = r"^peer (?P<address>\S+) "
_line, _when, _ints = config_lines.line, config_lines.when, config_lines.ints

_ITEMS = {
    "pool": lambda c: list(enumerate(c.pools, start=1)),
    "neighbor": lambda c: c.neighbors,
    "listen_range": lambda c: [(n, net) for n in c.neighbors for net in n.listen_ranges],
}

# fmt: off
TABLE = config_lines.Table([
    # system view: the policies, generated from the pools, and the bgp view's header
    _line("pool", "top", r"^ip prefix-list %s index \d+ permit \S+ \d+ greater-equal 32 "
          r"less-equal 32$" % PREFIX_LIST,
          lambda c, p: "ip prefix-list %s index %d permit %s greater-equal 32 less-equal 32"
          % (PREFIX_LIST, 10 * p[0], _range(p[1])),
          each="pool", key=_POOL_KEY, read=_pool_read, fields=("pools",)),
    # any other line of the owned prefix-list is owned too (so it is replaced)
    _line("pool_other", "top", r"^ip prefix-list %s index " % PREFIX_LIST,
          each="pool", key=_POOL_KEY, read=_pool_read, fields=("pools",)),
    _line("policy_in", "top", "^%s$" % _POLICY_IN, lambda c, _: _with_pools(c, _POLICY_IN)),
    _line("policy_in_match", "policy_in", "^%s$" % _MATCH_POOLS,
          lambda c, _: _with_pools(c, _MATCH_POOLS)),
    _line("policy_out", "top", "^%s$" % _POLICY_OUT, lambda c, _: _with_pools(c, _POLICY_OUT)),
    _line("bgp", "top", r"^bgp (?P<asn>\d+)$", lambda c, _: "bgp %d" % c.asn,
          read=_ints("asn"), fields=("asn",)),
    # bgp view
    _line("router_id", "bgp", r"^router-id (?P<router_id>\S+)$",
          lambda c, _: _when(c.router_id, "router-id %s", c.router_id),
          key=r"^(router-id) ", fields=("router_id",)),
    _line("timers", "bgp", r"^timer keepalive (?P<keepalive>\d+) hold (?P<hold_time>\d+)$",
          lambda c, _: _when(c.keepalive, "timer keepalive %d hold %d", c.keepalive,
                             c.hold_time),
          key=r"^(timer) keepalive ", read=_ints("keepalive", "hold_time"),
          fields=("keepalive", "hold_time")),
    _line("graceful_restart", "bgp", r"^graceful-restart$",
          lambda c, _: "graceful-restart" if c.graceful_restart else None,
          read=lambda m: {"graceful_restart": True}, fields=("graceful_restart",)),
    # each peer's or group's lines, one after the other; a group's AS number beats its type
    _line("group", "bgp", r"^group (?P<address>\S+) (?P<kind>external|internal)$",
          lambda c, n: _group_line(n), each="neighbor",
          read=lambda m: {"address": m["address"], "peer_group": True, "remote_as":
                          "internal" if m["kind"] == "internal"
                          else config_lines.Fallback(m["kind"])},
          fields=("peer_group", "remote_as")),
    # Comware may show an internal group without its type: owned (and read as internal)
    _line("group_untyped", "bgp", r"^group (?P<address>\S+)$", each="neighbor",
          read=lambda m: {"address": m["address"], "peer_group": True,
                          "remote_as": "internal"}, fields=("peer_group", "remote_as")),
    _line("as_number", "bgp", _P + r"as-number (?P<remote_as>\d+)$",
          lambda c, n: None if n.remote_as in ("external", "internal")
          else "peer %s as-number %s" % (n.address, n.remote_as),
          each="neighbor", fields=("remote_as",)),
    _line("description", "bgp", _P + r"description (?P<description>.+)$",
          lambda c, n: _when(n.description, "peer %s description %s", n.address,
                             n.description),
          each="neighbor", key=r"^(peer \S+ description) ", fields=("description",)),
    _line("connect_interface", "bgp", _P + r"connect-interface (?P<connect_interface>\S+)$",
          lambda c, n: _when(n.connect_interface, "peer %s connect-interface %s", n.address,
                             n.connect_interface),
          each="neighbor", key=r"^(peer \S+ connect-interface) ",
          fields=("connect_interface",)),
    _line("ebgp_max_hop", "bgp", _P + r"ebgp-max-hop (?P<ebgp_max_hop>\d+)$",
          lambda c, n: _when(n.ebgp_max_hop, "peer %s ebgp-max-hop %d", n.address,
                             n.ebgp_max_hop),
          each="neighbor", key=r"^(peer \S+ ebgp-max-hop) ", read=_ints("ebgp_max_hop"),
          fields=("ebgp_max_hop",)),
    # the switch shows a password only as cipher text: a cipher password is held as such
    _line("password", "bgp", _P + r"password (?P<kind>cipher|simple) (?P<text>\S+)$",
          lambda c, n: _password_line(n), each="neighbor", key=r"^(peer \S+ password) ",
          read=lambda m: {"address": m["address"], "password": m["text"]
                          if m["kind"] == "simple" else "cipher " + m["text"]},
          fields=("password",)),
    _line("neighbor_timers", "bgp",
          _P + r"timer keepalive (?P<keepalive>\d+) hold (?P<hold_time>\d+)$",
          lambda c, n: _when(n.keepalive, "peer %s timer keepalive %d hold %d", n.address,
                             n.keepalive, n.hold_time),
          each="neighbor", key=r"^(peer \S+ timer) keepalive ",
          read=_ints("keepalive", "hold_time"), fields=("keepalive", "hold_time")),
    # BFD (a shown single-hop / multi-hop choice is owned and kept: see keep_bfd_modes)
    _line("bfd", "bgp", _P + r"bfd(?: (?:single-hop|multi-hop))?$",
          lambda c, n: "peer %s bfd" % n.address if n.bfd else None, each="neighbor",
          key=r"^(peer \S+ bfd)(?: |$)", read=lambda m: {"address": m["address"], "bfd": True},
          fields=("bfd",)),
    # the dynamic peer ranges, after every group (a range names its group)
    _line("listen_range", "bgp",
          r"^peer (?P<net>\d+\.\d+\.\d+\.\d+) (?P<len>\d+) group (?P<address>\S+)$",
          lambda c, r: "peer %s group %s" % (_range(r[1]), r[0].address),
          each="listen_range", read=lambda m: {"address": m["address"], "listen_ranges":
                                               ("%s/%s" % (m["net"], m["len"]),)},
          fields=("listen_ranges",)),
    # address-family ipv4 unicast: ECMP, then each neighbour enabled, its ADD-PATH and
    # the policies applied (derived from the pools)
    _line("balance", "af", r"^balance (?:(?P<maximum_paths_for>ebgp|ibgp|eibgp) )?"
          r"(?P<maximum_paths>\d+)$",
          lambda c, _: _when(c.maximum_paths, "balance %s%d", c.maximum_paths_for + " "
                             if c.maximum_paths_for else "", c.maximum_paths),
          read=_ints("maximum_paths"), fields=("maximum_paths", "maximum_paths_for")),
    _line("multipath_relax", "af", r"^balance as-path-relax$",
          lambda c, _: "balance as-path-relax" if c.multipath_relax else None,
          read=lambda m: {"multipath_relax": True}, fields=("multipath_relax",)),
    _line("enable", "af", r"^peer \S+ enable$", lambda c, n: "peer %s enable" % n.address,
          each="neighbor", read=lambda m: {}),
    _line("additional_paths", "af", _P + r"additional-paths receive$",
          lambda c, n: "peer %s additional-paths receive" % n.address
          if n.additional_paths_receive else None, each="neighbor",
          read=lambda m: {"address": m["address"], "additional_paths_receive": True},
          fields=("additional_paths_receive",)),
    _line("policy_in_applied", "af", r"^peer \S+ route-policy %s import$" % ROUTE_POLICY_IN,
          lambda c, n: _with_pools(c, "peer %s route-policy %s import"
                                   % (n.address, ROUTE_POLICY_IN)),
          each="neighbor", read=lambda m: {}),
    _line("policy_out_applied", "af", r"^peer \S+ route-policy %s export$" % ROUTE_POLICY_OUT,
          lambda c, n: _with_pools(c, "peer %s route-policy %s export"
                                   % (n.address, ROUTE_POLICY_OUT)),
          each="neighbor", read=lambda m: {}),
], _ITEMS)
# fmt: on
"""Comware's owned lines, one entry per shape, in the order ``display
current-configuration`` shows them."""


def _context(view, asn):
    bgp = "bgp %d" % asn
    return {"top": (), "policy_in": (_POLICY_IN,), "bgp": (bgp,), "af": (bgp, AF)}[view]


def _view(context):
    """The table's name of a context (None: a context the module does not own)."""
    if not context:
        return "top"
    if context[0] == _POLICY_IN:
        return "policy_in"
    if not context[0].startswith("bgp "):
        return None
    if len(context) == 1:
        return "bgp"
    return "af" if context[1] == AF else None


# --- rendering --------------------------------------------------------------


def config_statements(config, mask=False):
    """The statements ``display current-configuration`` holds for `config`.

    `mask` hides plain-text passwords (for diffs and returned commands).
    """
    if mask:
        config = bgp_resource.masked_passwords(config, lambda p: not p.startswith("cipher "))
    return [(_context(view, config.asn), line) for view, line in TABLE.render(config)]


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


def _top_level(line):
    """The view a top-level line opens and the statement it is, if owned."""
    statement = ((), line) if TABLE.owns("top", line) else None
    if line.startswith("route-policy ") or (statement and line.startswith("bgp ")):
        return (line,), statement
    if statement:
        return (), statement
    return ("other",), None  # another view (bgp N instance X, interface ...): not ours


def _owned_in(context, line):
    view = _view(context)
    return view is not None and TABLE.owns(view, line)


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


def parse_config(text):
    """The BgpConfig of a running configuration, or None when it has no ``bgp <asn>``."""
    statements = owned_statements(text)
    headers = [line for context, line in statements if not context and line.startswith("bgp ")]
    if not headers:
        return None
    # only the first bgp view counts; its AS is in the header, skipped with the others
    ours = [(c, line) for c, line in statements if c[:1] in ((), (headers[0],))]
    fields, neighbors = config_lines.read_statements(
        TABLE, [(c, line) for c, line in ours if not line.startswith("bgp ")], _view, "address"
    )
    fields = {"multipath_relax": False, **fields, "asn": int(headers[0].split()[1])}
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
    fields["pools"] = tuple(fields.get("pools", ()))
    fields["neighbors"] = tuple(
        sorted(
            (Neighbor(**{"remote_as": "", **entry}) for entry in neighbors.values()),
            key=bgp_resource.neighbor_order,
        )
    )
    return BgpConfig(**fields)


# --- passwords ----------------------------------------------------------------


def _password_key(context, line):
    found = TABLE.match(_view(context), line) if _view(context) else None
    return (context, TABLE.key("bgp", line)) if found and found[0].name == "password" else None


def keep_device_passwords(before, after):
    """`after` with each plain-text password replaced by the cipher text `before` holds for
    the same peer.

    Comware stores a password only as cipher text, so a running password cannot be compared
    with a wanted one; with ``update_password: on_create`` a peer that has one keeps it.
    """
    held = {_password_key(c, line): line for c, line in before if _password_key(c, line)}
    return [(c, held.get(_password_key(c, line), line)) for c, line in after]


_BFD_MODE = re.compile(r"^(peer \S+ bfd) (?:single-hop|multi-hop)$")


def keep_bfd_modes(before, after):
    """`after` with each plain ``peer X bfd`` replaced by the ``peer X bfd single-hop`` or
    ``multi-hop`` line `before` holds for the same peer.

    The model has BFD on or off only; the explicit mode is the operator's (a multi-hop
    session takes its timers from system view's ``bfd multi-hop ...``), so it stays while
    BFD stays on.  Turning BFD off still removes it (``undo peer X bfd``).
    """
    held = {}
    for context, line in before:
        match = _BFD_MODE.match(line)
        if match:
            held[(context, match.group(1))] = line
    return [(c, held.get((c, line), line)) for c, line in after]


def masked(text):
    """`text` (commands or configuration) with every peer password hidden."""
    return re.sub(
        r"^(\s*(?:undo )?peer \S+ password (?:cipher|simple) ).*$",
        r"\1" + bgp_resource.MASK,
        text,
        flags=re.M,
    )


# --- difference -------------------------------------------------------------

# A line a new value replaces in place has a key in TABLE, which `undo` takes too.
# Lines removed by an `undo` of their first words (no in-place replacement).
_UNDO_PREFIX = [
    re.compile(r"^(balance(?: (?:ebgp|ibgp|eibgp))?) \d+$"),
    re.compile(r"^(peer \S+ route-policy \S+ (?:import|export))$"),
]


def _keyed(context, line):
    view = _view(context)
    return TABLE.key(view, line) if view is not None else None


def _undo(context, line):
    """The command that removes a line."""
    key = _keyed(context, line)
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
    replaced_keys = {(s[0], _keyed(*s)) for s in added if _keyed(*s)}
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
        if (context, _keyed(context, line)) in replaced_keys:
            continue
        ops.append((context, _undo(context, line)))
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
            and (context, _keyed(context, line)) not in replaced_keys
        ):
            ops.append(((), _undo(context, line)))
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


# --- resource states ----------------------------------------------------------


class _StateRules(network_resource.StateRules):
    """comware_bgp's answers to the shared states (network_resource): neighbours matched by
    address and merged field by field, another AS starts over, ``replaced`` resets the
    settings it does not give, a running multipath_relax stays unless one is given."""

    view_option = "asn"
    derived = ("multipath_relax",)

    def validate(self, data, partial=False):
        return config_from_dict(data)

    def running(self, have):
        data = have.to_dict()
        data["multipath_relax"] = have.multipath_relax or None  # else: derived again
        return data

    def render(self, config):
        return config_text(config)

    def parse(self, text):
        return parse_config(text)


RULES = _StateRules()


def merged_config(have, data):
    """``merged`` (network_resource.merged with these rules)."""
    return network_resource.merged(RULES, have, data)


def replaced_config(have, data):
    """``replaced`` (network_resource.replaced with these rules)."""
    return network_resource.replaced(RULES, have, data)


def deleted_config(have, names):
    """`have` without the neighbours named (None: without any BGP at all)."""
    return network_resource.deleted(RULES, have, {"neighbors": [{"address": n} for n in names]})
