"""Every answer says whether the operator confirmed the inventory recently (`api.freshness`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest

from gpu_inventory.api import constants
from gpu_inventory.mcpserver import views
from gpu_inventory.mcpserver.snapshot import Snapshot
from gpu_inventory.testing import samples

NOW = samples.EPOCH + timedelta(hours=1)
LIMIT = constants.STATUS_MAX_AGE_SECONDS

ANSWERS: dict[str, Callable[..., Any]] = {
    "inventory": views.inventory_answer,
    "health": views.health_answer,
    "capacity": lambda snapshot, **kw: views.capacity_answer(snapshot, count=1, **kw),
    "resource": views.inventory_resource,
}


def snapshot_synced(last_sync: datetime | None) -> Snapshot:
    nodes = [samples.gpunode("t4", gpus=2, heartbeat=NOW)]
    return Snapshot(
        inventory=samples.inventory(nodes, now=NOW, last_sync=last_sync),
        nodes=MappingProxyType({n.metadata.name: n for n in nodes}),
        synced=True,
        connected=True,
    )


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
def test_a_recent_status_is_current_without_a_warning(answer: Callable[..., Any]) -> None:
    result = answer(
        snapshot_synced(NOW - timedelta(seconds=LIMIT - 1)), now=NOW, max_staleness_seconds=300
    )

    assert (result.inventory_current, result.inventory_age_seconds) == (True, LIMIT - 1)
    assert result.warnings == []


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
def test_an_old_status_is_not_current_and_says_so(answer: Callable[..., Any]) -> None:
    result = answer(
        snapshot_synced(NOW - timedelta(seconds=LIMIT + 60)), now=NOW, max_staleness_seconds=300
    )

    assert (result.inventory_current, result.inventory_age_seconds) == (False, LIMIT + 60)
    assert result.warnings == [
        f"The inventory status was last confirmed by the operator {LIMIT + 60}s ago (more than "
        f"{LIMIT}s): the operator may be down, so the numbers may be out of date."
    ]


@pytest.mark.parametrize(
    ("last_sync", "fragment"),
    [
        (None, "does not say when the operator last confirmed it"),
        (NOW + timedelta(seconds=LIMIT + 1), "in the future: a clock is wrong"),
    ],
    ids=["never", "future"],
)
def test_an_unknown_or_future_sync_time_is_not_current(
    last_sync: datetime | None, fragment: str
) -> None:
    result = views.inventory_answer(snapshot_synced(last_sync), now=NOW, max_staleness_seconds=300)

    assert result.inventory_current is False
    assert fragment in result.warnings[0]
