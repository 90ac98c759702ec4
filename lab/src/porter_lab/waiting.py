"""Polling with a deadline: the only way the bed waits for anything."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Timeout(AssertionError):
    pass


class Fatal(RuntimeError):
    """Raised by a probe when waiting longer cannot help (a daemon died): ends the wait at once."""


def wait_for(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Call `probe` until it returns something truthy; return that, or raise Timeout naming `what`.

    Exceptions from the probe count as "not yet" (the last one is reported on timeout), except
    Fatal, which is raised at once.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last = result
        except Fatal:
            raise
        except Exception as error:  # noqa: BLE001 - reported below if it persists
            last = error
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
