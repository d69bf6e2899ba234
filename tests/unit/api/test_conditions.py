"""Conditions move their transition time only when their status flips."""

from datetime import UTC, datetime, timedelta

import pytest

from gpu_inventory.api.conditions import Verdict, apply_verdicts, find_condition, set_condition
from gpu_inventory.api.models import Condition, ConditionStatus

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_a_new_condition_starts_its_transition_now() -> None:
    [ready] = set_condition([], Verdict("Ready", "True", "InventoryCurrent"), generation=3, now=T0)
    assert (ready.status, ready.reason, ready.observed_generation) == (
        "True",
        "InventoryCurrent",
        3,
    )
    assert ready.last_transition_time == T0


@pytest.mark.parametrize(
    ("new_status", "want_time"),
    [
        pytest.param("True", T0, id="same-status-keeps-time"),
        pytest.param("False", T1, id="flip-moves-time"),
    ],
)
def test_transition_time_moves_only_on_a_flip(
    new_status: ConditionStatus, want_time: datetime
) -> None:
    before = set_condition([], Verdict("Ready", "True", "InventoryCurrent"), generation=1, now=T0)
    after = set_condition(
        before,
        Verdict("Ready", new_status, "Indexing", "msg"),
        generation=2,
        now=T1,
    )
    [ready] = after
    assert ready.last_transition_time == want_time
    assert (ready.reason, ready.message, ready.observed_generation) == ("Indexing", "msg", 2)


def test_recomputing_an_unchanged_state_gives_an_equal_list() -> None:
    verdicts = [
        Verdict("Ready", "True", "InventoryCurrent"),
        Verdict("Degraded", "False", "AllHealthy"),
    ]
    first = apply_verdicts([], verdicts, generation=1, now=T0)
    again = apply_verdicts(first, verdicts, generation=1, now=T1)
    assert again == first


def test_other_conditions_keep_their_order() -> None:
    conditions = apply_verdicts(
        [],
        [Verdict(t, "False", "Reason") for t in ("Ready", "Degraded", "Stalled")],
        generation=1,
        now=T0,
    )
    updated = set_condition(
        conditions, Verdict("Degraded", "True", "UnhealthyGPUs"), generation=1, now=T1
    )
    assert [c.type for c in updated] == ["Ready", "Degraded", "Stalled"]
    degraded = find_condition(updated, "Degraded")
    assert isinstance(degraded, Condition)
    assert degraded.status == "True"
    assert find_condition(updated, "Reconciling") is None
