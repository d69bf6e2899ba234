"""On a cluster that does not serve resource.k8s.io/v1 (older than 1.34, or switched off, as
here with `--runtime-config`), the operator runs as before: one log line says DRA is not
counted, nothing waits for DRA's kinds, and nothing is logged as an error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gpu_inventory.testing import controlplane
from gpu_inventory.testing.builders import make_node, make_pod
from gpu_inventory.testing.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """Overrides the session's control plane for this module: no resource.k8s.io/v1. (Without
    the gate off too, the API server's node authorizer waits forever for ResourceSlices.)"""
    off = (
        "--runtime-config=resource.k8s.io/v1=false",
        "--feature-gates=DynamicResourceAllocation=false",
    )
    with controlplane.with_crds(tmp_path_factory.mktemp("no-dra"), apiserver_args=off) as plane:
        yield plane


def test_without_dra_the_inventory_is_current_and_says_why_once(
    operator: Any, kube: Any, namespace: str
) -> None:
    kube.create_node(make_node("dp-a", gpus=2))
    kube.create_pod(make_pod("job", namespace=namespace, node="dp-a", gpus=1))

    def current(status: dict[str, Any]) -> None:
        assert kube.condition(status, "Ready") == ("True", "InventoryCurrent")
        assert [(r["name"], r["source"]) for r in status["resources"]] == [
            ("nvidia.com/gpu", "DevicePlugin")
        ]
        assert status["summary"]["allocated"] == 1

    kube.wait_for(current, timeout=30, what="a current inventory without DRA")
    log = operator.log()
    assert log.count("is not served here") == 1, log
    assert "[ERROR" not in log, log
    assert "[WARNING" not in log, log
