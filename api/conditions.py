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
    current = find_condition(existing, verdict.type)
    since = now
    if current is not None and current.status == verdict.status:
        since = current.last_transition_time  # only a flip moves the transition time
    updated = Condition(
        type=verdict.type,
        status=verdict.status,
        reason=verdict.reason,
        message=verdict.message,
        observed_generation=generation,
        last_transition_time=since,
    )
    if current is None:
        return [*existing, updated]
    return [updated if c.type == verdict.type else c for c in existing]


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
