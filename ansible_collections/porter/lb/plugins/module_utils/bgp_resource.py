# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""What the FRR and Comware BGP resource modules (frr_bgp, comware_bgp) share.

The rules their options' values follow alike, the argument-spec options both take, the
form in which a configuration is returned, and the walk of (context, line) statements by
view.  Where a rule is the router's own (Comware's keepalive at most a third of the hold
time, FRR's one-word password) it stays in that router's module; a helper that rejects a
value raises the error class its caller gives, so each module keeps its own.

PURE: standard library only, no I/O, no Ansible imports (see addresses.py).
"""

from __future__ import annotations

import dataclasses
import ipaddress

__all__ = [
    "MASK",
    "BgpOptionError",
    "PlainData",
    "as_plain_dict",
    "changing_result",
    "config_options",
    "integer",
    "ipv4_router_id",
    "masked_passwords",
    "neighbor_options",
    "neighbor_order",
    "one_line",
    "returned_config",
    "statement_blocks",
    "statements_diff",
    "timers",
    "unique_addresses",
    "view_commands",
    "wants_multipath_relax",
]

MASK = "********"


class BgpOptionError(ValueError):
    """An option breaks a rule; the message names the option, the value and the rule."""

    def __init__(self, field, value, rule):
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__("%s %r: %s" % (field, value, rule))


# --- option values ----------------------------------------------------------


def integer(error, field, value, low, high):
    """`value` as an int from `low` to `high` (None stays None); else raise `error`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value), 10)
        except ValueError:
            raise error(field, value, "must be an integer") from None
    if not low <= value <= high:
        raise error(field, value, "must be between %d and %d" % (low, high))
    return value


def timers(error, field, keepalive, hold_time, keepalive_max=65535):
    """The (keepalive, hold_time) pair: both or neither, hold time 0 or at least 3."""
    keepalive = integer(error, field + ".keepalive", keepalive, 0, keepalive_max)
    hold_time = integer(error, field + ".hold_time", hold_time, 0, 65535)
    if (keepalive is None) != (hold_time is None):
        raise error(field, {"keepalive": keepalive, "hold_time": hold_time}, "set both or neither")
    if hold_time is not None and hold_time != 0 and hold_time < 3:
        raise error(field + ".hold_time", hold_time, "must be 0 or at least 3")
    return keepalive, hold_time


def one_line(error, field, value):
    """`value` as text that fits in one configuration line (None stays None)."""
    if value is None:
        return None
    value = str(value)
    # splitlines(): "\r", "\x85", "\u2028" ... end a line too, and would split the statement
    if not value.strip() or value.splitlines() != [value] or value != value.strip():
        raise error(field, value, "must be one line without surrounding spaces")
    return value


def ipv4_router_id(error, value):
    """The ``router_id`` option: an IPv4 address (None stays None)."""
    if value is None:
        return None
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise error("router_id", value, "must be an IPv4 address") from None


def unique_addresses(error, neighbors):
    """Raise `error` for the first neighbour whose address (or group name) came before."""
    seen = set()
    for index, neighbor in enumerate(neighbors):
        if neighbor.address in seen:
            raise error("neighbors[%d].address" % index, neighbor.address, "appears twice")
        seen.add(neighbor.address)


def wants_multipath_relax(neighbors):
    """True when the neighbours may differ in AS: ECMP over them then needs the AS-path
    relaxation (FRR ``bgp bestpath as-path multipath-relax``, Comware ``balance
    as-path-relax``)."""
    asns = {n.remote_as for n in neighbors}
    return len(asns) > 1 or any(n.peer_group and n.remote_as == "external" for n in neighbors)


def neighbor_order(neighbor):
    """Sort key: peer groups first (a range or member refers to its group), then
    neighbours in address order, as both routers write them."""
    if neighbor.peer_group:
        return (0, 0, neighbor.address)
    address = ipaddress.ip_address(neighbor.address)
    return (1, address.version, address.packed)


# --- the model as data ------------------------------------------------------


def _lists(value):
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


def as_plain_dict(instance):
    """A model dataclass as plain data: nested dataclasses as dictionaries, tuples as lists
    (the shape of the modules' ``config`` option, which config_from_dict reads back)."""
    return _lists(dataclasses.asdict(instance))


