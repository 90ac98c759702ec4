"""Leader election on a real Lease: one leader, fast hand-over on release, takeover on expiry."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from kubernetes import client

from porter_lab.waiting import wait_for
from porter_lb.kube.api import KubeAPI
from porter_lb.kube.leader_election import LeaderElector


@dataclass
class Candidate:
    elector: LeaderElector
    events: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> Candidate:
        self.thread = threading.Thread(
            target=self.elector.run,
            args=(lambda: self.events.append("started"), lambda: self.events.append("stopped")),
            daemon=True,
        )
        self.thread.start()
        return self

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def candidates(api_client: client.ApiClient) -> Iterator[dict[str, Candidate]]:
    api = KubeAPI(api_client)
    lease = f"porter-lb-{uuid.uuid4().hex[:6]}"

    def candidate(identity: str) -> Candidate:
        return Candidate(
            LeaderElector(
                api,
                "default",
                lease,
                identity,
                lease_duration=2.0,
                renew_deadline=1.5,
                retry_period=0.1,
            )
        )

    made = {"a": candidate("controller-a"), "b": candidate("controller-b")}
    yield made
    for each in made.values():
        each.elector.stop()
        if each.thread is not None:
            each.join()


def test_one_leader_and_a_fast_hand_over_on_release(candidates: dict[str, Candidate]) -> None:
    a = candidates["a"].start()
    wait_for(a.elector.leading.is_set, 10, "a to lead")
    b = candidates["b"].start()
    wait_for(lambda: b.elector._observed[0] == "controller-a", 5, "b to see a's lease")
    assert not b.elector.leading.is_set()

    released = time.monotonic()
    a.elector.stop()
    a.join()
    assert a.events == ["started", "stopped"]
    wait_for(b.elector.leading.is_set, 5, "b to take over")
    # A released Lease is taken at b's next attempt, not after the lease duration.
    assert time.monotonic() - released < 1.0
    assert b.events == ["started"]


def test_standby_takes_over_when_the_leader_stops_renewing(
    candidates: dict[str, Candidate],
) -> None:
    a = candidates["a"]
    assert a.elector.try_acquire_or_renew()  # a leads, then falls silent (as if killed)
    b = candidates["b"].start()
    silent_since = time.monotonic()
    wait_for(b.elector.leading.is_set, 10, "b to take over the expired lease")
    waited = time.monotonic() - silent_since
    assert 2.0 <= waited < 3.5, waited
    assert not a.elector.try_acquire_or_renew()  # a's next attempt learns it lost


def test_leader_steps_down_when_it_cannot_renew(candidates: dict[str, Candidate]) -> None:
    a = candidates["a"].start()
    wait_for(a.elector.leading.is_set, 10, "a to lead")
    a.elector.api = KubeAPI(client.ApiClient(client.Configuration(host="https://127.0.0.1:9")))
    wait_for(lambda: a.events == ["started", "stopped"], 5, "a to step down")
    a.join()
