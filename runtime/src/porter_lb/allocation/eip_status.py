"""An Eip's status and Ready condition, and the Event a change of it deserves. Pure: the
controller (`porter_lb.allocation.controller`) writes what these return."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from porter_lb.allocation.holdings import Allocations, pool_status
from porter_lb.model.resources import Obj, Pool

__all__ = ["eip_spec_changed", "eip_status", "ready_event", "same_status"]


def eip_status(
    eip: Obj,
    pool: Pool | None,
    allocations: Allocations,
    problem: tuple[str, str],
    now: str,
) -> dict[str, Any]:
    """The status Eip `eip` must have: `pool_status` and a Ready condition when `pool` is
    usable; when it is None (the Eip could not be read, or lost a conflict), Ready False with
    `problem` (reason, message), no addresses used. Other conditions are kept; the Ready
    condition keeps its lastTransitionTime unless its status changes (then `now`)."""
    old = dict(eip.get("status") or {})
    generation = eip.get("metadata", {}).get("generation", 0)
    if pool is None:
        reason, message = problem
        status: dict[str, Any] = {
            k: v for k, v in old.items() if k not in ("conditions", "ready", "used", "usage")
        }
        status.update({"ready": False, "usage": 0, "used": {}})
        ready = ("False", reason, message)
    else:
        status = dict(pool_status(pool, allocations))
        if pool.disabled:
            ready = (
                "True",
                "Disabled",
                "gives out no new addresses (spec.disable); keeps the used ones",
            )
        elif status["occupied"]:
            ready = ("True", "Exhausted", f"all {status['poolSize']} addresses are in use")
        else:
            ready = (
                "True",
                "Ready",
                f"{status['usage']} of {status['poolSize']} addresses in use",
            )
    conditions = [c for c in old.get("conditions") or [] if c.get("type") != "Ready"]
    previous: dict[str, Any] = next(
        (c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    condition = {
        "type": "Ready",
        "status": ready[0],
        "reason": ready[1],
        "message": ready[2],
        "observedGeneration": generation,
        "lastTransitionTime": previous.get("lastTransitionTime", now)
        if previous.get("status") == ready[0]
        else now,
    }
    status["conditions"] = [condition, *conditions]
    return status


def ready_event(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event for an Eip whose status goes from `old` to `new`
    (`new` as `eip_status` makes it), or None when its Ready condition kept status and reason:
    a Warning when the pool becomes unusable or exhausted, a Normal one when it becomes ready."""
    before: dict[str, Any] = next(
        (c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    after = new["conditions"][0]
    if (before.get("status"), before.get("reason")) == (after["status"], after["reason"]):
        return None
    if after["status"] == "False":
        return ("Warning", f"Pool{after['reason']}", after["message"])
    if after["reason"] == "Exhausted":
        return ("Warning", "PoolExhausted", after["message"])
    if before.get("status") != "True":
        return ("Normal", "PoolReady", after["message"])
    return None


def eip_spec_changed(old: Obj, new: Obj) -> bool:
    """Whether an Eip changed in what allocation reads (spec, annotations, deletion)."""

    def relevant(obj: Obj) -> tuple[Any, ...]:
        metadata = obj.get("metadata", {})
        return (
            obj.get("spec"),
            metadata.get("annotations"),
            bool(metadata.get("deletionTimestamp")),
        )

    return relevant(old) != relevant(new)


def same_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether two Eip statuses are equal but for the conditions' lastTransitionTime."""

    def strip(status: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(status)
        result["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions") or []
        ]
        return result

    return strip(old) == strip(new)
