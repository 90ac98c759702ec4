"""A BIRD whose main configuration only `include`s a file written by someone else.

For testing porter.lb.bird_bgp against a real daemon: the module owns the included file; this
main file holds what the module leaves to it (logging, `protocol device`) and a static
protocol named `lab_static`, whose name a test can reuse to make BIRD reject a configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from porter_lab import netns
from porter_lab.processes import Daemon
from porter_lab.waiting import wait_for

EMPTY_INCLUDE = "# Managed by porter.lb.bird_bgp: changes made here are overwritten.\n"


@dataclass
class IncludingBird:
    netns: str
    workdir: Path
    daemon: Daemon | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "bird.ctl"

    @property
    def main_config(self) -> Path:
        return self.workdir / "bird.conf"

    @property
    def included(self) -> Path:
        return self.workdir / "porter-lb-bgp.conf"

    def start(self) -> IncludingBird:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.included.exists():
            self.included.write_text(EMPTY_INCLUDE)
        self.main_config.write_text(
            f'log "{self.workdir / "bird.log"}" all;\n'
            "protocol device { scan time 10; }\n"
            "protocol static lab_static { ipv4; }\n"
            f'include "{self.included}";\n'
        )
        self.daemon = Daemon(
            "bird",
            ["bird", "-f", "-c", str(self.main_config), "-s", str(self.socket)],
            self.workdir / "bird.stdout",
            netns=self.netns,
        ).start()
        wait_for(self._ready, 10, "BIRD control socket")
        return self

    def _ready(self) -> bool:
        assert self.daemon is not None
        self.daemon.check_running()
        return self.socket.exists() and "BIRD" in self.birdc("show status")

    def birdc(self, command: str) -> str:
        return netns.run(["birdc", "-s", str(self.socket), command], timeout=10)

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
