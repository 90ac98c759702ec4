"""BGP UPDATEs as they arrive at a router, timed: an AF_PACKET capture in its namespace.

`UpdateCapture(netns, link)` opens a packet socket on the router's link (inside the namespace:
setns on this thread, then back) and a thread records every BGP UPDATE a peer sends to it:
when it arrived (monotonic), from which address, and the IPv4 prefixes it announces and
withdraws (the NLRI and withdrawn-routes fields; MP_REACH/MP_UNREACH are not decoded). With
the router's FIB watched too (porter_lab.fib), a route change splits into "the speaker sent
it" and "the router installed it" (bench/timeline.py).

Only the first segment of a message is parsed: the UPDATEs of these benches are a few dozen
bytes, one per segment. A message cut by a segment boundary is skipped, not misread.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import ClassVar

from porter_lab.capture import ETH_P_IP, LinkCapture

_BGP_PORT = 179
_UPDATE = 2
_HEADER = 19


@dataclass(frozen=True)
class Update:
    at: float  # monotonic, when the frame was read
    source: str  # the sending peer's address
    announced: tuple[str, ...]
    withdrawn: tuple[str, ...]

    def mentions(self, prefix: str) -> bool:
        return prefix in self.announced or prefix in self.withdrawn


def _prefixes(data: bytes, add_path: bool = False) -> tuple[str, ...]:
    """IPv4 prefixes in BGP's (length, packed bytes) encoding; with `add_path`, each after
    its 4-byte path identifier (RFC 7911), which is dropped."""
    found: list[str] = []
    index = 0
    while index < len(data):
        if add_path:
            index += 4
        length = data[index]
        if length > 32:
            raise ValueError(f"prefix length {length}")
        size = (length + 7) // 8
        packed = data[index + 1 : index + 1 + size].ljust(4, b"\0")
        found.append(f"{ipaddress.IPv4Address(packed)}/{length}")
        index += 1 + size
    return tuple(found)


def parse_updates(
    payload: bytes, add_path: bool = False
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(announced, withdrawn) of each whole UPDATE in a TCP payload; other messages skipped.
    `add_path`: the session carries path identifiers (RFC 7911). A malformed message ends
    the parse (what came before it is kept)."""
    found: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    index = 0
    while index + _HEADER <= len(payload):
        if payload[index : index + 16] != b"\xff" * 16:
            break  # not at a message boundary: the rest belongs to another segment
        length, kind = struct.unpack_from("!HB", payload, index + 16)
        if length < _HEADER or index + length > len(payload):
            break
        if kind == _UPDATE:
            body = payload[index + _HEADER : index + length]
            try:
                (withdrawn_length,) = struct.unpack_from("!H", body, 0)
                withdrawn = body[2 : 2 + withdrawn_length]
                (attributes_length,) = struct.unpack_from("!H", body, 2 + withdrawn_length)
                nlri = body[4 + withdrawn_length + attributes_length :]
                found.append((_prefixes(nlri, add_path), _prefixes(withdrawn, add_path)))
            except (ValueError, IndexError, struct.error):
                break
        index += length
    return found


def parse_frame(frame: bytes) -> tuple[str, bytes] | None:
    """(source address, TCP payload) of an Ethernet/IPv4/TCP frame of a BGP session (either
    port 179: either side may have opened it), else None."""
    if len(frame) < 14 + 20 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
        return None
    ip = frame[14:]
    header_length = (ip[0] & 0x0F) * 4
    total_length = struct.unpack_from("!H", ip, 2)[0]
    if ip[9] != socket.IPPROTO_TCP or len(ip) < header_length + 20:
        return None
    tcp = ip[header_length:total_length]
    ports = struct.unpack_from("!HH", tcp, 0)
    if _BGP_PORT not in ports:
        return None
    offset = (tcp[12] >> 4) * 4
    return str(ipaddress.IPv4Address(ip[12:16])), bytes(tcp[offset:])


@dataclass
class UpdateCapture(LinkCapture):
    """Every BGP UPDATE sent to the router on `link` of `netns` (see the module docstring)."""

    netns: str
    link: str
    add_path: bool = False  # the sessions carry ADD-PATH identifiers (central mode)
    updates: list[Update] = field(default_factory=list)
    max_updates: int = 100_000
    _lock: threading.Lock = field(default_factory=threading.Lock)
    protocol: ClassVar[int] = ETH_P_IP
    thread_name: ClassVar[str] = "bgp-capture"

    def opened(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)

    def handle(self, frame: bytes, at: float) -> None:
        parsed = parse_frame(frame)
        if parsed is None:
            return
        source, payload = parsed
        for announced, withdrawn in parse_updates(payload, self.add_path):
            with self._lock:
                if len(self.updates) < self.max_updates:
                    self.updates.append(Update(at, source, announced, withdrawn))

    def first_after(self, prefix: str, since: float, sources: frozenset[str]) -> Update | None:
        """The first UPDATE about `prefix` from one of `sources` read at or after `since`."""
        with self._lock:
            for update in self.updates:
                if update.at >= since and update.source in sources and update.mentions(prefix):
                    return update
        return None
