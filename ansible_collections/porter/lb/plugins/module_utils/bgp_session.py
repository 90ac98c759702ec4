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
TIMERS = {  # each timer's default
    "transmit_interval": DEFAULT_INTERVAL,
    "receive_interval": DEFAULT_INTERVAL,
    "detect_multiplier": DEFAULT_MULTIPLIER,
}


@dataclasses.dataclass(frozen=True)
class Bfd:
    """BFD for one neighbour: on or off, and the timers it asks for (milliseconds).

    On, a timer not given is its default; off, there are no timers (all None), so that
    BFD off is one value however it was built and a plain copy of it (``dataclasses.asdict``)
    passes :func:`bfd_from_dict` again."""

    enabled: bool = False
    transmit_interval: int | None = None
    receive_interval: int | None = None
    detect_multiplier: int | None = None

    def __post_init__(self):
        for name, default in TIMERS.items():
            value = getattr(self, name)
            if not self.enabled:
                value = None
            elif value is None:
                value = default
            object.__setattr__(self, name, value)

    def to_dict(self):
        """As a module returns it: BFD off is ``{"enabled": False}`` alone (it has no timers)."""
        return dataclasses.asdict(self) if self.enabled else {"enabled": False}

    @property
    def default_timers(self):
        """Whether the timers are the defaults (a router may then write no timer line)."""
        return (self.transmit_interval, self.receive_interval, self.detect_multiplier) == (
            DEFAULT_INTERVAL,
            DEFAULT_INTERVAL,
            DEFAULT_MULTIPLIER,
        )


BFD_OFF = Bfd()
"""BFD off: what a configuration read back from a router holds for a neighbour without BFD.
Timers cannot be given with it (see bfd_from_dict)."""


def port(error, field, value):
    """The neighbour's TCP port, 1 to 65535 (None: the BGP port, 179)."""
    value = integer(error, field, value, 1, 65535)
    return DEFAULT_PORT if value is None else value


def bfd_from_dict(error, field, data):
    """The :class:`Bfd` for the ``bfd`` option `data` (None: off); raises `error` naming
    ``<field>.<option>``, the value and the rule.

    A timer given with ``enabled: false`` is refused: no router writes it anywhere, so
    taking it would drop it silently (and a later ``enabled: true`` would not bring it back).
    """
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
    if not enabled:
        given = [name for name in TIMERS if data.get(name) is not None]
        if given:
            raise error(
                "%s.%s" % (field, given[0]), data[given[0]], "set only with bfd.enabled: true"
            )
        return BFD_OFF
    timers = {}
    for name, default, (low, high) in (
        ("transmit_interval", DEFAULT_INTERVAL, INTERVALS),
        ("receive_interval", DEFAULT_INTERVAL, INTERVALS),
        ("detect_multiplier", DEFAULT_MULTIPLIER, MULTIPLIERS),
    ):
        value = integer(error, "%s.%s" % (field, name), data.get(name), low, high)
        timers[name] = default if value is None else value
    return Bfd(True, **timers)


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
