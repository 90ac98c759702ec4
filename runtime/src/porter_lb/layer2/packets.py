"""ARP and NDP frames, bytes in and bytes out: what a layer-2 announcer reads and writes.

Pure (no sockets): `porter_lb.layer2.announcer` receives Ethernet frames from AF_PACKET sockets,
asks this module what they are, and sends what it builds. Only what layer-2 announcement needs is
here:

* IPv4 (RFC 826): ARP requests in; ARP replies and gratuitous ARP (RFC 5227 §3 announcements:
  a request and a reply whose sender and target IP are the announced address) out.
* IPv6 (RFC 4861): neighbour solicitations in; solicited and unsolicited neighbour
  advertisements (Override set, target link-layer address option) out. Solicitations carrying
  IPv6 extension headers are not recognised (none of the stacks seen in practice sends them).

Addresses are `ipaddress` objects or canonical text; MACs are 6 raw bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "ARP_REPLY",
    "ARP_REQUEST",
    "BROADCAST_MAC",
    "ETH_P_ARP",
    "ETH_P_IPV6",
    "ICMPV6_NEIGHBOR_ADVERTISEMENT",
    "ICMPV6_NEIGHBOR_SOLICITATION",
    "ArpPacket",
    "NdPacket",
    "all_nodes_mac",
    "arp_reply",
    "arp_request",
    "format_mac",
    "gratuitous_arp",
    "neighbor_advertisement",
    "neighbor_solicitation",
    "parse_arp",
    "parse_nd",
    "solicited_node_address",
    "solicited_node_mac",
]

ETH_P_ARP = 0x0806
ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
ARP_REQUEST = 1
ARP_REPLY = 2
IPPROTO_ICMPV6 = 58
ICMPV6_NEIGHBOR_SOLICITATION = 135
ICMPV6_NEIGHBOR_ADVERTISEMENT = 136
ND_OPTION_SOURCE_LINK_LAYER = 1
ND_OPTION_TARGET_LINK_LAYER = 2
NA_FLAG_ROUTER = 0x80
NA_FLAG_SOLICITED = 0x40
NA_FLAG_OVERRIDE = 0x20
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ALL_NODES = ipaddress.IPv6Address("ff02::1")

_ETHERNET = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_ICMPV6_ND = struct.Struct("!BBHI16s")  # type, code, checksum, flags+reserved, target


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


@dataclass(frozen=True)
class ArpPacket:
    """An Ethernet/IPv4 ARP packet and the Ethernet header it came in."""

    eth_source: bytes
    eth_destination: bytes
    operation: int  # ARP_REQUEST or ARP_REPLY
    sender_mac: bytes
    sender_ip: ipaddress.IPv4Address
    target_mac: bytes
    target_ip: ipaddress.IPv4Address

    @property
    def gratuitous(self) -> bool:
        """An announcement: the sender claims the address it asks or tells about."""
        return self.sender_ip == self.target_ip


def parse_arp(frame: bytes) -> ArpPacket | None:
    """The ARP packet in an Ethernet frame; None for anything else (other types, not IPv4)."""
    if len(frame) < _ETHERNET.size + _ARP.size:
        return None
    destination, source, ethertype = _ETHERNET.unpack_from(frame)
    if ethertype != ETH_P_ARP:
        return None
    hardware, protocol, hlen, plen, operation, sha, spa, tha, tpa = _ARP.unpack_from(
        frame, _ETHERNET.size
    )
    if (hardware, protocol, hlen, plen) != (1, ETH_P_IPV4, 6, 4):
        return None
    if operation not in (ARP_REQUEST, ARP_REPLY):
        return None
    return ArpPacket(
        source,
        destination,
        operation,
        sha,
        ipaddress.IPv4Address(spa),
        tha,
        ipaddress.IPv4Address(tpa),
    )


def _arp_frame(
    eth_destination: bytes,
    own_mac: bytes,
    *,
    operation: int,
    sender_ip: ipaddress.IPv4Address,
    target_mac: bytes,
    target_ip: ipaddress.IPv4Address,
) -> bytes:
    return _ETHERNET.pack(eth_destination, own_mac, ETH_P_ARP) + _ARP.pack(
        1,
        ETH_P_IPV4,
        6,
        4,
        operation,
        own_mac,
        sender_ip.packed,
        target_mac,
        target_ip.packed,
    )


def arp_reply(own_mac: bytes, request: ArpPacket) -> bytes:
    """The reply to `request`: its target IP is at `own_mac`, sent to the asker alone."""
    return _arp_frame(
        request.sender_mac,
        own_mac,
        operation=ARP_REPLY,
        sender_ip=request.target_ip,
        target_mac=request.sender_mac,
        target_ip=request.sender_ip,
    )


def gratuitous_arp(own_mac: bytes, ip: ipaddress.IPv4Address | str, operation: int) -> bytes:
    """A broadcast announcement that `ip` is at `own_mac`.

    Linux updates an existing neighbour entry from either form at once, even within its
    `locktime`, when sender IP equals target IP and, for a reply, target MAC equals sender MAC
    (`arp_is_garp`); other stacks prefer one or the other, so an announcer sends both.
    """
    address = ipaddress.IPv4Address(ip)
    target_mac = own_mac if operation == ARP_REPLY else ZERO_MAC
    return _arp_frame(
        BROADCAST_MAC,
        own_mac,
        operation=operation,
        sender_ip=address,
        target_mac=target_mac,
        target_ip=address,
    )


@dataclass(frozen=True)
class NdPacket:
    """An ICMPv6 neighbour solicitation or advertisement, with its IPv6 and Ethernet headers.

    `link_layer` is the source (NS) or target (NA) link-layer address option, if present.
    """

    eth_source: bytes
    eth_destination: bytes
    source: ipaddress.IPv6Address
    destination: ipaddress.IPv6Address
    hop_limit: int
    icmp_type: int
    flags: int  # NA: Router, Solicited, Override in the top bits of the first byte
    target: ipaddress.IPv6Address
    link_layer: bytes | None

    @property
    def override(self) -> bool:
        return bool(self.flags & NA_FLAG_OVERRIDE)

    @property
    def solicited(self) -> bool:
        return bool(self.flags & NA_FLAG_SOLICITED)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _icmpv6_checksum(
    source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address, message: bytes
) -> int:
    pseudo = source.packed + destination.packed + struct.pack("!I3xB", len(message), 58)
    return _checksum(pseudo + message)


def _icmpv6_message(frame: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes] | None:
    """(destination MAC, source MAC, source IP, destination IP, ICMPv6 message) of a frame
    carrying ICMPv6 with hop limit 255 and a correct checksum; None otherwise."""
    header_end = _ETHERNET.size + _IPV6.size
    if len(frame) < header_end + _ICMPV6_ND.size:
        return None
    destination_mac, source_mac, ethertype = _ETHERNET.unpack_from(frame)
    _, length, next_header, hop_limit, source, destination = _IPV6.unpack_from(
        frame, _ETHERNET.size
    )
    message = frame[header_end : header_end + length]
    if (
        ethertype != ETH_P_IPV6
        or next_header != IPPROTO_ICMPV6
        or hop_limit != 255
        or len(message) != length
        or _icmpv6_checksum(
            ipaddress.IPv6Address(source), ipaddress.IPv6Address(destination), message
        )
        != 0
    ):
        return None
    return destination_mac, source_mac, source, destination, message


def _link_layer_option(message: bytes, wanted: int) -> tuple[bool, bytes | None]:
    """(valid, the link-layer address in option `wanted`) from an ND message's options."""
    offset = _ICMPV6_ND.size
    found = None
    while offset + 2 <= len(message):
        option_type, option_units = message[offset], message[offset + 1]
        if option_units == 0:
            return False, None  # RFC 4861 §4.6: a zero-length option invalidates the message
        if option_type == wanted and option_units == 1:
            found = message[offset + 2 : offset + 8]
        offset += option_units * 8
    return True, found


