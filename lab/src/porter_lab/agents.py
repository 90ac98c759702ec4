"""`porter-lb agent` processes for the lab and the bed.

No kubelet runs here, so an agent is a plain process in the HOST network namespace (the API
server listens on the host's loopback) that drives the gobgpd in its node's namespace through
that gobgpd's unix socket.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from porter_lab.processes import Daemon
from porter_lab.speakers import Gobgpd
from porter_lab.topology import Node


@dataclass
class Agent:
    """One `porter-lb agent --node NODE`, logging (text) to `workdir/agent-NODE.log`."""

    node: str
    gobgp_target: str  # e.g. unix:///tmp/.../gobgp.sock
    kubeconfig: Path
    workdir: Path
    namespace: str = "porter-lb-system"
    extra_args: tuple[str, ...] = ()
    daemon: Daemon | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.workdir / f"agent-{self.node}.log"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "porter_lb",
            "agent",
            "--node",
            self.node,
            "--gobgp",
            self.gobgp_target,
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            self.namespace,
            "--log-format",
            "text",
            *self.extra_args,
        ]

    def start(self) -> Agent:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.daemon = Daemon(f"agent-{self.node}", self.argv(), self.log).start()
        return self

    def check_running(self) -> bool:
        assert self.daemon is not None, f"agent for {self.node} was never started"
        return self.daemon.check_running()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: the agent stops its watches and exits, leaving gobgpd's routes in place."""
        if self.daemon is not None:
            self.daemon.stop(timeout)

    def kill(self) -> None:
        if self.daemon is not None:
            self.daemon.kill()


def start_node_speaker(
    node: Node,
    kubeconfig: Path,
    workdir: Path,
    *,
    agent_args: tuple[str, ...] = (),
    with_agent: bool = True,
) -> tuple[Gobgpd, Agent | None]:
    """A node's gobgpd (in its namespace, files under `workdir/gobgpd-NODE`) and, unless
    `with_agent` is False (a central speaker's), the `porter-lb agent` driving it."""
    speaker = Gobgpd(node.netns, workdir / f"gobgpd-{node.name}")
    speaker.start()
    if not with_agent:
        return speaker, None
    # The agent runs in the host's namespace: its host rules (and layer 2) must go to the
    # node's, never the host's.
    netns = () if "--netns" in agent_args else ("--netns", node.netns)
    agent = Agent(node.name, speaker.target, kubeconfig, workdir, extra_args=(*netns, *agent_args))
    return speaker, agent.start()
