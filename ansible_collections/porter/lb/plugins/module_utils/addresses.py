# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Parse an Eip ``spec.address`` into an address pool.

The accepted forms are the ones Porter / OpenELB accept for an Eip:

* a single address: ``192.0.2.10``, ``2001:db8::1``
* a CIDR network: ``192.0.2.0/24``, ``2001:db8::/120`` (host bits must be clear)
* an inclusive range ``first-last``: ``192.0.2.10-192.0.2.20`` (both ends of
  the same family, ``first <= last``)

This file is deliberately PURE Python: it imports nothing but the standard
library (``ipaddress``, ``dataclasses``), does no I/O and has no Ansible
dependency.  It is used by the ``porter.lb`` Ansible modules through
``ansible_collections.porter.lb.plugins.module_utils.addresses`` AND is
imported as a plain, standalone module by the porter-lb runtime Python
package (which links this very file in).  Keep it that way: no Ansible
imports, no relative imports, no third-party packages, and syntax that still
compiles on every Python version ansible-test checks module_utils against.
"""

from __future__ import annotations

import dataclasses
import ipaddress

__all__ = ["AddressPool", "AddressPoolError", "parse_address_pool"]


class AddressPoolError(ValueError):
    """An Eip address string is invalid.

    The message names the field, the offending value and the rule broken, e.g.
    ``spec.address '192.0.2.9-192.0.2.1': range start is after its end``.
    """

    def __init__(self, field: str, value: str, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__("%s %r: %s" % (field, value, rule))


@dataclasses.dataclass(frozen=True)
class AddressPool:
    """An inclusive, contiguous block of addresses of one IP family.

    ``version`` (4 or 6) and ``size`` (``last - first + 1``) are derived from
    ``first`` and ``last``; constructing a pool directly validates that both
    ends are of the same family and that ``first <= last``.
    """

    first: ipaddress.IPv4Address | ipaddress.IPv6Address
    last: ipaddress.IPv4Address | ipaddress.IPv6Address
    version: int = dataclasses.field(init=False)
    size: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        if self.first.version != self.last.version:
            raise ValueError("AddressPool ends must be of the same IP family")
        if int(self.first) > int(self.last):
            raise ValueError("AddressPool first must not be after last")
        object.__setattr__(self, "version", self.first.version)
        object.__setattr__(self, "size", int(self.last) - int(self.first) + 1)

    def contains(self, ip: object) -> bool:
        """Return True if *ip* (a string or ipaddress object) lies in the pool.

        Values that are not an IP address, or of the other family, are simply
        not contained; this never raises.
        """
        if not isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            try:
                ip = ipaddress.ip_address(str(ip).strip())
            except ValueError:
                return False
        if ip.version != self.version:
            return False
        return int(self.first) <= int(ip) <= int(self.last)

    def __contains__(self, ip: object) -> bool:
        return self.contains(ip)

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly view: first, last, version and size."""
        return {
            "first": str(self.first),
            "last": str(self.last),
            "version": self.version,
            "size": self.size,
        }


def _address(
    text: str, field: str, value: str, what: str
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse one bare address; *what* names its role in the error message."""
    if "/" in text:
        raise AddressPoolError(
            field, value, "%s %r must be a bare address, not a network" % (what, text)
        )
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise AddressPoolError(
            field, value, "%s %r is not a valid IPv4 or IPv6 address" % (what, text)
        ) from None


def parse_address_pool(text: str, field: str = "spec.address") -> AddressPool:
    """Parse an Eip address (single IP, CIDR or ``first-last`` range).

    Surrounding whitespace is ignored.  Raises :class:`AddressPoolError`
    (a :class:`ValueError`) naming *field*, the value and the rule broken.
    """
    if not isinstance(text, str):
        raise AddressPoolError(field, str(text), "must be a string, got %s" % type(text).__name__)
    value = text
    text = text.strip()
    if not text:
        raise AddressPoolError(field, value, "must not be empty")
    if "%" in text:
        raise AddressPoolError(field, value, "IPv6 zone/scope ids ('%') are not allowed")

    if "-" in text:
        ends = [end.strip() for end in text.split("-")]
        if len(ends) != 2 or not all(ends):
            raise AddressPoolError(field, value, "a range must be written as 'first-last'")
        start = _address(ends[0], field, value, "range start")
        end = _address(ends[1], field, value, "range end")
        if start.version != end.version:
            raise AddressPoolError(
                field, value, "range mixes IPv%d and IPv%d addresses" % (start.version, end.version)
            )
        if int(start) > int(end):
            raise AddressPoolError(field, value, "range start is after its end")
        return AddressPool(first=start, last=end)

    if "/" in text:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise AddressPoolError(field, value, "is not a valid IPv4 or IPv6 CIDR") from None
        try:
            ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise AddressPoolError(
                field, value, "CIDR has host bits set (did you mean %s?)" % network.with_prefixlen
            ) from None
        return AddressPool(first=network.network_address, last=network.broadcast_address)

    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise AddressPoolError(
            field, value, "is not an IP address, a CIDR or a 'first-last' range"
        ) from None
    return AddressPool(first=ip, last=ip)
