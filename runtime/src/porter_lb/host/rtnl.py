"""A small rtnetlink client: the requests porter-lb makes of a node's kernel, on a plain
NETLINK_ROUTE socket (rtnetlink(7), netlink(7)).

Why not pyroute2: importing any part of it (0.9) loads the whole package and the asyncio it
is built on, ~15 MB resident in every agent with host rules on (the chart's default), for a
dozen message types. This module encodes and decodes those: routes (rtmsg), policy rules
(fib_rule_hdr), links (ifinfomsg) and addresses (ifaddrmsg), with the attributes porter-lb
reads or writes. A request that fails raises `NetlinkError` with the kernel's errno.

One `Rtnl` is one socket, in the network namespace of the thread that opened it, used by one
thread at a time (its callers serialise: HostRules' worker, the announcer's loop).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

NETLINK_ROUTE = 0

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400

RTM_GETLINK = 18
RTM_GETADDR = 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34

RTA_DST, RTA_OIF, RTA_TABLE = 1, 4, 15
FRA_DST, FRA_PRIORITY, FRA_TABLE, FRA_PROTOCOL = 1, 6, 15, 21
IFLA_ADDRESS, IFLA_IFNAME = 1, 3
IFA_ADDRESS = 1

FR_ACT_TO_TBL = 1
RT_TABLE_UNSPEC = 0

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_ATTRIBUTE = struct.Struct("=HH")  # rtattr: length, type
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
# type, flags; fib_rule_hdr has the same layout (family, dst_len, src_len, tos, table, res1,
# res2, action, flags)
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index


class NetlinkError(OSError):
    """The kernel refused a request: `code` is its errno (EEXIST, ENOENT, ...)."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(code, f"{what}: {os.strerror(code)}")
        self.code = code


def _align(length: int) -> int:
    return (length + 3) & ~3


