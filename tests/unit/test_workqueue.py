"""The work queue: de-duplication per key, no concurrent runs of a key, backoff on failure."""

from __future__ import annotations

import threading

from porter_lb.kube.workqueue import WorkQueue


def test_a_key_added_twice_is_processed_once() -> None:
    queue = WorkQueue()
    for key in ["a", "b", "a", "a"]:
        queue.add(key)
    assert len(queue) == 2
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", None]


def test_a_key_added_while_processing_runs_again_after_done_not_concurrently() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")
    assert queue.get(0) is None  # not handed to a second worker while the first runs
    queue.done("a")
    assert queue.get(0) == "a"
    queue.done("a")
    assert queue.get(0) is None


def test_failures_back_off_exponentially_up_to_the_cap_and_forget_resets() -> None:
    queue = WorkQueue(base_delay=0.01, max_delay=0.04)
    delays = []
    for _ in range(4):
        queue.add("a")
        assert queue.get(1) == "a"
        delays.append(queue.add_after_failure("a"))
        queue.done("a")
        assert queue.get(1) == "a"  # comes back by itself after the delay
        queue.done("a")
    assert delays == [0.01, 0.02, 0.04, 0.04]
    queue.forget("a")
    assert queue.add_after_failure("a") == 0.01


def test_shutdown_wakes_a_waiting_worker() -> None:
    queue = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.shutdown()
    worker.join(timeout=5)
    assert not worker.is_alive() and got == [None]
