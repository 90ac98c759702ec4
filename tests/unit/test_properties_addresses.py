"""Properties of Eip address parsing: every valid single address, CIDR and range parses to the
block the ipaddress module agrees on; anything else is an AddressPoolError naming the field.

Profiles and how to search longer: tests/unit/conftest.py.
"""

from __future__ import annotations

import ipaddress

from hypothesis import assume, given
from hypothesis import strategies as st

from porter_lb.model.addresses import AddressPool, AddressPoolError, parse_address_pool

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
padding = st.sampled_from(["", " ", "\t", "  ", "\n"])


@st.composite
def networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    address = draw(addresses)
    prefix = draw(st.integers(0, address.max_prefixlen))
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


@st.composite
def ranges(draw: st.DrawFn) -> tuple[Address, Address]:
    family = draw(st.sampled_from([st.ip_addresses(v=4), st.ip_addresses(v=6)]))
    a, b = draw(family), draw(family)
    return (a, b) if int(a) <= int(b) else (b, a)


def assert_block(pool: AddressPool, first: Address, last: Address) -> None:
    assert (pool.first, pool.last) == (first, last)
    assert pool.version == first.version
    assert pool.size == int(last) - int(first) + 1
    assert first in pool and last in pool


@given(addresses, padding, padding)
def test_a_single_address_is_a_block_of_one(ip: Address, before: str, after: str) -> None:
    assert_block(parse_address_pool(f"{before}{ip}{after}"), ip, ip)
    # the exploded spelling (leading zeros in IPv6 groups) is the same address
    assert_block(parse_address_pool(ip.exploded), ip, ip)


@given(networks(), padding)
def test_a_cidr_is_its_network_and_broadcast(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network, pad: str
) -> None:
    pool = parse_address_pool(f"{pad}{network.with_prefixlen}{pad}")
    assert_block(pool, network.network_address, network.broadcast_address)
    assert pool.size == network.num_addresses


@given(ranges(), padding, padding)
def test_a_range_is_inclusive(ends: tuple[Address, Address], left: str, right: str) -> None:
    first, last = ends
    assert_block(parse_address_pool(f"{first}{left}-{right}{last}"), first, last)


@given(ranges(), addresses)
def test_contains_agrees_with_ipaddress(ends: tuple[Address, Address], ip: Address) -> None:
    first, last = ends
    pool = parse_address_pool(f"{first}-{last}")
    expected = ip.version == first.version and first <= ip <= last  # type: ignore[operator]
    assert pool.contains(ip) is expected
    assert pool.contains(str(ip)) is expected
    assert (ip in pool) is expected


@given(ranges(), st.one_of(st.text(max_size=40), st.integers(), st.none()))
def test_contains_never_raises(ends: tuple[Address, Address], value: object) -> None:
    pool = parse_address_pool(f"{ends[0]}-{ends[1]}")
    assert pool.contains(value) in (True, False)


def assert_refused(text: object, field: str = "spec.address") -> AddressPoolError:
    try:
        parse_address_pool(text, field)  # type: ignore[arg-type]
    except AddressPoolError as error:
        assert error.field == field
        assert str(error).startswith(f"{field} ")
        assert error.rule
        return error
    raise AssertionError(f"{text!r} parsed")


@given(ranges(), padding)
def test_a_reversed_range_is_refused(ends: tuple[Address, Address], pad: str) -> None:
    first, last = ends
    assume(first != last)
    assert "after its end" in assert_refused(f"{last}{pad}-{pad}{first}").rule


@given(st.ip_addresses(v=4), st.ip_addresses(v=6), st.booleans())
def test_a_range_mixing_families_is_refused(
    v4: ipaddress.IPv4Address, v6: ipaddress.IPv6Address, v4_first: bool
) -> None:
    text = f"{v4}-{v6}" if v4_first else f"{v6}-{v4}"
    expected = "IPv4 and IPv6" if v4_first else "IPv6 and IPv4"
    assert f"range mixes {expected} addresses" == assert_refused(text).rule


@given(networks(), st.data())
def test_a_cidr_with_host_bits_is_refused(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network, data: st.DataObject
) -> None:
    assume(network.num_addresses > 1)
    offset = data.draw(st.integers(1, network.num_addresses - 1))
    text = f"{network.network_address + offset}/{network.prefixlen}"
    assert "host bits" in assert_refused(text).rule


@given(networks(), st.integers(1, 200))
def test_a_prefix_length_too_long_is_refused(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network, extra: int
) -> None:
    assert_refused(f"{network.network_address}/{network.max_prefixlen + extra}")


@given(st.text(max_size=60), st.sampled_from(["spec.address", "pools[0]"]))
def test_any_text_parses_or_is_refused_naming_the_field(text: str, field: str) -> None:
    try:
        pool = parse_address_pool(text, field)
    except AddressPoolError as error:
        assert error.field == field and str(error).startswith(f"{field} ")
        return
    # whatever parsed is an address block the ipaddress module agrees with
    assert pool.first.version == pool.last.version and pool.first <= pool.last  # type: ignore[operator]


@given(
    st.lists(
        st.sampled_from(["1", "0", ".", ":", "/", "-", "f", "%", " ", "255", "::", "192.0.2.1"]),
        max_size=12,
    ).map("".join)
)
def test_address_like_garbage_parses_or_is_refused(text: str) -> None:
    try:
        parse_address_pool(text)
    except AddressPoolError as error:
        assert str(error).startswith("spec.address ")


@given(st.one_of(st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=2)))
def test_a_value_that_is_not_text_is_refused(value: object) -> None:
    assert "must be a string" in assert_refused(value).rule
