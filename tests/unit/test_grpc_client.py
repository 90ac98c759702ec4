"""porter-lb's gRPC client (porter_lb.routing.grpc_client): its pure parts, by table. The
calls themselves run against a real gobgpd in tests/bed/test_gobgp_api.py and every bed test.

Expected values are written from gRPC's HTTP/2 protocol description and RFC 9113, not from
the client's own functions."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from porter_lb.routing.grpc_client import (
    Channel,
    RpcError,
    frame,
    message,
    messages,
    parse_target,
    request_headers,
    status_name,
)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "unix:///run/porter-lb/gobgp.sock",
            (socket.AF_UNIX, "/run/porter-lb/gobgp.sock", "localhost"),
        ),
        ("unix:relative.sock", (socket.AF_UNIX, "relative.sock", "localhost")),
        ("127.0.0.1:50051", (socket.AF_INET, ("127.0.0.1", 50051), "127.0.0.1:50051")),
        ("ipv4:127.0.0.1:50051", (socket.AF_INET, ("127.0.0.1", 50051), "127.0.0.1:50051")),
        ("dns:///localhost:50051", (socket.AF_INET, ("localhost", 50051), "localhost:50051")),
        ("[::1]:50051", (socket.AF_INET6, ("::1", 50051), "::1:50051")),
    ],
)
def test_targets(target: str, expected: tuple[object, ...]) -> None:
    assert parse_target(target) == expected


@pytest.mark.parametrize("target", ["unix://", "localhost", ":50051", "host:port", ""])
def test_a_bad_target_is_refused_naming_it(target: str) -> None:
    with pytest.raises(ValueError, match=r"unix:///PATH or HOST:PORT|no socket path"):
        parse_target(target)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("0", "OK"),
        ("4", "DEADLINE_EXCEEDED"),
        ("5", "NOT_FOUND"),
        ("14", "UNAVAILABLE"),
        ("16", "UNAUTHENTICATED"),
        ("17", "UNKNOWN"),
        ("x", "UNKNOWN"),
    ],
)
def test_status_names(value: str, name: str) -> None:
    assert status_name(value) == name


def test_a_frame_is_a_nine_byte_header_and_its_payload() -> None:
    # length 24 bits, type, flags, stream id 31 bits (RFC 9113 4.1)
    assert frame(0x8, 0, 3, b"\x00\x00\x01\x00") == b"\x00\x00\x04\x08\x00\x00\x00\x00\x03" + (
        b"\x00\x00\x01\x00"
    )
    assert frame(0x4, 0x1, 0) == b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def test_messages_are_length_prefixed_and_taken_whole() -> None:
    assert message(b"abc") == b"\x00\x00\x00\x00\x03abc"
    buffer = bytearray(b"\x00\x00\x00\x00\x02hi" + b"\x00\x00\x00\x00\x00" + b"\x00\x00\x00")
    assert list(messages(buffer)) == [b"hi", b""]
    assert buffer == bytearray(b"\x00\x00\x00")  # an incomplete prefix stays for later
    buffer += b"\x00\x01" + b"!"
    assert list(messages(buffer)) == [b"!"] and buffer == bytearray()


def test_a_compressed_message_is_an_error_not_garbage() -> None:
    buffer = bytearray(b"\x01" + struct.pack("!I", 1) + b"x")
    with pytest.raises(RpcError) as error:
        list(messages(buffer))
    assert error.value.code == "INTERNAL"


def test_no_server_is_unavailable_and_names_the_target(tmp_path: Path) -> None:
    channel = Channel(f"unix://{tmp_path}/absent.sock")
    with pytest.raises(RpcError) as error:
        channel.call("/api.GoBgpService/GetBgp", [b""], timeout=1.0)
    assert error.value.code == "UNAVAILABLE"
    assert f"{tmp_path}/absent.sock" in error.value.details
    assert channel.wait_ready(0.2) is False


def test_a_server_that_never_answers_ends_the_call_at_its_deadline(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()  # connections are queued, never served
        channel = Channel(f"unix://{path}")
        started = time.monotonic()
        with pytest.raises(RpcError) as error:
            channel.call("/api.GoBgpService/GetBgp", [b""], timeout=0.3)
        assert error.value.code == "DEADLINE_EXCEEDED"
        assert 0.3 <= time.monotonic() - started < 2.0
        channel.close()


def test_request_headers_decode_as_a_grpc_request_with_any_decoder_state() -> None:
    """Our header block, read by an independent HPACK decoder (`hpack`), twice: literal
    fields change no dynamic table, so the same bytes mean the same on any connection."""
    import hpack

    block = request_headers("/api.GoBgpService/AddPath", "localhost", 5000)
    decoder = hpack.Decoder()
    expected = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/api.GoBgpService/AddPath"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", "5000m"),
    ]
    assert decoder.decode(block) == expected
    assert decoder.decode(block) == expected
    long_path = "/" + "x" * 300  # a length past the 7-bit prefix: continuation bytes
    assert hpack.Decoder().decode(request_headers(long_path, "h", 1))[2] == (":path", long_path)