def parse_nd(frame: bytes) -> NdPacket | None:
    """The neighbour solicitation or advertisement in an Ethernet frame, if it is one.

    Messages that RFC 4861 §7.1 tells a node to drop are None too: hop limit not 255, code
    not 0, a bad checksum, a zero-length option, or a multicast target.
    """
    parts = _icmpv6_message(frame)
    if parts is None or len(parts[4]) < _ICMPV6_ND.size:
        return None
    destination_mac, source_mac, source, destination, message = parts
    icmp_type, code, _, flags_word, target = _ICMPV6_ND.unpack_from(message)
    target_ip = ipaddress.IPv6Address(target)
    if (
        icmp_type not in (ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_NEIGHBOR_ADVERTISEMENT)
        or code
        or target_ip.is_multicast
    ):
        return None
    valid, link_layer = _link_layer_option(
        message,
        ND_OPTION_SOURCE_LINK_LAYER
        if icmp_type == ICMPV6_NEIGHBOR_SOLICITATION
        else ND_OPTION_TARGET_LINK_LAYER,
    )
    if not valid:
        return None
    return NdPacket(
        source_mac,
        destination_mac,
        ipaddress.IPv6Address(source),
        ipaddress.IPv6Address(destination),
        255,
        icmp_type,
        flags_word >> 24,
        target_ip,
        link_layer,
    )


