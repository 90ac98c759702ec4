"""porter-lb's rtnetlink messages (porter_lb.host.rtnl), by table. Expected bytes are written
from rtnetlink(7)'s struct layouts (host byte order, rtattrs padded to 4), not from the
module's own encoders; requests against a real kernel run in the bed's host-rule and layer-2
tests."""

from __future__ import annotations

import socket
import struct

import pytest

from porter_lb.host.rtnl import (
    attributes,
    messages,
    parse_address,
    parse_link,
    parse_route,
    parse_rule,
    route_body,
    rule_body,
)


def rtattr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def test_a_local_route_for_an_eip_in_a_high_table() -> None:
    body = route_body(
        socket.AF_INET, "203.0.113.5", 32, table=2019, protocol=201, scope=254, kind=2, oif=1
    )
    # rtmsg: AF_INET, /32, no source, tos 0, table RT_TABLE_UNSPEC (2019 > 255), proto 201,
    # scope host, type local, flags 0; then RTA_DST, RTA_TABLE, RTA_OIF.
    assert body == (
        struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 0, 201, 254, 2, 0)
        + rtattr(1, bytes([203, 0, 113, 5]))
        + rtattr(15, struct.pack("=I", 2019))
        + rtattr(4, struct.pack("=I", 1))
    )
    route = parse_route(body)
    assert (route.dst, route.dst_len, route.table, route.protocol, route.type, route.oif) == (
        "203.0.113.5",
        32,
        2019,
        201,
        2,
        1,
    )


def test_the_default_route_has_no_destination() -> None:
    route = parse_route(route_body(socket.AF_INET6, None, 0, table=100, kind=2))
    assert (route.family, route.dst, route.dst_len, route.table) == (socket.AF_INET6, None, 0, 100)


def test_a_rule_to_an_eip_looks_up_its_table() -> None:
    body = rule_body(socket.AF_INET6, "2001:db8::5", 128, table=2019, priority=2019, protocol=201)
    header = struct.unpack_from("=BBBBBBBBI", body)
    assert header == (10, 128, 0, 0, 0, 0, 0, 1, 0)  # action FR_ACT_TO_TBL
    attrs = attributes(body[12:])
    assert attrs[1] == socket.inet_pton(socket.AF_INET6, "2001:db8::5")  # FRA_DST
    assert struct.unpack("=I", attrs[15]) == (2019,)  # FRA_TABLE
    assert struct.unpack("=I", attrs[6]) == (2019,)  # FRA_PRIORITY
    assert attrs[21] == bytes([201])  # FRA_PROTOCOL, one byte
    rule = parse_rule(body)
    assert (rule.dst, rule.dst_len, rule.table, rule.priority, rule.protocol) == (
        "2001:db8::5",
        128,
        2019,
        2019,
        201,
    )


def test_a_rule_in_a_low_table_reads_the_header_field() -> None:
    body = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 254, 0, 0, 1, 0) + rtattr(
        6, struct.pack("=I", 32766)
    )
    rule = parse_rule(body)
    assert (rule.table, rule.priority, rule.dst, rule.protocol) == (254, 32766, None, 0)


def test_links_and_addresses() -> None:
    link = (
        struct.pack("=BxHiII", 0, 1, 7, 0x11043, 0)
        + rtattr(3, b"eth0\0")
        + rtattr(1, bytes.fromhex("020000000007"))
    )
    parsed = parse_link(link)
    assert (parsed.index, parsed.name, parsed.address, parsed.flags) == (
        7,
        "eth0",
        bytes.fromhex("020000000007"),
        0x11043,
    )
    address = struct.pack("=BBBBI", 10, 64, 0, 253, 7) + rtattr(
        1, socket.inet_pton(socket.AF_INET6, "fe80::7")
    )
    entry = parse_address(address)
    assert (entry.index, entry.scope, entry.address, entry.prefixlen) == (7, 253, "fe80::7", 64)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # Two messages in one datagram: nlmsghdr (length, type, flags, seq, pid) + body,
        # each padded to 4 bytes.
        (
            struct.pack("=IHHII", 20, 24, 2, 9, 0)
            + b"abcd"
            + struct.pack("=IHHII", 21, 3, 2, 9, 0)
            + b"xyzw!"
            + b"\0\0\0",
            [(24, 2, 9, b"abcd"), (3, 2, 9, b"xyzw!")],
        ),
        (b"", []),
        (struct.pack("=IHHII", 4, 24, 0, 1, 0), []),  # a length shorter than the header
    ],
)
def test_messages_of_a_datagram(data: bytes, expected: list[object]) -> None:
    assert list(messages(data)) == expected
