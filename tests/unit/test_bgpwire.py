"""The lab's BGP UPDATE capture parses what a speaker puts on the wire (porter_lab.bgpwire).

Each frame is built here by hand from RFC 4271's layout, not by the parser's own code."""

from __future__ import annotations

import struct

import pytest

from porter_lab.bgpwire import parse_frame, parse_updates

MARKER = b"\xff" * 16


def message(kind: int, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def update(withdrawn: bytes = b"", attributes: bytes = b"", nlri: bytes = b"") -> bytes:
    body = struct.pack("!H", len(withdrawn)) + withdrawn
    body += struct.pack("!H", len(attributes)) + attributes + nlri
    return message(2, body)


KEEPALIVE = message(4, b"")
ORIGIN_IGP = bytes([0x40, 1, 1, 0])
HOST = bytes([32, 203, 0, 113, 7])  # 203.0.113.7/32
NET = bytes([24, 203, 0, 113])  # 203.0.113.0/24
SHORT = bytes([9, 10, 128])  # 10.128.0.0/9: two bytes for nine bits


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (update(attributes=ORIGIN_IGP, nlri=HOST), [(("203.0.113.7/32",), ())]),
        (update(withdrawn=HOST), [((), ("203.0.113.7/32",))]),
        (
            update(withdrawn=NET, attributes=ORIGIN_IGP, nlri=HOST + SHORT),
            [(("203.0.113.7/32", "10.128.0.0/9"), ("203.0.113.0/24",))],
        ),
        # A keepalive is skipped; two UPDATEs in one segment are both read.
        (
            KEEPALIVE + update(nlri=HOST) + update(withdrawn=NET),
            [(("203.0.113.7/32",), ()), ((), ("203.0.113.0/24",))],
        ),
        (update(), [((), ())]),  # End-of-RIB
        # A message cut by the segment's end, or a segment that starts mid-message: nothing.
        (update(nlri=HOST)[:-2], []),
        (b"\x00" * 30 + update(nlri=HOST), []),
        (b"", []),
    ],
)
def test_updates_in_a_tcp_payload(payload: bytes, expected: list[object]) -> None:
    assert parse_updates(payload) == expected


def frame(source: str, source_port: int, destination_port: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", source_port, destination_port, 1, 0, 5 << 4, 0x18, 0, 0, 0)
    total = 20 + len(tcp) + len(payload)
    addresses = bytes(int(part) for part in source.split(".")) + bytes([198, 51, 100, 1])
    ip = struct.pack("!BBHHHBBH", 0x45, 0, total, 0, 0, 64, 6, 0) + addresses
    ethernet = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    return ethernet + ip + tcp + payload


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Either side may have opened the session: port 179 at either end.
        (frame("198.51.100.11", 40000, 179, b"x"), ("198.51.100.11", b"x")),
        (frame("198.51.100.12", 179, 40000, b"yz"), ("198.51.100.12", b"yz")),
        (frame("198.51.100.12", 40000, 443, b"x"), None),
        (b"\x00" * 12 + b"\x86\xdd" + b"\x00" * 60, None),  # IPv6: not decoded
        (b"\x00" * 20, None),
    ],
)
def test_bgp_frames_and_their_sender(raw: bytes, expected: object) -> None:
    assert parse_frame(raw) == expected


def test_add_path_identifiers_are_skipped_and_garbage_never_raises() -> None:
    with_id = b"\x00\x00\x00\x07" + HOST  # path identifier 7 (RFC 7911), then the prefix
    assert parse_updates(update(nlri=with_id), add_path=True) == [(("203.0.113.7/32",), ())]
    # An impossible prefix length or a body cut short stops the parse instead of raising.
    assert parse_updates(update(nlri=bytes([40, 1, 2, 3, 4, 5]))) == []
    assert parse_updates(MARKER + struct.pack("!HB", 21, 2) + b"\x00\x09") == []
