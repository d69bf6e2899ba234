"""An inventory too large for etcd ends in Stalled=TooLarge with the remedy, not a silent loop,
and `spec.maxNodeRows` is the remedy. On a control plane whose etcd takes at most 128 KiB per
request (the real refusal, "etcdserver: request is too large"; etcd's default is 1.5 MiB)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gpu_inventory.testing.builders import make_node
from gpu_inventory.testing.controlplane import ControlPlane, running

pytestmark = pytest.mark.cluster

LIMIT = 128 * 1024


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """Overrides the session's control plane for this module: a small etcd request limit."""
    workdir = tmp_path_factory.mktemp("small-etcd")
    with running(workdir, etcd_args=(f"--max-request-bytes={LIMIT}",)) as plane:
        yield plane


def test_a_status_etcd_refuses_is_stalled_with_the_remedy(operator: Any, kube: Any) -> None:
    # 600 rows with long node names: about 190 KiB of status, well above the 128 KiB limit.
    names = [f"gpu-node-{index:04d}-" + "x" * 180 for index in range(600)]

    def create(name: str) -> None:
        body = make_node(name, gpus=8)
        body["metadata"]["labels"]["kubernetes.io/hostname"] = name[:13]  # labels: 63 at most
        kube.create_node(body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, names))

    def stalled(status: dict[str, Any]) -> None:
        assert kube.condition(status, "Stalled") == ("True", "TooLarge")
        message = next(c for c in status["conditions"] if c["type"] == "Stalled")["message"]
        assert "request is too large" in message
        assert "spec.maxNodeRows" in message

    kube.wait_for(stalled, timeout=120, what="Stalled=TooLarge")
    assert (
        operator.metric(
            "gpu_inventory_operator_status_writes_total", kind="GPUInventory", result="too_large"
        )
        >= 1
    )
    kube.custom.patch_cluster_custom_object(
        "gpuinventory.io", "v1alpha1", "gpuinventories", "cluster", {"spec": {"maxNodeRows": 50}}
    )

    def recovered(status: dict[str, Any]) -> None:
        assert kube.condition(status, "Stalled") == ("False", "NotStalled")
        assert kube.condition(status, "Ready") == ("True", "InventoryCurrent")
        # No agent runs here, so every node needs attention: the first 50 are listed.
        assert (status["summary"]["nodes"], len(status["nodes"])) == (600, 50)
        assert status["nodesOmitted"] == 550

    # The refusal is retried within its backoff (1 s, 2 s, 4 s ...): recovery within a minute.
    kube.wait_for(recovered, timeout=90, what="recovery with fewer rows")
