"""Conditions in the metav1.Condition shape, set the one way Kubernetes sets them.

Pure: no I/O. As in apimachinery's `meta.SetStatusCondition`, `lastTransitionTime` moves only
when a condition's status flips, so recomputing an unchanged state yields an equal list and the
writer sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from gpu_inventory.api.models import Condition, ConditionStatus


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a computation decided about one condition: (status, reason, message)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def set_condition(
    existing: Sequence[Condition], verdict: Verdict, *, generation: int | None, now: datetime
) -> list[Condition]:
    """Return `existing` with `verdict` applied; other conditions keep their order."""
    result: list[Condition] = []
    found = False
    for condition in existing:
        if condition.type != verdict.type:
            result.append(condition)
            continue
        found = True
        moved = condition.status != verdict.status
        result.append(
            Condition(
                type=verdict.type,
                status=verdict.status,
                reason=verdict.reason,
                message=verdict.message,
                observed_generation=generation,
                last_transition_time=now if moved else condition.last_transition_time,
            )
        )
    if not found:
        result.append(
            Condition(
                type=verdict.type,
                status=verdict.status,
                reason=verdict.reason,
                message=verdict.message,
                observed_generation=generation,
                last_transition_time=now,
            )
        )
    return result


def apply_verdicts(
    existing: Sequence[Condition],
    verdicts: Iterable[Verdict],
    *,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Apply several verdicts in order (see `set_condition`)."""
    conditions = list(existing)
    for verdict in verdicts:
        conditions = set_condition(conditions, verdict, generation=generation, now=now)
    return conditions


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of that type, or None (an absent condition means Unknown)."""
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.status == "True"
