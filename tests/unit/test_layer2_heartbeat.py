"""Heartbeat expiry as tables: each observer judges by when IT saw a Lease change."""

from __future__ import annotations

from porter_lb.layer2.heartbeat import (
    HEARTBEAT_LABEL,
    UNAVAILABLE_ANNOTATION,
    Beat,
    alive_nodes,
    beat_from_lease,
    lease_name,
)


def beat(node: str, renew: str = "t", unavailable: frozenset[str] = frozenset()) -> Beat:
    return Beat(node, renew, unavailable)


def test_alive_until_timeout_after_first_seen() -> None:
    seen = {
        "n1": (beat("n1"), 10.0),
        "n2": (beat("n2", unavailable=frozenset({"l2"})), 10.5),
        "n3": (beat(""), 10.9),  # released: dead at once
    }
    assert alive_nodes(seen, 10.74, 0.75) == {"n1": frozenset(), "n2": frozenset({"l2"})}
    assert alive_nodes(seen, 10.75, 0.75) == {"n2": frozenset({"l2"})}
    assert alive_nodes(seen, 11.25, 0.75) == {}


def test_beat_from_lease() -> None:
    lease = {
        "metadata": {
            "name": lease_name("node1"),
            "labels": {HEARTBEAT_LABEL: "true"},
            "annotations": {UNAVAILABLE_ANNOTATION: "b,a"},
        },
        "spec": {"holderIdentity": "node1", "renewTime": "2026-01-01T00:00:00.000001Z"},
    }
    assert beat_from_lease(lease) == Beat(
        "node1", "2026-01-01T00:00:00.000001Z", frozenset({"a", "b"})
    )
    assert beat_from_lease({}) == Beat("", "", frozenset())
