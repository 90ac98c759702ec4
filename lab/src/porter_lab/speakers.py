"""gobgpd processes in a node's network namespace, driven over gRPC on a unix socket, and the
central speaker (`porter_lb.routing.central.run_central`) in a thread of the calling process."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from porter_lab.gobgp import gobgpd_binary
from porter_lab.processes import Daemon
from porter_lb.kube.api import KubeAPI
from porter_lb.kube.informers import Informers
from porter_lb.routing import central
from porter_lb.routing.gobgp import GoBGP
from porter_lb.routing.speaker import SPEAKER_KINDS


@dataclass
class Gobgpd:
    """One gobgpd, the release tools/gobgp pins (built by scripts/setup.sh). Its gRPC API
    listens only on a unix socket (never on :50051 of every address), which the test process
    reaches from outside the namespace.

    Supervised as kubelet supervises the gobgpd container: when the process exits on its own
    (a speaker asks it to, to change its BGP instance: GoBGP 4 runs one per process), a fresh
    one starts at once on the same socket. `stop` and `kill` (a crash the caller stages) are
    not followed by a restart; `start` again after them."""

    netns: str
    workdir: Path
    daemon: Daemon | None = None
    client: GoBGP | None = None
    restarts: int = 0  # by the supervisor, not by start()
    _wanted: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def socket(self) -> Path:
        return self.workdir / "gobgp.sock"

    @property
    def target(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> GoBGP:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._wanted = True
            daemon = self._launch()
        self.client = GoBGP(self.target)
        try:
            self.client.wait_ready(10)
        except Exception:
            daemon.check_running()
            raise
        return self.client

    def _launch(self) -> Daemon:
        self.socket.unlink(missing_ok=True)  # as the container's command does
        daemon = Daemon(
            "gobgpd",
            [
                str(gobgpd_binary()),
                "--api-hosts",
                self.target,
                "--pprof-disable",
                # No metrics listener either (GoBGP 4 opens one on localhost:6060 by default).
                "--metrics-path=",
                "--log-plain",
                "--log-level",
                "info",
            ],
            self.workdir / "gobgpd.log",
            netns=self.netns,
        ).start()
        self.daemon = daemon
        threading.Thread(target=self._supervise, args=(daemon,), daemon=True).start()
        return daemon

    def _supervise(self, daemon: Daemon) -> None:
        assert daemon.process is not None
        daemon.process.wait()
        with self._lock:
            if self._wanted and self.daemon is daemon:
                self.restarts += 1
                self._launch()

    def stop(self) -> None:
        with self._lock:
            self._wanted = False
        if self.client is not None:
            self.client.close()
        if self.daemon is not None:
            self.daemon.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash would; not restarted until `start`."""
        with self._lock:
            self._wanted = False
        if self.daemon is not None:
            self.daemon.kill()


class CentralSpeaker:
    """`central.run_central` in a daemon thread of this process, feeding the gobgpd at `target`,
    with informers of its own (SPEAKER_KINDS, Secrets of `namespace`). Restartable: `start`
    after `stop` runs a fresh thread with fresh informers."""

    def __init__(
        self, api: KubeAPI, target: str, identity: str, namespace: str = "porter-lb-system"
    ) -> None:
        self.api, self.target, self.identity, self.namespace = api, target, identity, namespace
        self.stop_event = threading.Event()
        self.informers: Informers | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> CentralSpeaker:
        self.stop_event = threading.Event()
        self.informers = Informers(self.api, SPEAKER_KINDS, secret_namespace=self.namespace)
        self.thread = threading.Thread(
            target=central.run_central,
            kwargs={
                "api": self.api,
                "informers": self.informers,
                "gobgp_target": self.target,
                "stop": self.stop_event,
                "identity": self.identity,
                "namespace": self.namespace,
            },
            daemon=True,
        )
        self.thread.start()  # subscribes while the informers start: it must cope
        self.informers.start()
        return self

    def stop(self) -> None:
        """Ask the speaker to stop, wait up to 10 s for its thread, stop its informers. Whether
        the thread ended is `running()`'s to say; callers assert it where it matters."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(10)
        if self.informers is not None:
            self.informers.stop()

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()
