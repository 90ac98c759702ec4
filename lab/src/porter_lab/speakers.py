"""gobgpd processes in a node's network namespace, driven over gRPC on a unix socket."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from porter_lab.processes import Daemon
from porter_lb.gobgp import GoBGP


@dataclass
class Gobgpd:
    """One gobgpd. Its gRPC API listens only on a unix socket (never on :50051 of every address),
    which the test process reaches from outside the namespace."""

    netns: str
    workdir: Path
    daemon: Daemon | None = None
    client: GoBGP | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "gobgp.sock"

    @property
    def target(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> GoBGP:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.daemon = Daemon(
            "gobgpd",
            [
                "gobgpd",
                "--api-hosts",
                self.target,
                "--pprof-disable",
                "--log-plain",
                "--log-level",
                "info",
            ],
            self.workdir / "gobgpd.log",
            netns=self.netns,
        ).start()
        self.client = GoBGP(self.target)
        try:
            self.client.wait_ready(10)
        except Exception:
            self.daemon.check_running()
            raise
        return self.client

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.daemon is not None:
            self.daemon.stop()