def attribute(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    data = _ATTRIBUTE.pack(_ATTRIBUTE.size + len(payload), kind) + payload
    return data + b"\0" * (_align(len(data)) - len(data))


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def attributes(data: bytes) -> dict[int, bytes]:
    """The rtattrs of a message body, by type (the last one wins)."""
    found: dict[int, bytes] = {}
    index = 0
    while index + _ATTRIBUTE.size <= len(data):
        length, kind = _ATTRIBUTE.unpack_from(data, index)
        if length < _ATTRIBUTE.size:
            break
        found[kind & 0x3FFF] = data[index + _ATTRIBUTE.size : index + length]
        index += _align(length)
    return found


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, sequence, body) of each netlink message in a datagram."""
    index = 0
    while index + _HEADER.size <= len(data):
        length, kind, flags, sequence, _port = _HEADER.unpack_from(data, index)
        if length < _HEADER.size:
            break
        yield kind, flags, sequence, data[index + _HEADER.size : index + length]
        index += _align(length)


@dataclass(frozen=True)
class Route:
    """A route as porter-lb reads it (RTM_NEWROUTE)."""

    family: int
    dst_len: int
    table: int
    protocol: int
    scope: int
    type: int
    dst: str | None  # None: the default route of its family
    oif: int | None


@dataclass(frozen=True)
class RuleEntry:
    """A policy rule as porter-lb reads it (RTM_NEWRULE)."""

    family: int
    dst_len: int
    table: int
    dst: str | None
    priority: int
    protocol: int


@dataclass(frozen=True)
class LinkEntry:
    index: int
    flags: int
    name: str
    address: bytes  # the hardware address (empty if none)


@dataclass(frozen=True)
class AddressEntry:
    family: int
    prefixlen: int
    scope: int
    index: int
    address: str


def _address(family: int, data: bytes | None) -> str | None:
    return None if data is None else socket.inet_ntop(family, data)


def _table(header_table: int, attrs: dict[int, bytes], kind: int) -> int:
    return struct.unpack("=I", attrs[kind])[0] if kind in attrs else header_table


def parse_route(body: bytes) -> Route:
    family, dst_len, _src, _tos, table, protocol, scope, kind, _flags = _RTMSG.unpack_from(body)
    attrs = attributes(body[_RTMSG.size :])
    return Route(
        family,
        dst_len,
        _table(table, attrs, RTA_TABLE),
        protocol,
        scope,
        kind,
        _address(family, attrs.get(RTA_DST)),
        struct.unpack("=I", attrs[RTA_OIF])[0] if RTA_OIF in attrs else None,
    )


def parse_rule(body: bytes) -> RuleEntry:
    family, dst_len, _src, _tos, table, _r1, _r2, _action, _flags = _RTMSG.unpack_from(body)
    attrs = attributes(body[_RTMSG.size :])
    return RuleEntry(
        family,
        dst_len,
        _table(table, attrs, FRA_TABLE),
        _address(family, attrs.get(FRA_DST)),
        struct.unpack("=I", attrs[FRA_PRIORITY])[0] if FRA_PRIORITY in attrs else 0,
        attrs[FRA_PROTOCOL][0] if FRA_PROTOCOL in attrs else 0,
    )


def parse_link(body: bytes) -> LinkEntry:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    attrs = attributes(body[_IFINFOMSG.size :])
    return LinkEntry(
        index,
        flags,
        attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace"),
        attrs.get(IFLA_ADDRESS, b""),
    )


def parse_address(body: bytes) -> AddressEntry:
    family, prefixlen, _flags, scope, index = _IFADDRMSG.unpack_from(body)
    attrs = attributes(body[_IFADDRMSG.size :])
    return AddressEntry(
        family, prefixlen, scope, index, _address(family, attrs.get(IFA_ADDRESS)) or ""
    )


def route_body(
    family: int,
    dst: str | None,
    dst_len: int,
    *,
    table: int = 0,
    protocol: int = 0,
    scope: int = 0,
    kind: int = 0,
    oif: int | None = None,
) -> bytes:
    """An rtmsg and its attributes (the table also as RTA_TABLE: tables above 255)."""
    body = _RTMSG.pack(
        family, dst_len, 0, 0, table if table < 256 else RT_TABLE_UNSPEC, protocol, scope, kind, 0
    )
    if dst is not None:
        body += attribute(RTA_DST, socket.inet_pton(family, dst))
    if table:
        body += attribute(RTA_TABLE, u32(table))
    if oif is not None:
        body += attribute(RTA_OIF, u32(oif))
    return body


def rule_body(
    family: int, dst: str | None, dst_len: int, *, table: int, priority: int, protocol: int
) -> bytes:
    """A fib_rule_hdr ("lookup TABLE") and its attributes."""
    body = _RTMSG.pack(
        family, dst_len, 0, 0, table if table < 256 else RT_TABLE_UNSPEC, 0, 0, FR_ACT_TO_TBL, 0
    )
    if dst is not None:
        body += attribute(FRA_DST, socket.inet_pton(family, dst))
    body += attribute(FRA_TABLE, u32(table))
    body += attribute(FRA_PRIORITY, u32(priority))
    body += attribute(FRA_PROTOCOL, bytes([protocol]))
    return body


@dataclass
class Rtnl:
    """One NETLINK_ROUTE socket (see the module docstring)."""

    sock: socket.socket = field(init=False)
    _sequence: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))

    def close(self) -> None:
        self.sock.close()

    def request(
        self, kind: int, flags: int, body: bytes, what: str, *, dump: bool = False
    ) -> list[tuple[int, bytes]]:
        """Send one request; the (type, body) of every message answering it: a dump's until
        NLMSG_DONE, any other's until its ACK. NetlinkError on an error. (`dump` is a
        parameter, not read from `flags`: NLM_F_EXCL shares a bit with NLM_F_DUMP.)"""
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        sequence = self._sequence
        flags |= NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        self.sock.sendall(_HEADER.pack(_HEADER.size + len(body), kind, flags, sequence, 0) + body)
        replies: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 20)
            for reply_kind, _flags, reply_sequence, reply in messages(data):
                if reply_sequence != sequence:
                    continue  # an answer to a request given up on
                if reply_kind == NLMSG_DONE:
                    return replies
                if reply_kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", reply)
                    if code:
                        raise NetlinkError(-code, what)
                    return replies  # the ACK
                replies.append((reply_kind, reply))

    def dump(self, kind: int, body: bytes, what: str) -> list[bytes]:
        return [reply for _kind, reply in self.request(kind, 0, body, what, dump=True)]

    # What porter-lb asks.

    def routes(self, family: int) -> list[Route]:
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        return [parse_route(b) for b in self.dump(RTM_GETROUTE, body, "dumping routes")]

    def rules(self, family: int) -> list[RuleEntry]:
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        return [parse_rule(b) for b in self.dump(RTM_GETRULE, body, "dumping rules")]

    def links(self) -> list[LinkEntry]:
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        return [parse_link(b) for b in self.dump(RTM_GETLINK, body, "dumping links")]

    def addresses(self, family: int) -> list[AddressEntry]:
        body = _IFADDRMSG.pack(family, 0, 0, 0, 0)
        return [parse_address(b) for b in self.dump(RTM_GETADDR, body, "dumping addresses")]

    def route_get(self, ip: str) -> Route | None:
        """The route the kernel would use for `ip` (`ip route get`); None if unreachable."""
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        bits = 128 if family == socket.AF_INET6 else 32
        try:
            replies = self.request(RTM_GETROUTE, 0, route_body(family, ip, bits), f"route get {ip}")
        except NetlinkError as error:
            if error.code in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL):
                return None
            raise
        routes = [parse_route(body) for kind, body in replies if kind == RTM_NEWROUTE]
        return routes[0] if routes else None

    def change_route(self, add: bool, body: bytes, what: str) -> None:
        kind, flags = (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL) if add else (RTM_DELROUTE, 0)
        self.request(kind, flags, body, what)

    def change_rule(self, add: bool, body: bytes, what: str) -> None:
        kind, flags = (RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL) if add else (RTM_DELRULE, 0)
        self.request(kind, flags, body, what)