def solicited_node_address(ip: ipaddress.IPv6Address | str) -> ipaddress.IPv6Address:
    """ff02::1:ffXX:XXXX, where solicitations for `ip` are sent (RFC 4291 §2.7.1)."""
    low = ipaddress.IPv6Address(ip).packed[-3:]
    return ipaddress.IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + low)


def _multicast_mac(ip: ipaddress.IPv6Address) -> bytes:
    return b"\x33\x33" + ip.packed[-4:]  # RFC 2464 §7


def solicited_node_mac(ip: ipaddress.IPv6Address | str) -> bytes:
    """The Ethernet multicast address solicitations for `ip` arrive at (33:33:ff:XX:XX:XX)."""
    return _multicast_mac(solicited_node_address(ip))


def all_nodes_mac() -> bytes:
    return _multicast_mac(ALL_NODES)


def neighbor_advertisement(
    own_mac: bytes,
    source: ipaddress.IPv6Address | str,
    target: ipaddress.IPv6Address | str,
    *,
    solicitation: NdPacket | None = None,
) -> bytes:
    """A neighbour advertisement: `target` is at `own_mac` (Override set).

    With `solicitation`: the solicited answer, to the asker (to all nodes when the asker has
    no address yet, as during duplicate address detection, and then not flagged Solicited).
    Without: an unsolicited advertisement to all nodes, which makes Linux update an existing
    neighbour entry to the new MAC at once (RFC 4861 §7.2.6). `source` should be a link-local
    address of the sending interface.
    """
    source_ip = ipaddress.IPv6Address(source)
    target_ip = ipaddress.IPv6Address(target)
    flags = NA_FLAG_OVERRIDE
    if solicitation is not None and not solicitation.source.is_unspecified:
        destination = solicitation.source
        eth_destination = solicitation.link_layer or solicitation.eth_source
        flags |= NA_FLAG_SOLICITED
    else:
        destination, eth_destination = ALL_NODES, all_nodes_mac()
    option = struct.pack("!BB6s", ND_OPTION_TARGET_LINK_LAYER, 1, own_mac)
    body = _ICMPV6_ND.pack(ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, 0, flags << 24, target_ip.packed)
    message = body + option
    checksum = _icmpv6_checksum(source_ip, destination, message)
    message = message[:2] + struct.pack("!H", checksum) + message[4:]
    ipv6 = _IPV6.pack(
        6 << 28, len(message), IPPROTO_ICMPV6, 255, source_ip.packed, destination.packed
    )
    return _ETHERNET.pack(eth_destination, own_mac, ETH_P_IPV6) + ipv6 + message


def neighbor_solicitation(
    own_mac: bytes, source: ipaddress.IPv6Address | str, target: ipaddress.IPv6Address | str
) -> bytes:
    """A multicast solicitation for `target` from `source` (tests and the lab ask with it)."""
    source_ip = ipaddress.IPv6Address(source)
    target_ip = ipaddress.IPv6Address(target)
    destination = solicited_node_address(target_ip)
    option = struct.pack("!BB6s", ND_OPTION_SOURCE_LINK_LAYER, 1, own_mac)
    message = _ICMPV6_ND.pack(ICMPV6_NEIGHBOR_SOLICITATION, 0, 0, 0, target_ip.packed) + option
    checksum = _icmpv6_checksum(source_ip, destination, message)
    message = message[:2] + struct.pack("!H", checksum) + message[4:]
    ipv6 = _IPV6.pack(
        6 << 28, len(message), IPPROTO_ICMPV6, 255, source_ip.packed, destination.packed
    )
    return _ETHERNET.pack(_multicast_mac(destination), own_mac, ETH_P_IPV6) + ipv6 + message


def arp_request(
    own_mac: bytes, sender_ip: ipaddress.IPv4Address | str, target_ip: ipaddress.IPv4Address | str
) -> bytes:
    """A broadcast "who has target_ip" (tests and the lab ask with it)."""
    return _arp_frame(
        BROADCAST_MAC,
        own_mac,
        operation=ARP_REQUEST,
        sender_ip=ipaddress.IPv4Address(sender_ip),
        target_mac=ZERO_MAC,
        target_ip=ipaddress.IPv4Address(target_ip),
    )