class PlainData:
    """Mixin for the model dataclasses (Neighbor, BgpConfig): ``to_dict()`` as plain data."""

    def to_dict(self):
        return as_plain_dict(self)


def returned_config(config):
    """A BgpConfig as a module returns it (before, after, gathered, parsed): plain data with
    each neighbour's password masked; None stays None."""
    if config is None:
        return None
    data = config.to_dict()
    for neighbor in data["neighbors"]:
        if neighbor["password"] is not None:
            neighbor["password"] = MASK
    return data


def masked_passwords(config, hidden=lambda password: True):
    """`config` with each neighbour's password `hidden` holds for shown as MASK (rendering
    for diffs and returned commands)."""
    neighbors = tuple(
        n if n.password is None or not hidden(n.password) else dataclasses.replace(n, password=MASK)
        for n in config.neighbors
    )
    return dataclasses.replace(config, neighbors=neighbors)


def changing_result(have, after):
    """A changing state's result before any command is sent: ``before`` and ``after`` as
    returned, nothing changed yet."""
    return dict(
        changed=False,
        before=returned_config(have),
        after=returned_config(after),
        commands=[],
    )


def statements_diff(before, after, statements_text, masked):
    """The ``diff`` a module returns in diff mode: the owned configuration text before and
    after, laid out by the router's `statements_text`, passwords hidden by its `masked`."""
    return dict(before=masked(statements_text(before)), after=masked(statements_text(after)))


# --- argument spec ----------------------------------------------------------


def neighbor_options(**own):
    """The suboptions of ``config.neighbors`` both modules take, with the router's `own`."""
    return dict(
        address=dict(type="str", required=True),
        peer_group=dict(type="bool", default=False),
        remote_as=dict(type="str"),
        description=dict(type="str"),
        password=dict(type="str", no_log=True),
        keepalive=dict(type="int"),
        hold_time=dict(type="int"),
        listen_ranges=dict(type="list", elements="str"),
        **own,
    )


def config_options(neighbors, **own):
    """The suboptions of ``config`` both modules take, with the router's `own`;
    `neighbors` is the spec of one neighbour."""
    return dict(
        asn=dict(type="int"),
        router_id=dict(type="str"),
        keepalive=dict(type="int"),
        hold_time=dict(type="int"),
        maximum_paths=dict(type="int"),
        multipath_relax=dict(type="bool"),
        pools=dict(type="list", elements="str"),
        neighbors=dict(type="list", elements="dict", options=neighbors),
        **own,
    )


# --- statements by view -----------------------------------------------------


def statement_blocks(statements, opens_block=None):
    """Statements grouped as configuration text lays them out: one (header, [lines],
    [address-family lines]) per top-level view, in order of appearance.

    A top-level line opens a view when it starts with one of `opens_block` (None: every
    top-level line does); one that opens none stands alone as (None, [line], []).
    """
    blocks = []
    by_header = {}
    for context, line in statements:
        if not context:
            if opens_block is None or line.startswith(opens_block):
                block = (line, [], [])
                by_header[line] = block
                blocks.append(block)
            else:
                blocks.append((None, [line], []))
        elif len(context) == 1:
            by_header[context[0]][1].append(line)
        else:
            by_header[context[0]][2].append(line)
    return blocks


def view_commands(ops, opens_view, leave):
    """The commands for (context, line) operations, entering and leaving each view as needed
    and ending where they started.

    A top-level line starting with one of `opens_view` enters that view, and so does a
    line inside a view when the next operation is inside the view it names (a profile
    created, then its settings); `leave(view)` is the command that leaves a view.
    """
    commands = []
    current = ()
    opened = None  # the view the last line opened, if it is the next operation's
    for context, line in ops:
        if opened is not None and context[: len(opened)] == opened:
            current = opened  # the line that opened it was sent (a new bfd profile)
        common = 0
        while common < min(len(current), len(context)) and current[common] == context[common]:
            common += 1
        commands.extend(leave(level) for level in reversed(current[common:]))
        commands.extend(context[common:])
        commands.append(line)
        current = context
        opened = (*context, line) if context else None
        if not context and line.startswith(opens_view):
            current = (line,)
    commands.extend(leave(level) for level in reversed(current))
    return commands
