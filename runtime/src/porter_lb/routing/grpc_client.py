"""A small gRPC client over HTTP/2 for one local gobgpd: unary, server- and client-streaming
calls, one at a time, on one connection.

Why not grpcio: it is ~18 MB resident in every agent (its C core, and the asyncio it imports),
more than everything else the agent holds, for a peer that is a unix socket away and calls
that go one at a time from one loop. This client is the part of gRPC those calls use
(https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md), on a plain socket. The
server's header blocks are decoded by `hpack` (pure Python, also what the `h2` library uses);
ours are literal fields built once per method (`request_headers`), and a call's frames go out
in one write.

* **Calls are serialised** (a lock): a stream is opened, its requests sent, its replies read to
  the end, before the next call. gobgpd's calls are short; the speaker makes them in order.
* **Flow control**: requests are sent within the server's windows (WINDOW_UPDATE frames are
  read while waiting); our own windows are 16 MiB per stream and per connection, topped up
  each time half is used, so a 10,000-path ListPath never waits on us.
* **Connection**: opened at the first call, not before. Between calls, frames the server sent
  meanwhile are read (PING answered, SETTINGS acknowledged); an end of file or a GOAWAY
  means the server went (gobgpd restarted): the next call opens a fresh connection, so a
  restarted gobgpd is reached by the first call after it is back, as grpcio's channel does.
* **Errors** are `RpcError(code, details)`: the server's `grpc-status` by name; a connection
  that cannot be made or is lost is UNAVAILABLE, a call past its timeout DEADLINE_EXCEEDED.

Targets: `unix:///path`, `unix:path`, `HOST:PORT` (also `[IPv6]:PORT`, `dns:///HOST:PORT`,
`ipv4:HOST:PORT`). No TLS: gobgpd listens on a unix socket or loopback only.
"""

from __future__ import annotations

import functools
import select
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0,
    0x1,
    0x3,
    0x4,
    0x6,
    0x7,
    0x8,
    0x9,
)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 0x4, 0x5

WINDOW = 16 << 20
"""Our receive window, per stream and for the connection."""
DEFAULT_WINDOW = 65_535
DEFAULT_FRAME = 16_384
MAX_STREAM_ID = 2**31 - 1

STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)


class RpcError(Exception):
    """A call failed: `code` is the gRPC status name (e.g. UNAVAILABLE), `details` its text."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


def status_name(value: str) -> str:
    """A `grpc-status` header's name (an unknown number: UNKNOWN)."""
    try:
        return STATUS_NAMES[int(value)]
    except (ValueError, IndexError):
        return "UNKNOWN"


def parse_target(target: str) -> tuple[int, str | tuple[str, int], str]:
    """(address family, address, :authority) of a gRPC target. ValueError if it is none."""
    if target.startswith("unix:"):
        path = target[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError(f"{target!r}: no socket path")
        return socket.AF_UNIX, path, "localhost"
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    host, colon, port = target.rpartition(":")
    if not colon or not port.isdigit() or not host:
        raise ValueError(f"{target!r}: want unix:///PATH or HOST:PORT")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port)), f"{host}:{port}"


def _integer(value: int, prefix_bits: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with a prefix of `prefix_bits`, the flag bits zero."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out = bytearray([limit])
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _literal(name: str, value: str) -> bytes:
    """A header field as "literal without indexing, new name", no Huffman (RFC 7541 6.2.2):
    it leaves the server's dynamic table alone, so a header block can be built once and sent
    again on any connection."""
    encoded_name, encoded_value = name.encode(), value.encode()
    return (
        b"\x00"
        + _integer(len(encoded_name), 7)
        + encoded_name
        + _integer(len(encoded_value), 7)
        + encoded_value
    )


@functools.lru_cache(maxsize=256)
def request_headers(path: str, authority: str, timeout_ms: int) -> bytes:
    """The header block of a gRPC request (PROTOCOL-HTTP2.md); :method POST and :scheme http
    are entries 3 and 6 of HPACK's static table (indexed: 0x80 | index)."""
    return b"\x83\x86" + b"".join(
        _literal(name, value)
        for name, value in (
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", f"{timeout_ms}m"),
        )
    )


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload))[1:] + struct.pack("!BBI", kind, flags, stream) + payload


def message(data: bytes) -> bytes:
    """One gRPC length-prefixed message (uncompressed)."""
    return struct.pack("!BI", 0, len(data)) + data


def messages(buffer: bytearray) -> Iterator[bytes]:
    """Take the whole gRPC messages off the front of `buffer`."""
    while len(buffer) >= 5:
        compressed, length = struct.unpack_from("!BI", buffer, 0)
        if len(buffer) < 5 + length:
            return
        if compressed:
            raise RpcError("INTERNAL", "a compressed message, which was never asked for")
        data = bytes(buffer[5 : 5 + length])
        del buffer[: 5 + length]
        yield data


class _Lost(Exception):
    """The connection is gone (end of file, reset, GOAWAY)."""


