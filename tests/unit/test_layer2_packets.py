"""ARP and NDP frames: what porter-lb sends parses back, and what it must ignore is ignored."""

from __future__ import annotations

import ipaddress
import struct

from porter_lb.layer2 import packets as p

NODE_MAC = bytes.fromhex("020000000011")
CLIENT_MAC = bytes.fromhex("02000000000a")
EIP = ipaddress.IPv4Address("198.51.100.200")
CLIENT = ipaddress.IPv4Address("198.51.100.10")
EIP6 = ipaddress.IPv6Address("2001:db8::200")
CLIENT6 = ipaddress.IPv6Address("2001:db8::a")
LINK_LOCAL = ipaddress.IPv6Address("fe80::11")


def test_arp_request_parses() -> None:
    request = p.parse_arp(p.arp_request(CLIENT_MAC, CLIENT, EIP))
    assert request == p.ArpPacket(
        CLIENT_MAC, p.BROADCAST_MAC, p.ARP_REQUEST, CLIENT_MAC, CLIENT, b"\0" * 6, EIP
    )
    assert not request.gratuitous


def test_arp_reply_goes_to_the_asker_with_our_mac() -> None:
    request = p.parse_arp(p.arp_request(CLIENT_MAC, CLIENT, EIP))
    assert request is not None
    frame = p.arp_reply(NODE_MAC, request)
    reply = p.parse_arp(frame)
    assert reply == p.ArpPacket(
        NODE_MAC, CLIENT_MAC, p.ARP_REPLY, NODE_MAC, EIP, CLIENT_MAC, CLIENT
    )
    assert len(frame) == 42


def test_gratuitous_arp_request_and_reply_match_linux_garp_rule() -> None:
    # Linux (arp_is_garp): sender IP == target IP; for a reply also target MAC == sender MAC.
    request = p.parse_arp(p.gratuitous_arp(NODE_MAC, EIP, p.ARP_REQUEST))
    reply = p.parse_arp(p.gratuitous_arp(NODE_MAC, str(EIP), p.ARP_REPLY))
    assert request is not None and reply is not None
    assert request.gratuitous and request.eth_destination == p.BROADCAST_MAC
    assert request.target_mac == b"\0" * 6
    assert reply.gratuitous and reply.target_mac == reply.sender_mac == NODE_MAC
    assert reply.operation == p.ARP_REPLY and reply.eth_destination == p.BROADCAST_MAC


def test_not_arp_is_none() -> None:
    frame = p.arp_request(CLIENT_MAC, CLIENT, EIP)
    assert p.parse_arp(frame[:30]) is None
    assert p.parse_arp(frame[:12] + b"\x08\x00" + frame[14:]) is None  # IPv4 ethertype
    assert p.parse_arp(frame[:20] + b"\x00\x03" + frame[22:]) is None  # RARP op
    assert p.parse_arp(frame[:16] + b"\x86\xdd" + frame[18:]) is None  # protocol not IPv4


def test_solicited_node_address_and_mac() -> None:
    assert p.solicited_node_address("2001:db8::12:3456") == ipaddress.IPv6Address(
        "ff02::1:ff12:3456"
    )
    assert p.solicited_node_mac("2001:db8::12:3456") == bytes.fromhex("3333ff123456")


def test_neighbor_solicitation_parses() -> None:
    frame = p.neighbor_solicitation(CLIENT_MAC, CLIENT6, EIP6)
    ns = p.parse_nd(frame)
    assert ns is not None
    assert ns.icmp_type == p.ICMPV6_NEIGHBOR_SOLICITATION
    assert (ns.source, ns.destination, ns.target) == (
        CLIENT6,
        p.solicited_node_address(EIP6),
        EIP6,
    )
    assert ns.link_layer == CLIENT_MAC
    assert ns.eth_destination == p.solicited_node_mac(EIP6)


def test_solicited_advertisement_answers_the_asker() -> None:
    ns = p.parse_nd(p.neighbor_solicitation(CLIENT_MAC, CLIENT6, EIP6))
    assert ns is not None
    na = p.parse_nd(p.neighbor_advertisement(NODE_MAC, LINK_LOCAL, EIP6, solicitation=ns))
    assert na is not None
    assert na.icmp_type == p.ICMPV6_NEIGHBOR_ADVERTISEMENT
    assert (na.eth_source, na.eth_destination) == (NODE_MAC, CLIENT_MAC)
    assert (na.source, na.destination, na.target) == (LINK_LOCAL, CLIENT6, EIP6)
    assert na.solicited and na.override and na.link_layer == NODE_MAC


def test_dad_solicitation_is_answered_to_all_nodes_unsolicited() -> None:
    dad = p.parse_nd(p.neighbor_solicitation(CLIENT_MAC, "::", EIP6))
    assert dad is not None and dad.source.is_unspecified
    na = p.parse_nd(p.neighbor_advertisement(NODE_MAC, LINK_LOCAL, EIP6, solicitation=dad))
    assert na is not None
    assert na.destination == ipaddress.IPv6Address("ff02::1") and not na.solicited


def test_unsolicited_advertisement_overrides_to_all_nodes() -> None:
    na = p.parse_nd(p.neighbor_advertisement(NODE_MAC, LINK_LOCAL, EIP6))
    assert na is not None
    assert na.eth_destination == p.all_nodes_mac() == bytes.fromhex("333300000001")
    assert na.override and not na.solicited and na.hop_limit == 255
    assert na.link_layer == NODE_MAC


def _tamper(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value) :]


def test_invalid_nd_is_dropped() -> None:
    frame = p.neighbor_solicitation(CLIENT_MAC, CLIENT6, EIP6)
    assert p.parse_nd(frame) is not None
    assert p.parse_nd(_tamper(frame, 21, b"\x40")) is None  # hop limit 64, not 255
    assert p.parse_nd(_tamper(frame, 14 + 40 + 8 + 5, b"\x55")) is None  # bad checksum
    assert p.parse_nd(frame[:60]) is None
    assert p.parse_nd(_tamper(frame, 12, b"\x08\x00")) is None  # not IPv6
    # A zero-length option invalidates the message (recompute the checksum to isolate it).
    message = bytearray(frame[54:])
    message[25] = 0
    message[2:4] = b"\0\0"
    checksum = p._icmpv6_checksum(CLIENT6, p.solicited_node_address(EIP6), bytes(message))
    message[2:4] = struct.pack("!H", checksum)
    assert p.parse_nd(frame[:54] + bytes(message)) is None
