"""Every driver recovery action and XID action maps to a recommendation: none can crash."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType
from typing import get_args

import pytest

from gpu_inventory.api.models import RecoveryAction, XidAction
from gpu_inventory.mcpserver import shapes, views
from gpu_inventory.mcpserver.snapshot import Snapshot
from gpu_inventory.mcpserver.views import health
from gpu_inventory.testing import samples

NOW = samples.EPOCH + timedelta(minutes=1)


def test_every_recovery_action_of_the_api_is_mapped() -> None:
    assert set(health.DRIVER_ACTIONS) == set(get_args(RecoveryAction))
    assert set(health.XID_ACTIONS) == set(get_args(XidAction))
    assert set(health.ACTION_RANK) == set(get_args(shapes.RecommendedAction))


@pytest.mark.parametrize("action", get_args(RecoveryAction))
def test_get_gpu_health_answers_for_every_recovery_action(action: RecoveryAction) -> None:
    gpu = samples.gpu(0, node="n", health="Unhealthy", recovery_action=action)
    nodes = [samples.gpunode("n", gpus=[gpu])]
    snapshot = Snapshot(
        inventory=samples.inventory(nodes),
        nodes=MappingProxyType({"n": nodes[0]}),
        synced=True,
        connected=True,
    )

    result = views.health_answer(snapshot, now=NOW, max_staleness_seconds=300)

    assert result.gpus[0].driver_recovery_action == action
    expected = health.DRIVER_ACTIONS[action]
    assert result.gpus[0].recommended_action == ("Investigate" if expected == "None" else expected)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("BusReset", "ResetGPU"),
        ("SystemReboot", "RebootNode"),
        ("RecoverImexDomain", "RecoverIMEXDomain"),
    ],
)
def test_the_newer_recovery_actions(action: RecoveryAction, expected: str) -> None:
    assert views.recommend(samples.gpu(0, recovery_action=action)) == (
        expected,
        f"driver recovery action {action}",
    )
