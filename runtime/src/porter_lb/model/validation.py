"""Rules that span several Eips: no shared addresses, one default pool per IP family.

Rules about one object alone live in the CRD schemas (OpenAPI and CEL), where the API server
enforces them with no webhook at all. What no single object can know lives here, pure: the
validating webhook (`porter_lb.webhook.admission`) calls `check_admission` to refuse a change
that would break a rule, and the controller calls `pool_conflicts` at every reconcile to mark the
Eips that lose a conflict not ready. The webhook is an early, friendly "no"; the controller is the
guarantee, because the webhook may be absent (failurePolicy Ignore) or race a concurrent
create. See docs/validation.md.

`effective_pools` applies the same rule for everyone who acts on Eips: which Eips own their
addresses. The controller gives addresses out of those only, and the speakers, layer 2 and
the audit announce and check those only, so an Eip that loses a conflict is out everywhere.

Who wins a conflict is decided by age alone, so that it never flips while objects come and go:
an Eip loses when an *older* Eip (creationTimestamp, then name) holds an address it holds, or,
when both are default pools, is of its family. Losers still count: an Eip overlapping only a
loser loses too. Hence creating an Eip never demotes an existing one (the new Eip is the
youngest), and deleting one can only promote others.

Not taking part: Eips being deleted (metadata.deletionTimestamp set) and Eips that are invalid
on their own (`porter_lb.model.resources.pool_from_eip` refuses them; the controller reports that).

Default pools are counted per IP family, not globally as in OpenELB: the allocator
(`porter_lb.allocation.allocator`) looks for a default pool of each family a Service needs, so a
dual-stack cluster needs one IPv4 and one IPv6 default. A disabled default pool still counts:
it stays the default, giving nothing, until its annotation is removed.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from porter_lb.model.resources import (
    DEFAULT_POOL_ANNOTATIONS,
    ModelError,
    Obj,
    Pool,
    being_deleted,
    object_name,
    pool_from_eip,
)

__all__ = [
    "ConflictKind",
    "EffectivePools",
    "PoolConflict",
    "check_admission",
    "effective_pools",
    "find_pool_conflicts",
    "pool_conflicts",
]

ConflictKind = Literal["overlap", "default"]

_YOUNGEST = datetime.datetime.max.replace(tzinfo=datetime.UTC)


@dataclass(frozen=True)
class _Eip:
    """An Eip taking part in the cross-object rules: its pool and its place in the age order."""

    pool: Pool
    address: str
    default_annotation: str
    age_key: tuple[datetime.datetime, str]

    @property
    def name(self) -> str:
        return self.pool.name


@dataclass(frozen=True)
class PoolConflict:
    """`eip` loses to the older `winner`: they share addresses, or are both default pools.

    `field` and `value` are the loser's field that breaks the rule (`spec.address`, or the
    default-pool annotation); `message` is what the loser's status or Event should say.
    """

    kind: ConflictKind
    eip: str
    winner: str
    field: str
    value: str
    rule: str

    @property
    def message(self) -> str:
        return f"Eip '{self.eip}': {self.field} '{self.value}': {self.rule}"


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _created(obj: Mapping[str, Any]) -> datetime.datetime:
    """creationTimestamp; an object without one (not created yet) is the youngest."""
    text = _metadata(obj).get("creationTimestamp")
    if not isinstance(text, str) or not text:
        return _YOUNGEST
    try:
        created = datetime.datetime.fromisoformat(text)
    except ValueError:
        return _YOUNGEST
    return created if created.tzinfo else created.replace(tzinfo=datetime.UTC)


def _participant(obj: Mapping[str, Any]) -> _Eip | None:
    if being_deleted(obj):
        return None
    try:
        return _eip(obj, pool_from_eip(obj))
    except ModelError:
        return None


def _eip(obj: Mapping[str, Any], pool: Pool) -> _Eip:
    annotations = _metadata(obj).get("annotations")
    annotations = annotations if isinstance(annotations, Mapping) else {}
    default_annotation = next(
        (
            a
            for a in DEFAULT_POOL_ANNOTATIONS
            if str(annotations.get(a, "")).strip().lower() == "true"
        ),
        DEFAULT_POOL_ANNOTATIONS[0],
    )
    spec = obj.get("spec")
    address = str(spec.get("address", "")) if isinstance(spec, Mapping) else ""
    return _Eip(pool, address, default_annotation, (_created(obj), pool.name))


def _overlap(a: Pool, b: Pool) -> bool:
    return (
        a.version == b.version
        and int(a.addresses.first) <= int(b.addresses.last)
        and int(b.addresses.first) <= int(a.addresses.last)
    )


def _overlap_rule(winner: _Eip) -> str:
    return (
        f"overlaps Eip '{winner.name}' (spec.address '{winner.address}'), which is older: "
        "Eips must not share addresses"
    )


def _default_rule(winner: _Eip) -> str:
    return (
        f"Eip '{winner.name}' is already the default IPv{winner.pool.version} pool and is "
        "older: at most one Eip per IP family may be the default"
    )


def _conflicts(participants: Iterable[_Eip]) -> list[tuple[PoolConflict, _Eip, _Eip]]:
    """Every conflict as (conflict, loser, winner), losers in age order, oldest winner first."""
    ordered = sorted(participants, key=lambda e: e.age_key)
    found: list[tuple[PoolConflict, _Eip, _Eip]] = []
    for index, eip in enumerate(ordered):
        older = ordered[:index]
        winner = next((o for o in older if _overlap(o.pool, eip.pool)), None)
        if winner is not None:
            conflict = PoolConflict(
                "overlap", eip.name, winner.name, "spec.address", eip.address, _overlap_rule(winner)
            )
            found.append((conflict, eip, winner))
        if eip.pool.is_default:
            winner = next(
                (o for o in older if o.pool.is_default and o.pool.version == eip.pool.version),
                None,
            )
            if winner is not None:
                conflict = PoolConflict(
                    "default",
                    eip.name,
                    winner.name,
                    f"metadata.annotations[{eip.default_annotation}]",
                    "true",
                    _default_rule(winner),
                )
                found.append((conflict, eip, winner))
    return found


def find_pool_conflicts(eips: Sequence[Mapping[str, Any]]) -> list[PoolConflict]:
    """Every conflict among `eips` (Eip objects as the API serves them), losers in age order.

    An Eip may appear twice: once for an overlap, once as a second default pool.
    """
    participants = [p for p in map(_participant, eips) if p is not None]
    return [conflict for conflict, _, _ in _conflicts(participants)]


def pool_conflicts(eips: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """For each Eip that loses a conflict, why: one line per rule broken, joined by '; '.

    The controller marks these Eips not ready and gives out no address of theirs; Eips absent
    from the result break no cross-object rule.
    """
    messages: dict[str, list[str]] = {}
    for conflict in find_pool_conflicts(eips):
        messages.setdefault(conflict.eip, []).append(conflict.message)
    return {name: "; ".join(lines) for name, lines in messages.items()}


@dataclass(frozen=True)
class EffectivePools:
    """Which Eips own their addresses, and why the others own none."""

    pools: dict[str, Pool]  # Eip name -> its pool, for the Eips that own their addresses
    # Eip name -> (reason, message): InvalidSpec (unreadable on its own) or Conflict (lost)
    problems: dict[str, tuple[str, str]]
    # the Eips `pool_from_eip` refused, with why: for the callers' Warning Events
    invalid: list[tuple[Obj, ModelError]] = field(default_factory=list)


def effective_pools(eips: Iterable[Obj]) -> EffectivePools:
    """The one rule for which Eip owns an address, for the controller, the speakers, layer 2
    and the audit. An Eip being deleted owns nothing (and is not a problem); an Eip that
    `pool_from_eip` refuses owns nothing (InvalidSpec); an Eip that loses a conflict
    (`pool_conflicts`: an older Eip shares an address, or is the older default of its family)
    owns nothing, its whole range (Conflict). Every other Eip owns its pool, disabled or not:
    a disabled pool gives out no new address, but those it gave out stay announced."""
    live = [e for e in eips if not being_deleted(e)]
    pools: dict[str, Pool] = {}
    problems: dict[str, tuple[str, str]] = {}
    invalid: list[tuple[Obj, ModelError]] = []
    for eip in live:
        try:
            pool = pool_from_eip(eip)
        except ModelError as error:
            problems[object_name(eip)] = ("InvalidSpec", str(error))
            invalid.append((eip, error))
            continue
        pools[pool.name] = pool
    valid = [e for e in live if object_name(e) in pools]
    for name, message in pool_conflicts(valid).items():
        problems[name] = ("Conflict", message)
        del pools[name]
    return EffectivePools(pools, problems, invalid)


def _admission_message(name: str, conflict: PoolConflict, loser: _Eip, winner: _Eip) -> str:
    """Explain a conflict to whoever is changing Eip `name` (the loser, or the winner)."""
    if conflict.eip == name:
        if conflict.kind == "overlap":
            return (
                f"Eip '{name}': spec.address '{loser.address}': overlaps Eip '{winner.name}' "
                f"(spec.address '{winner.address}'): Eips must not share addresses"
            )
        return (
            f"Eip '{name}': {conflict.field} 'true': Eip '{winner.name}' is already the default "
            f"IPv{winner.pool.version} pool: at most one Eip per IP family may be the default; "
            f"remove the annotation from '{winner.name}' first"
        )
    # The change makes an existing Eip lose: `name` is (or became) the older one.
    if conflict.kind == "overlap":
        return (
            f"Eip '{name}': spec.address '{winner.address}': overlaps Eip '{loser.name}' "
            f"(spec.address '{loser.address}'): Eips must not share addresses"
        )
    return (
        f"Eip '{name}': metadata.annotations[{winner.default_annotation}] 'true': Eip "
        f"'{loser.name}' is already the default IPv{loser.pool.version} pool: at most one Eip "
        f"per IP family may be the default; remove the annotation from '{loser.name}' first"
    )


def check_admission(obj: Mapping[str, Any], existing: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the API server should refuse to store `obj`, or None to let it through.

    `obj` is the Eip being created or updated; `existing` the Eips stored now (on an update,
    including the old version of `obj`, matched by name). A change is refused when it is
    invalid on its own or when it makes some Eip lose a conflict it did not lose before, so
    an Eip that already loses (created while the webhook was away) can still be edited, and
    an Eip being deleted is never held up: nobody is trapped by the webhook.
    """
    name = object_name(obj)
    if being_deleted(obj):
        return None
    try:
        admitted = _eip(obj, pool_from_eip(obj))
    except ModelError as error:
        return str(error)
    before = {(c.eip, c.kind, c.winner) for c in find_pool_conflicts(existing)}
    others = [p for e in existing if object_name(e) != name and (p := _participant(e)) is not None]
    for conflict, loser, winner in _conflicts([*others, admitted]):
        if (conflict.eip, conflict.kind, conflict.winner) in before:
            continue
        if name in (conflict.eip, conflict.winner):
            return _admission_message(name, conflict, loser, winner)
    return None
