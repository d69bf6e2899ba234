"""Bad input and faults against a real API server: none crashes the operator or corrupts a total."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from gpu_inventory.testing.builders import make_gpunode, make_node, make_pod
from gpu_inventory.testing.wait import holds

pytestmark = pytest.mark.cluster

GPU = "nvidia.com/gpu"


def allocated(expected: int) -> Any:
    def check(status: dict[str, Any]) -> None:
        assert status["summary"]["allocated"] == expected
        assert status["summary"]["nodes"] >= 1

    return check


def test_a_malformed_gpu_quantity_skips_that_resource_and_the_status_says_so(
    operator: Any, kube: Any, namespace: str
) -> None:
    kube.create_node(make_node("n1", gpus=8, resources={"nvidia.com/mig-1g.10gb": "7"}))
    kube.create_pod(make_pod("ok", namespace=namespace, node="n1", gpus=2))
    # The API server accepts any whole number for an extended resource; ten million GPUs in
    # one container is a bug, and counting it would make every total meaningless. Its other
    # GPU resource still counts.
    absurd = make_pod(
        "absurd",
        namespace=namespace,
        node="n1",
        resources={GPU: "10000000", "nvidia.com/mig-1g.10gb": "1", "sgx.intel.com/epc": "1Mi"},
    )
    kube.create_pod(absurd)

    def reported(status: dict[str, Any]) -> None:
        allocated(2)(status)
        assert status["skipped"] == {"pods": 1, "nodes": 0}
        mig = next(r for r in status["resources"] if r["name"] == "nvidia.com/mig-1g.10gb")
        assert mig["allocated"] == 1
        assert kube.condition(status, "Degraded") == ("True", "MalformedObjects")
        message = next(c for c in status["conditions"] if c["type"] == "Degraded")["message"]
        assert f"pod {namespace}/absurd" in message

    kube.wait_for(reported, what="the absurd GPU to be left out and reported")
    assert f"pod {namespace}/absurd: container 'main', resource nvidia.com/gpu" in operator.log()
    kube.core.delete_namespaced_pod("absurd", namespace, grace_period_seconds=0)
    kube.wait_for(
        lambda s: holds(s["skipped"]["pods"] == 0 and kube.condition(s, "Degraded")[0] == "False"),
        what="the report to clear",
    )
    assert operator.alive()


def test_nodes_without_labels_or_status(operator: Any, kube: Any) -> None:
    kube.core.create_node({"metadata": {"name": "bare"}})
    unlabelled = {"metadata": {"name": "unlabelled"}}
    kube.core.create_node(unlabelled)
    kube.core.patch_node_status(
        "unlabelled", {"status": {"capacity": {GPU: "2"}, "allocatable": {GPU: "2"}}}
    )

    def check(status: dict[str, Any]) -> None:
        assert [(r["name"], r["product"], r["ready"], r["gpus"]) for r in status["nodes"]] == [
            ("unlabelled", "Unknown", False, 0)
        ]
        assert status["summary"]["allocatable"] == 2

    kube.wait_for(check, what="a row for the unlabelled GPU node only")
    assert operator.alive()


def test_the_inventory_deleted_by_hand_is_recreated(
    operator: Any, kube: Any, namespace: str
) -> None:
    kube.create_node(make_node("n1", gpus=4))
    kube.create_pod(make_pod("p", namespace=namespace, node="n1", gpus=3))
    kube.wait_for(allocated(3))
    old_uid = kube.inventory()["metadata"]["uid"]
    kube.custom.delete_cluster_custom_object(
        "gpuinventory.io", "v1alpha1", "gpuinventories", "cluster"
    )

    def recreated(status: dict[str, Any]) -> None:
        assert kube.inventory()["metadata"]["uid"] != old_uid
        allocated(3)(status)
        assert kube.condition(status, "Ready") == ("True", "InventoryCurrent")

    kube.wait_for(recreated, what="GPUInventory/cluster to come back with its numbers")


def test_concurrent_edits_of_the_inventory_conflict_and_converge(
    operator: Any, kube: Any, namespace: str
) -> None:
    """Someone keeps editing the CR (GitOps, a human) while pods churn: the operator's
    conditional writes meet 409s, re-read and converge on the right numbers."""
    kube.create_node(make_node("n1", gpus=64))
    kube.wait_for(allocated(0))
    stop = threading.Event()

    def edit() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            label = {"metadata": {"labels": {"edited": str(count)}}}
            kube.quietly(
                lambda label=label: kube.custom.patch_cluster_custom_object(
                    "gpuinventory.io", "v1alpha1", "gpuinventories", "cluster", label
                )
            )
            time.sleep(0.01)

    editor = threading.Thread(target=edit, daemon=True)
    editor.start()
    try:
        for index in range(30):
            kube.create_pod(make_pod(f"p{index}", namespace=namespace, node="n1", gpus=1))
            time.sleep(0.05)
    finally:
        stop.set()
        editor.join(timeout=10)
    kube.wait_for(allocated(30), timeout=30, what="convergence after concurrent edits")
    conflicts = operator.metric(
        "gpu_inventory_operator_status_writes_total", kind="GPUInventory", result="conflict"
    )
    assert conflicts > 0, "the edits never raced a write; the test proved nothing"


def test_an_agent_claiming_more_gpus_than_its_node_is_not_believed(
    operator: Any, kube: Any
) -> None:
    """The bug: a schema-valid GPUNode status claiming 100,000 GPUs with a fresh heartbeat took
    the cluster's GPU count from 392 to 100,384 with Ready=True. The schema now bounds what a
    GPUNode can list (32 GPUs, counts that agree with the list); the operator cross-checks
    the rest against what the Node advertises and flags the node."""
    kube.create_node(make_node("n1", gpus=1))
    kube.create_node(make_node("n2", gpus=8))
    heartbeat = datetime.now(UTC).isoformat()
    hostile = make_gpunode("n1", gpus=32, unhealthy=32, heartbeat=heartbeat)
    honest = make_gpunode("n2", gpus=8, heartbeat=heartbeat)
    for body in (hostile, honest):
        write_agent_status(kube, body)

    def flagged(status: dict[str, Any]) -> None:
        assert status["summary"]["gpus"] == 9  # 1 (n1's GFD count) + 8, never 40
        assert status["summary"]["unhealthyGPUs"] == 0
        rows = {r["name"]: r for r in status["nodes"]}
        assert (rows["n1"]["agent"], rows["n1"]["gpus"]) == ("Invalid", 1)
        assert rows["n2"]["agent"] == "Reporting"
        assert kube.condition(status, "Degraded") == ("True", "AgentsStale")

    kube.wait_for(flagged, timeout=30, what="the hostile count to be refused and flagged")


def write_agent_status(kube: Any, body: dict[str, Any]) -> None:
    """Create the GPUNode (unless the operator did) and write its status as an agent would."""
    name = body["metadata"]["name"]
    kube.quietly(
        lambda: kube.custom.create_cluster_custom_object(
            "gpuinventory.io", "v1alpha1", "gpunodes", {**body, "metadata": {"name": name}}
        )
    )
    kube.custom.patch_cluster_custom_object_status(
        "gpuinventory.io", "v1alpha1", "gpunodes", name, {"status": body["status"]}
    )
