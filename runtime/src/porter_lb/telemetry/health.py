"""Health of a long-running porter-lb process, for the kubelet's probes: /healthz and /readyz.

Served beside /metrics on `--metrics-address` (porter_lb.telemetry.metrics.serve):

    GET /healthz   liveness: 200 while every loop of the process is alive; 500 naming the ones
                   that are not (a thread that died, a loop that has not come round for longer
                   than it may), and the kubelet restarts the container
    GET /readyz    readiness: 200 when every readiness check passes; 503 naming the failing ones

Each answer lists every check as `[+]name ok` or `[-]name: why` (the form kube-apiserver's
/readyz?verbose uses), so a `kubectl describe pod` or a curl shows what is wrong.

A check is a callable returning None when it passes, or a short reason. `Heartbeat` is the
liveness check of a loop: the loop calls `beat()` every time round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Check = Callable[[], str | None]
"""None: passes; a string: why it does not."""


@dataclass
class Heartbeat:
    """A loop's sign of life: `beat()` each time round; stale after `max_age` seconds.

    Before its first beat and once stopped (`stop()`) it passes: a loop that has not started
    (a standby's allocator) or ended on purpose (between leadership terms) is not a dead one."""

    name: str
    max_age: float
    _last: float = field(default_factory=time.monotonic)
    _running: bool = False

    def beat(self) -> None:
        self._last = time.monotonic()
        self._running = True

    def stop(self) -> None:
        self._running = False

    def check(self) -> str | None:
        if not self._running:
            return None
        age = time.monotonic() - self._last
        if age > self.max_age:
            return f"{self.name} has not come round for {age:.0f}s (at most {self.max_age:.0f}s)"
        return None


def thread_alive(thread: Callable[[], threading.Thread | None], what: str) -> Check:
    """A check failing once the thread (looked up at each call) has died."""

    def check() -> str | None:
        current = thread()
        if current is not None and not current.is_alive():
            return f"{what} thread has stopped"
        return None

    return check


class Health:
    """The liveness and readiness checks of one process, by name."""

    def __init__(self) -> None:
        self._live: dict[str, Check] = {}
        self._ready: dict[str, Check] = {}
        self._lock = threading.Lock()

    def liveness(self, name: str, check: Check) -> None:
        with self._lock:
            self._live[name] = check

    def readiness(self, name: str, check: Check) -> None:
        with self._lock:
            self._ready[name] = check

    def heartbeat(self, name: str, max_age: float) -> Heartbeat:
        beat = Heartbeat(name, max_age)
        self.liveness(name, beat.check)
        return beat

    def report(self, kind: str) -> tuple[bool, str]:
        """(every check passes, one line per check) for kind "healthz" or "readyz"."""
        with self._lock:
            checks = dict(self._live if kind == "healthz" else self._ready)
        ok, lines = True, []
        for name, check in sorted(checks.items()):
            try:
                problem = check()
            except Exception as error:  # noqa: BLE001 - a failing check is a failed check
                problem = f"check failed: {error}"
            if problem is None:
                lines.append(f"[+]{name} ok")
            else:
                ok = False
                lines.append(f"[-]{name}: {problem}")
        lines.append(f"{kind} {'ok' if ok else 'failed'}")
        return ok, "\n".join(lines) + "\n"


HEALTH = Health()
"""The process's checks (one process, one set, like metrics.REGISTRY)."""