class _Connection:
    """One HTTP/2 connection, used by one call at a time (Channel holds the lock)."""

    def __init__(self, family: int, address: str | tuple[str, int], timeout: float) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(address)
        except OSError:
            self.sock.close()  # at once: a speaker retries every 0.2-0.5 s while gobgpd is down
            raise
        self.decoder = hpack.Decoder()
        self.buffer = bytearray()
        self.next_stream = 1
        self.send_window = DEFAULT_WINDOW  # the connection's, as the server grants it
        self.initial_stream_window = DEFAULT_WINDOW
        self.max_frame = DEFAULT_FRAME
        self.unacked = 0  # DATA bytes received since our last connection WINDOW_UPDATE
        self.going_away = False
        self.ready = False  # the server's SETTINGS came
        self.current: _Stream | None = None  # the open stream, if a call is under way
        settings = struct.pack(
            "!HIHI",
            SETTINGS_INITIAL_WINDOW_SIZE,
            WINDOW,
            0x2,
            0,  # 0x2: no server push
        )
        self.sock.sendall(
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, struct.pack("!I", WINDOW - DEFAULT_WINDOW))
        )

    def close(self) -> None:
        self.sock.close()

    # Reading frames.

    def _fill(self, size: int, deadline: float) -> None:
        while len(self.buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(max(65536, size - len(self.buffer)))
            if not chunk:
                raise _Lost("the server closed the connection")
            self.buffer += chunk

    def read_frame(self, deadline: float) -> tuple[int, int, int, bytes]:
        self._fill(9, deadline)
        length = int.from_bytes(self.buffer[:3], "big")
        kind, flags, stream = struct.unpack_from("!BBI", self.buffer, 3)
        self._fill(9 + length, deadline)
        payload = bytes(self.buffer[9 : 9 + length])
        del self.buffer[: 9 + length]
        return kind, flags, stream & 0x7FFFFFFF, payload

    def connection_frame(self, kind: int, flags: int, payload: bytes) -> None:
        """Handle a frame of stream 0 (the connection's own)."""
        if kind == WINDOW_UPDATE:
            self.send_window += struct.unpack("!I", payload)[0] & 0x7FFFFFFF
        elif kind == SETTINGS:
            if not flags & ACK:
                for offset in range(0, len(payload) - 5, 6):
                    key, value = struct.unpack_from("!HI", payload, offset)
                    if key == SETTINGS_INITIAL_WINDOW_SIZE:
                        if self.current is not None:  # RFC 9113 6.9.2: open streams too
                            self.current.send_window += value - self.initial_stream_window
                        self.initial_stream_window = value
                    elif key == SETTINGS_MAX_FRAME_SIZE:
                        self.max_frame = value
                self.sock.sendall(frame(SETTINGS, ACK, 0))
                self.ready = True
        elif kind == PING:
            if not flags & ACK:
                self.sock.sendall(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            self.going_away = True

    def idle_frames(self) -> None:
        """Read what the server sent between calls; _Lost if it went."""
        while select.select([self.sock], [], [], 0)[0]:
            self._fill(len(self.buffer) + 1, time.monotonic() + 1.0)
            while len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) < 9 + length:
                    break
                kind, flags, stream, payload = self.read_frame(time.monotonic() + 1.0)
                if stream == 0:
                    self.connection_frame(kind, flags, payload)
                elif kind == HEADERS:  # of a stream given up on: keep HPACK's state
                    self.decoder.decode(self._header_block(flags, payload, deadline=None))
        if self.going_away:
            raise _Lost("the server sent GOAWAY")

    def _header_block(self, flags: int, payload: bytes, deadline: float | None) -> bytes:
        if flags & PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        if flags & PRIORITY:
            payload = payload[5:]
        block = payload
        while not flags & END_HEADERS:
            kind, flags, _stream, more = self.read_frame(deadline or time.monotonic() + 1.0)
            if kind != CONTINUATION:
                raise RpcError("INTERNAL", "a header block without its CONTINUATION")
            block += more
        return block

    # One call.

    def call(
        self, path: str, authority: str, requests: Iterable[bytes], timeout: float
    ) -> list[bytes]:
        deadline = time.monotonic() + timeout
        stream = self.next_stream
        self.next_stream += 2
        block = request_headers(path, authority, max(1, int(timeout * 1000)))
        # Frames are gathered and written at once (one write, one wake-up of the server, for
        # a unary call); only a window running out makes a write before the end.
        out = bytearray(frame(HEADERS, END_HEADERS, stream, block))
        state = self.current = _Stream(stream, self.initial_stream_window)
        try:
            for request in requests:
                self._send_data(state, message(request), deadline, out)
                if state.ended:
                    break  # the server answered before the last request (an error)
            if not state.ended:
                out += frame(DATA, END_STREAM, stream)
                self.sock.sendall(out)
            while not state.ended:
                self._receive(state, deadline)
        finally:
            self.current = None
        return state.result()

    def _send_data(self, state: _Stream, data: bytes, deadline: float, out: bytearray) -> None:
        view = memoryview(data)
        while view:
            if min(self.send_window, state.send_window) <= 0:
                self.sock.sendall(out)
                out.clear()
            while min(self.send_window, state.send_window) <= 0:
                self._receive(state, deadline)  # until a WINDOW_UPDATE (or the reply)
                if state.ended:
                    return  # the server answered early (an error): stop sending
            size = min(len(view), self.max_frame, self.send_window, state.send_window)
            out += frame(DATA, 0, state.id, bytes(view[:size]))
            self.send_window -= size
            state.send_window -= size
            view = view[size:]

    def _receive(self, state: _Stream, deadline: float) -> None:
        kind, flags, stream, payload = self.read_frame(deadline)
        if stream == 0:
            self.connection_frame(kind, flags, payload)
            if kind == GOAWAY and struct.unpack_from("!I", payload)[0] & 0x7FFFFFFF < state.id:
                raise _Lost("the server sent GOAWAY before this call")
            return
        if kind == HEADERS:
            block = self._header_block(flags, payload, deadline)
            decoded = self.decoder.decode(block)  # every block: HPACK state is shared
            if stream == state.id:
                state.headers.update({str(k): str(v) for k, v in decoded})
                state.ended = state.ended or bool(flags & END_STREAM)
        elif kind == DATA and stream == state.id:
            if flags & PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            state.data += payload
            self._acknowledge(state, len(payload) + (1 if flags & PADDED else 0))
            state.ended = state.ended or bool(flags & END_STREAM)
        elif kind == WINDOW_UPDATE and stream == state.id:
            state.send_window += struct.unpack("!I", payload)[0] & 0x7FFFFFFF
        elif kind == RST_STREAM and stream == state.id:
            code = struct.unpack("!I", payload)[0]
            raise RpcError("UNAVAILABLE" if code == 0x7 else "INTERNAL", f"stream reset ({code})")

    def _acknowledge(self, state: _Stream, size: int) -> None:
        self.unacked += size
        state.unacked += size
        if self.unacked >= WINDOW // 2:
            self.sock.sendall(frame(WINDOW_UPDATE, 0, 0, struct.pack("!I", self.unacked)))
            self.unacked = 0
        if state.unacked >= WINDOW // 2:
            self.sock.sendall(frame(WINDOW_UPDATE, 0, state.id, struct.pack("!I", state.unacked)))
            state.unacked = 0


class _Stream:
    def __init__(self, stream: int, send_window: int) -> None:
        self.id = stream
        self.send_window = send_window
        self.headers: dict[str, str] = {}
        self.data = bytearray()
        self.unacked = 0
        self.ended = False

    def result(self) -> list[bytes]:
        status = self.headers.get("grpc-status")
        if status is None:
            http = self.headers.get(":status", "?")
            raise RpcError("UNKNOWN" if http == "200" else "UNAVAILABLE", f"HTTP status {http}")
        if status != "0":
            details = urllib.parse.unquote(self.headers.get("grpc-message", ""))
            raise RpcError(status_name(status), details)
        return list(messages(self.data))


class Channel:
    """Calls to one gRPC server (see the module docstring). Thread-safe: one call at a time."""

    def __init__(self, target: str, connect_timeout: float = 5.0) -> None:
        self.target = target
        self.family, self.address, self.authority = parse_target(target)
        self.connect_timeout = connect_timeout
        self._connection: _Connection | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connected(self, timeout: float) -> _Connection:
        if self._connection is not None:
            try:
                self._connection.idle_frames()
                if self._connection.next_stream < MAX_STREAM_ID - 2:
                    return self._connection
            except (OSError, _Lost, TimeoutError, hpack.HPACKError):
                pass
            self._drop()
        try:
            self._connection = _Connection(self.family, self.address, timeout)
        except OSError as error:
            raise RpcError("UNAVAILABLE", f"connect to {self.target}: {error}") from None
        return self._connection

    def call(self, method: str, requests: Iterable[bytes], timeout: float) -> list[bytes]:
        """Call `method` (`/package.Service/Method`) with the serialised `requests`; the
        serialised replies. RpcError if the call fails."""
        with self._lock:
            connection = self._connected(min(timeout, self.connect_timeout))
            try:
                return connection.call(method, self.authority, requests, timeout)
            except TimeoutError:
                self._drop()  # the stream's state is unknown: start afresh
                raise RpcError("DEADLINE_EXCEEDED", f"no answer within {timeout:g}s") from None
            except (OSError, _Lost) as error:
                self._drop()
                raise RpcError("UNAVAILABLE", f"{self.target}: {error}") from None
            except hpack.HPACKError as error:
                self._drop()
                raise RpcError("INTERNAL", f"bad header block: {error}") from None

    def wait_ready(self, timeout: float) -> bool:
        """True once a connection is open and the server's SETTINGS came (within `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                try:
                    connection = self._connected(max(0.05, deadline - time.monotonic()))
                    while not connection.ready:
                        kind, flags, _stream, payload = connection.read_frame(
                            min(deadline, time.monotonic() + 0.5)
                        )
                        connection.connection_frame(kind, flags, payload)
                    return True
                except (RpcError, OSError, _Lost, TimeoutError, hpack.HPACKError):
                    self._drop()
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
