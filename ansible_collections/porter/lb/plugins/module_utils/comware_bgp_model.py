# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""The cluster-facing BGP configuration of an H3C Comware 7 switch as a typed model
(:class:`BgpConfig`, :class:`Neighbor`, shaped like frr_bgp's), and the rules the module's
options follow to become one (:func:`config_from_dict`).  comware_bgp.py renders, parses and
compares it.

PURE: standard library only, no I/O, no Ansible imports (see addresses.py).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from ansible_collections.porter.lb.plugins.module_utils import bgp_resource, bgp_session

__all__ = [
    "BALANCE_KINDS",
    "MAX_ASN",
    "BgpConfig",
    "ComwareBgpConfigError",
    "Neighbor",
    "config_from_dict",
]

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
    bfd: bool = False  # ``peer X bfd``; Comware's BFD timers are the interface's


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


def _port(field, value):
    """Comware 7 has no per-peer destination port: only 179 (or none) is accepted."""
    port = bgp_session.port(ComwareBgpConfigError, field, value)
    if port != bgp_session.DEFAULT_PORT:
        raise ComwareBgpConfigError(
            field,
            value,
            "Comware 7 has no per-peer destination port (no 'peer ... port' command): the "
            "switch connects to port 179 only, so a node speaker on another port must open "
            "the session itself",
        )


def _bfd(field, value):
    """``peer X bfd`` on or off.  `value` is the ``bfd`` option, or the boolean the module
    returns.  Comware takes BFD timers per interface (``bfd min-transmit-interval``,
    ``bfd min-receive-interval``, ``bfd detect-multiplier`` in the interface view), so timers
    given here are refused rather than silently not applied."""
    if value is None or isinstance(value, bool):
        return bool(value)
    bfd = bgp_session.bfd_from_dict(ComwareBgpConfigError, field, value)
    timers = ("transmit_interval", "receive_interval", "detect_multiplier")
    given = [name for name in timers if value.get(name) is not None]
    if bfd.enabled and given:
        raise ComwareBgpConfigError(
            "%s.%s" % (field, given[0]),
            value[given[0]],
            "Comware sets BFD timers on the interface (bfd min-transmit-interval, "
            "bfd min-receive-interval, bfd detect-multiplier) for single-hop sessions and "
            "in system view (bfd multi-hop ...) for multi-hop ones, not per peer; "
            "comware_bgp sets none: give only bfd.enabled",
        )
    return bfd.enabled


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
    _port(field + ".port", data.get("port"))
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
        bfd=_bfd(field + ".bfd", data.get("bfd")),
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
