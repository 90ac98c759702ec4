"""A work queue of keys: each key queued once, processed by one worker at a time, retried
with per-key exponential backoff (client-go's rate-limited queue, in small).

Adding a key that is already waiting does nothing; adding a key that is being processed marks
it to run again once the current run is done, so a change that arrives mid-reconcile is never
lost and two workers never reconcile the same key at once.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class WorkQueue:
    base_delay: float = 0.05
    max_delay: float = 60.0
    _queue: deque[str] = field(default_factory=deque)
    _queued: set[str] = field(default_factory=set)
    _processing: set[str] = field(default_factory=set)
    _dirty: set[str] = field(default_factory=set)
    _failures: dict[str, int] = field(default_factory=dict)
    _delayed: list[tuple[float, str]] = field(default_factory=list)
    _shutdown: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, key: str) -> None:
        with self._cond:
            self._enqueue(key)

    def _enqueue(self, key: str) -> None:
        """Queue `key` once; if a worker holds it, run it again after done(). Caller locks."""
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.append(key)
            self._cond.notify()

    def add_after_failure(self, key: str) -> float:
        """Requeue `key` after a backoff that doubles with each consecutive failure."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            delay = min(self.base_delay * (2**failures), self.max_delay)
            heapq.heappush(self._delayed, (time.monotonic() + delay, key))
            self._cond.notify()
            return float(delay)

    def forget(self, key: str) -> None:
        """The key succeeded: its next failure starts the backoff afresh."""
        with self._cond:
            self._failures.pop(key, None)

    def get(self, timeout: float | None = None) -> str | None:
        """The next key to process, or None on shutdown or timeout. Call done(key) after."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                self._promote_delayed()
                if self._shutdown:
                    return None
                if self._queue:
                    key = self._queue.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                waits = [deadline - time.monotonic()] if deadline is not None else []
                if self._delayed:
                    waits.append(self._delayed[0][0] - time.monotonic())
                if deadline is not None and waits[0] <= 0:
                    return None
                self._cond.wait(max(0.0, min(waits)) if waits else None)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._enqueue(key)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def _promote_delayed(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, key = heapq.heappop(self._delayed)
            self._enqueue(key)
