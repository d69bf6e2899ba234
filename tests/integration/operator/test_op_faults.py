"""Bad input and faults against a real API server: none crashes the operator or corrupts a total."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

import pytest

from gpu_inventory.testing.builders import make_node, make_pod
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.wait import eventually, holds

pytestmark = pytest.mark.cluster

GPU = "nvidia.com/gpu"


def allocated(expected: int) -> Any:
    def check(status: dict[str, Any]) -> None:
        assert status["summary"]["allocated"] == expected
        assert status["summary"]["nodes"] >= 1

    return check


def test_a_pod_with_an_absurd_quantity_is_skipped_and_logged(
    operator: Any, kube: Any, namespace: str
) -> None:
    kube.create_node(make_node("n1", gpus=8))
    kube.create_pod(make_pod("ok", namespace=namespace, node="n1", gpus=2))
    # The API server accepts any whole number for an extended resource; ten million GPUs in
    # one container is a bug, and counting it would make every total meaningless.
    kube.create_pod(make_pod("absurd", namespace=namespace, node="n1", resources={GPU: "10000000"}))
    kube.wait_for(allocated(2), what="the absurd pod to be left out")
    eventually(
        lambda: holds(operator.metric("gpu_inventory_operator_objects", kind="skipped_pods") == 1),
        timeout=20,
    )
    assert f"pod {namespace}/absurd skipped" in operator.log()
    kube.create_pod(make_pod("after", namespace=namespace, node="n1", gpus=1))
    kube.wait_for(allocated(3), what="the operator to keep counting")
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


def test_numbers_recover_after_the_api_server_restarts_mid_watch(
    operator: Any, kube: Any, namespace: str, control_plane: ControlPlane
) -> None:
    kube.create_node(make_node("n1", gpus=8))
    for name in ("a", "b", "gone"):
        kube.create_pod(make_pod(name, namespace=namespace, node="n1", gpus=1))
    kube.wait_for(allocated(3))
    # The operator misses a deletion: it is frozen while the API server restarts (cutting its
    # watches), the pod goes and etcd compacts its history, so nobody can replay the DELETED
    # event: the resumed watch gets "410 Gone" and kopf re-lists. Only the sweep notices.
    operator.pause()
    try:
        control_plane.restart_apiserver()  # the frozen operator's watches are cut
        kube.core.delete_namespaced_pod("gone", namespace, grace_period_seconds=0)
        _compact_etcd(control_plane)
    finally:
        operator.resume()
    kube.wait_for(allocated(2), timeout=60, what="the missed deletion to be noticed")
    assert "after a relist of pods, dropped 1 gone" in operator.log()
    kube.create_pod(make_pod("c", namespace=namespace, node="n1", gpus=4))
    kube.wait_for(allocated(6), timeout=30, what="watching to resume")
    assert operator.alive()


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


def _compact_etcd(plane: ControlPlane) -> None:
    """Compact etcd's history up to now (what the API server does every 5 minutes)."""
    base = plane.components["etcd"].health_url.removesuffix("/health")

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    revision = int(post("/v3/kv/range", {"key": "YQ=="})["header"]["revision"])
    post("/v3/kv/compaction", {"revision": revision, "physical": True})
