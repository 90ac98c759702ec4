"""Daemons the bed starts: one process group each, output to a log file, stopped for sure."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from porter_lab.waiting import Fatal, wait_for


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


class DaemonExited(Fatal):
    pass


@dataclass
class Daemon:
    """A long-running process, optionally inside a network namespace."""

    name: str
    argv: list[str]
    log: Path
    netns: str | None = None
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Daemon:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                in_netns(self.netns, self.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(self.env or {})},
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_running(self) -> bool:
        """True while running; once the daemon has exited, raise with the log's tail."""
        if not self.running():
            code = self.process.returncode if self.process else None
            raise DaemonExited(f"{self.name} exited (code {code}); log {self.log}:\n{self.tail()}")
        return True

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        kill_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            kill_group(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    """Stop a process group by its leader's pid (for a lab recorded by an earlier command)."""

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    kill_group(pid, signal.SIGTERM)
    try:
        wait_for(gone, timeout, f"process {pid} to exit")
    except AssertionError:
        kill_group(pid, signal.SIGKILL)
