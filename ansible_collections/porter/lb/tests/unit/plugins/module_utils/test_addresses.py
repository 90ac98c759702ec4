# Copyright: porter-lb contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# SPDX-License-Identifier: Apache-2.0
"""Table-driven tests for plugins/module_utils/addresses.py."""

from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.porter.lb.plugins.module_utils.addresses import (
    AddressPool,
    AddressPoolError,
    parse_address_pool,
)

VALID = [
    # text, first, last, version, size
    ("192.0.2.10", "192.0.2.10", "192.0.2.10", 4, 1),
    ("2001:db8::1", "2001:db8::1", "2001:db8::1", 6, 1),
    ("  192.0.2.10\n", "192.0.2.10", "192.0.2.10", 4, 1),
    ("192.0.2.0/24", "192.0.2.0", "192.0.2.255", 4, 256),
    ("192.0.2.7/32", "192.0.2.7", "192.0.2.7", 4, 1),
    ("10.0.0.0/8", "10.0.0.0", "10.255.255.255", 4, 2**24),
    ("2001:db8::/120", "2001:db8::", "2001:db8::ff", 6, 256),
    ("2001:db8::/64", "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", 6, 2**64),
    ("192.0.2.10-192.0.2.20", "192.0.2.10", "192.0.2.20", 4, 11),
    ("192.0.2.10 - 192.0.2.20", "192.0.2.10", "192.0.2.20", 4, 11),
    ("192.0.2.10-192.0.2.10", "192.0.2.10", "192.0.2.10", 4, 1),
    ("192.0.2.250-192.0.3.5", "192.0.2.250", "192.0.3.5", 4, 12),
    ("2001:db8::10-2001:db8::1f", "2001:db8::10", "2001:db8::1f", 6, 16),
]

INVALID = [
    # text, expected message (full, exact)
    ("192.0.2.9-192.0.2.1", "spec.address '192.0.2.9-192.0.2.1': range start is after its end"),
    ("", "spec.address '': must not be empty"),
    ("   ", "spec.address '   ': must not be empty"),
    (
        "192.0.2.1/24",
        "spec.address '192.0.2.1/24': CIDR has host bits set (did you mean 192.0.2.0/24?)",
    ),
    (
        "2001:db8::1/120",
        "spec.address '2001:db8::1/120': CIDR has host bits set (did you mean 2001:db8::/120?)",
    ),
    ("192.0.2.0/33", "spec.address '192.0.2.0/33': is not a valid IPv4 or IPv6 CIDR"),
    (
        "192.0.2.10-2001:db8::1",
        "spec.address '192.0.2.10-2001:db8::1': range mixes IPv4 and IPv6 addresses",
    ),
    (
        "2001:db8::1-192.0.2.10",
        "spec.address '2001:db8::1-192.0.2.10': range mixes IPv6 and IPv4 addresses",
    ),
    ("not-an-ip", "spec.address 'not-an-ip': a range must be written as 'first-last'"),
    (
        "foo-192.0.2.1",
        "spec.address 'foo-192.0.2.1': range start 'foo' is not a valid IPv4 or IPv6 address",
    ),
    ("garbage", "spec.address 'garbage': is not an IP address, a CIDR or a 'first-last' range"),
    ("256.0.0.1", "spec.address '256.0.0.1': is not an IP address, a CIDR or a 'first-last' range"),
    ("192.0.2.1-", "spec.address '192.0.2.1-': a range must be written as 'first-last'"),
    ("-192.0.2.1", "spec.address '-192.0.2.1': a range must be written as 'first-last'"),
    (
        "192.0.2.1-192.0.2.5-192.0.2.9",
        "spec.address '192.0.2.1-192.0.2.5-192.0.2.9': a range must be written as 'first-last'",
    ),
    (
        "192.0.2.1-192.0.2.x",
        "spec.address '192.0.2.1-192.0.2.x': "
        "range end '192.0.2.x' is not a valid IPv4 or IPv6 address",
    ),
    (
        "192.0.2.0/24-192.0.2.9",
        "spec.address '192.0.2.0/24-192.0.2.9': "
        "range start '192.0.2.0/24' must be a bare address, not a network",
    ),
    ("fe80::1%eth0", "spec.address 'fe80::1%eth0': IPv6 zone/scope ids ('%') are not allowed"),
]


@pytest.mark.parametrize("text, first, last, version, size", VALID)
def test_valid(text, first, last, version, size):
    pool = parse_address_pool(text)
    assert pool.first == ipaddress.ip_address(first)
    assert pool.last == ipaddress.ip_address(last)
    assert pool.version == version
    assert pool.size == size
    assert pool.to_dict() == {"first": first, "last": last, "version": version, "size": size}


@pytest.mark.parametrize("text, message", INVALID)
def test_invalid(text, message):
    with pytest.raises(AddressPoolError) as info:
        parse_address_pool(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_error_names_the_given_field():
    with pytest.raises(
        AddressPoolError,
        match=r"^address '192\.0\.2\.9-192\.0\.2\.1': range start is after its end$",
    ):
        parse_address_pool("192.0.2.9-192.0.2.1", field="address")


def test_non_string_is_rejected():
    with pytest.raises(AddressPoolError, match="must be a string, got int"):
        parse_address_pool(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, ip, expected",
    [
        ("192.0.2.10-192.0.2.20", "192.0.2.10", True),
        ("192.0.2.10-192.0.2.20", "192.0.2.20", True),
        ("192.0.2.10-192.0.2.20", "192.0.2.15", True),
        ("192.0.2.10-192.0.2.20", "192.0.2.9", False),
        ("192.0.2.10-192.0.2.20", "192.0.2.21", False),
        ("192.0.2.10-192.0.2.20", ipaddress.ip_address("192.0.2.11"), True),
        ("192.0.2.0/24", "2001:db8::1", False),
        ("2001:db8::/120", "2001:db8::ff", True),
        ("2001:db8::/120", "2001:db8::100", False),
        ("2001:db8::/120", "192.0.2.1", False),
        ("192.0.2.0/24", "not an ip", False),
    ],
)
def test_contains(text, ip, expected):
    pool = parse_address_pool(text)
    assert pool.contains(ip) is expected
    assert (ip in pool) is expected


def test_pool_is_frozen_and_hashable():
    pool = parse_address_pool("192.0.2.0/30")
    with pytest.raises(AttributeError):
        pool.first = ipaddress.ip_address("192.0.2.1")  # type: ignore[misc]
    assert pool == parse_address_pool("192.0.2.0-192.0.2.3")
    assert len({pool, parse_address_pool("192.0.2.0-192.0.2.3")}) == 1


@pytest.mark.parametrize(
    "first, last",
    [
        ("192.0.2.2", "192.0.2.1"),
        ("192.0.2.1", "2001:db8::1"),
    ],
)
def test_direct_construction_validates(first, last):
    with pytest.raises(ValueError):
        AddressPool(first=ipaddress.ip_address(first), last=ipaddress.ip_address(last))
