# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""A BGP neighbour's session transport, as the three router modules (bird_bgp, frr_bgp,
comware_bgp) take it: the neighbour's TCP port and BFD.

One rule set for all three routers, so that a playbook's ``port`` and ``bfd`` mean the same
on each; how a router writes them (or refuses what it cannot express) stays in that
router's module_utils.  The BFD defaults (300 ms both ways, multiplier 3) are the ones
porter-lb's speakers use, and FRR's own.

PURE: standard library only, no I/O, no Ansible imports (see addresses.py).
"""

from __future__ import annotations

import dataclasses

from ansible_collections.porter.lb.plugins.module_utils.bgp_resource import integer

__all__ = [
    "BFD_OFF",
    "DEFAULT_PORT",
    "Bfd",
    "bfd_from_dict",
    "bfd_option",
    "port",
]

DEFAULT_PORT = 179
DEFAULT_INTERVAL = 300  # milliseconds
DEFAULT_MULTIPLIER = 3
INTERVALS = (10, 60000)  # what FRR's bfdd and BIRD both accept
MULTIPLIERS = (2, 255)


@dataclasses.dataclass(frozen=True)
class Bfd:
    """BFD for one neighbour: on or off, and the timers it asks for (milliseconds)."""

    enabled: bool = False
    transmit_interval: int = DEFAULT_INTERVAL
    receive_interval: int = DEFAULT_INTERVAL
    detect_multiplier: int = DEFAULT_MULTIPLIER

    def to_dict(self):
        return dataclasses.asdict(self)

    @property
    def default_timers(self):
        """Whether the timers are the defaults (a router may then write no timer line)."""
        return (self.transmit_interval, self.receive_interval, self.detect_multiplier) == (
            DEFAULT_INTERVAL,
            DEFAULT_INTERVAL,
            DEFAULT_MULTIPLIER,
        )


BFD_OFF = Bfd()
"""BFD off.  Timers given with ``enabled: false`` are written nowhere, so they are dropped:
a configuration read back from a router holds exactly this for a neighbour without BFD."""


def port(error, field, value):
    """The neighbour's TCP port, 1 to 65535 (None: the BGP port, 179)."""
    value = integer(error, field, value, 1, 65535)
    return DEFAULT_PORT if value is None else value


def bfd_from_dict(error, field, data):
    """The :class:`Bfd` for the ``bfd`` option `data` (None: off); raises `error` naming
    ``<field>.<option>``, the value and the rule."""
    if data is None:
        return BFD_OFF
    if isinstance(data, Bfd):
        data = data.to_dict()
    if not isinstance(data, dict):
        raise error(field, data, "must be a dictionary (enabled, transmit_interval ...)")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(Bfd)})
    if unknown:
        raise error(field + "." + unknown[0], data[unknown[0]], "is not a BFD option")
    enabled = data.get("enabled")
    if not isinstance(enabled, bool):
        raise error(field + ".enabled", enabled, "is required: true or false")
    timers = {}
    for name, default, (low, high) in (
        ("transmit_interval", DEFAULT_INTERVAL, INTERVALS),
        ("receive_interval", DEFAULT_INTERVAL, INTERVALS),
        ("detect_multiplier", DEFAULT_MULTIPLIER, MULTIPLIERS),
    ):
        value = integer(error, "%s.%s" % (field, name), data.get(name), low, high)
        timers[name] = default if value is None else value
    return Bfd(True, **timers) if enabled else BFD_OFF


def bfd_option():
    """The ``bfd`` suboption of a neighbour, for a module's argument_spec."""
    return dict(
        type="dict",
        options=dict(
            enabled=dict(type="bool", required=True),
            transmit_interval=dict(type="int"),
            receive_interval=dict(type="int"),
            detect_multiplier=dict(type="int"),
        ),
    )
