"""Finding and signalling the process behind a unix-socket gRPC target (the adapter the
speaker uses to get a fresh gobgpd), against a real listening process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter_lab.waiting import wait_for
from porter_lb.routing.gobgpd_process import GobgpdProcess, serving_pid, socket_path

LISTENER = """
import signal, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(8)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("ready", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    s.settimeout(1.0)
    try:
        s.accept()[0].close()
    except OSError:
        pass
"""


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    path = tmp_path / "gobgp.sock"
    process = subprocess.Popen(
        [sys.executable, "-c", LISTENER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    yield process, path
    process.kill()
    process.wait(10)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("unix:///run/porter-lb/gobgp.sock", "/run/porter-lb/gobgp.sock"),
        ("unix:relative.sock", "relative.sock"),
        ("127.0.0.1:50051", None),
        ("dns:///gobgpd:50051", None),
    ],
)
def test_socket_path(target: str, expected: str | None) -> None:
    assert socket_path(target) == expected


def test_the_pid_behind_the_socket_is_the_listener(
    listener: tuple[subprocess.Popen[str], Path],
) -> None:
    process, path = listener
    assert serving_pid(str(path)) == process.pid


def test_restart_sends_sigterm_to_the_listener(
    listener: tuple[subprocess.Popen[str], Path],
) -> None:
    process, path = listener
    assert GobgpdProcess(f"unix://{path}").restart() is None
    wait_for(lambda: process.poll() is not None, 10, "the listener to exit")
    assert process.returncode == 0  # it exited on SIGTERM, as gobgpd does


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("127.0.0.1:50051", "not on a unix socket"),
        ("unix:///nonexistent/gobgp.sock", "cannot reach gobgpd's socket"),
    ],
)
def test_restart_says_why_it_cannot(target: str, reason: str) -> None:
    why = GobgpdProcess(target).restart()
    assert why is not None and reason in why
