"""The Argo CD health check maps the GPUInventory conditions the way kstatus reads them."""

from __future__ import annotations

from typing import Any

import pytest
from lupa import lua51

from gpu_inventory.testing.binaries import REPO_ROOT

SCRIPT = (REPO_ROOT / "manifests" / "argocd" / "health.lua").read_text()


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the script as Argo CD does: a global `obj`, a returned table."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    to_lua = runtime.eval("function(v) obj = v end")

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return runtime.table_from({k: convert(v) for k, v in value.items()})
        if isinstance(value, list):
            return runtime.table_from([convert(v) for v in value])
        return value

    to_lua(convert(obj))
    result = runtime.execute(SCRIPT)
    return result["status"], result["message"]


def inventory(generation: int = 1, observed: int | None = 1, **conditions: str) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [
            {"type": kind, "status": value, "reason": f"{kind}Reason", "message": ""}
            for kind, value in conditions.items()
        ]
    }
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"name": "cluster", "generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("obj", "want"),
    [
        pytest.param(
            {"metadata": {"name": "cluster", "generation": 1}}, "Progressing", id="no-status"
        ),
        pytest.param(
            inventory(generation=2, observed=1, Ready="True"), "Progressing", id="old-generation"
        ),
        pytest.param(
            inventory(Ready="True", Degraded="False", Stalled="False", Reconciling="False"),
            "Healthy",
            id="ready",
        ),
        pytest.param(inventory(Ready="True", Degraded="True"), "Degraded", id="degraded"),
        pytest.param(inventory(Ready="False", Stalled="True"), "Degraded", id="stalled"),
        pytest.param(inventory(Ready="False", Reconciling="True"), "Progressing", id="reconciling"),
        pytest.param(inventory(Ready="False"), "Progressing", id="not-ready-yet"),
    ],
)
def test_conditions_map_to_argocd_health(obj: dict[str, Any], want: str) -> None:
    status, _ = health(obj)
    assert status == want


def test_the_message_names_the_reason() -> None:
    obj = inventory(Ready="True", Degraded="True")
    obj["status"]["conditions"][1]["message"] = "2 unhealthy GPUs on 1 node"
    assert health(obj) == ("Degraded", "DegradedReason: 2 unhealthy GPUs on 1 node")
