"""The operator against a real API server: the CR shows exactly what the scheduler counts, and
follows pods and nodes as they come and go."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.testing.builders import container, make_node, make_pod
from gpu_inventory.testing.inventorywatch import InventoryWatch, condition
from gpu_inventory.testing.wait import equals, eventually

pytestmark = pytest.mark.cluster

GPU = "nvidia.com/gpu"
MIG = "nvidia.com/mig-1g.10gb"
SHARED = "nvidia.com/gpu.shared"


def resources(status: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    return {
        r["name"]: (r["capacity"], r["allocatable"], r["allocated"], r["available"])
        for r in status["resources"]
    }


def rows(status: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {r["name"]: (r["allocatable"], r["allocated"]) for r in status["nodes"]}


@pytest.fixture
def gpu_overhead(k8s: client.ApiClient) -> Any:
    """A RuntimeClass whose pod overhead includes one MIG slice: the API server only accepts
    `spec.overhead` from a RuntimeClass (RuntimeClass admission), so that is how a test sets it."""
    node_api = client.NodeV1Api(k8s)
    node_api.create_runtime_class(
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": {"name": "gpu-overhead"},
            "handler": "runc",
            "overhead": {"podFixed": {MIG: "1", "cpu": "100m"}},
        }
    )
    yield "gpu-overhead"
    node_api.delete_runtime_class("gpu-overhead")


def test_allocated_equals_what_the_scheduler_counts(
    operator: Any, kube: Any, namespace: str, gpu_overhead: str
) -> None:
    kube.create_node(make_node("gpu-a", gpus=8, labels={"topology.kubernetes.io/zone": "z1"}))
    kube.create_node(make_node("mig-b", resources={MIG: "7"}, product="NVIDIA-A100-80GB"))
    kube.create_node(make_node("shared-c", resources={SHARED: "40"}, product="Tesla-T4-SHARED"))
    kube.create_node(make_node("cpu-d"))

    def pod(name: str, **kwargs: Any) -> None:
        kube.create_pod(make_pod(name, namespace=namespace, **kwargs))

    pod("plain", node="gpu-a", gpus=1)
    # sidecar (1) runs beside the main container (1); the regular init container (2) runs
    # beside the sidecar declared before it: max(1 + 1, 2 + 1) = 3 (KEP-753).
    pod(
        "sidecar",
        node="gpu-a",
        gpus=1,
        init_containers=[
            container("side", gpus=1, restart_policy="Always"),
            container("init", gpus=2),
        ],
    )
    overhead = make_pod("overhead", namespace=namespace, node="mig-b", resources={MIG: "2"})
    overhead["spec"]["runtimeClassName"] = gpu_overhead
    kube.create_pod(overhead)  # 2 requested + 1 overhead
    pod("shared", node="shared-c", resources={SHARED: "5"})
    pod("done", node="gpu-a", gpus=2)
    pod("failed", node="gpu-a", gpus=2)
    pod("unbound", gpus=4)
    kube.set_phase(namespace, "done", "Succeeded")
    kube.set_phase(namespace, "failed", "Failed")
    terminating = make_pod("terminating", namespace=namespace, node="gpu-a", gpus=1)
    terminating["metadata"]["finalizers"] = ["test.gpuinventory.io/hold"]
    kube.create_pod(terminating)
    kube.core.delete_namespaced_pod("terminating", namespace)  # stays, terminating, and counts

    def exact(status: dict[str, Any]) -> None:
        assert resources(status) == {
            GPU: (8, 8, 5, 3),
            SHARED: (40, 40, 5, 35),
            MIG: (7, 7, 3, 4),
        }
        assert rows(status) == {"gpu-a": (8, 5), "mig-b": (0, 0), "shared-c": (0, 0)}
        summary = status["summary"]
        assert (summary["nodes"], summary["readyNodes"], summary["gpus"]) == (3, 3, 8)
        assert (summary["allocatable"], summary["allocated"], summary["available"]) == (8, 5, 3)
        assert summary["products"] == ["NVIDIA-A100-80GB", "Tesla-T4", "Tesla-T4-SHARED"]
        assert kube.condition(status, "Ready") == ("True", "InventoryCurrent")
        assert kube.condition(status, "Reconciling") == ("False", "Reconciled")
        assert status["observedGeneration"] == 1

    kube.wait_for(exact, what="the scheduler's numbers")

    view = eventually(lambda: kube.view("gpu-a", allocated=5), timeout=20)
    assert view["gpuResources"] == [{"name": GPU, "capacity": 8, "allocatable": 8, "allocated": 5}]
    assert view["labels"]["topology.kubernetes.io/zone"] == "z1"
    assert "kubernetes.io/hostname" not in view["labels"]  # not a GPU-relevant label
    assert view["conditions"] == {"Ready": True}
    assert kube.gpunode_names() == {"gpu-a", "mig-b", "shared-c"}  # not the CPU node

    # Churn: the numbers follow.
    kube.core.patch_namespaced_pod(
        "terminating", namespace, {"metadata": {"finalizers": None}}
    )  # finally gone
    kube.set_phase(namespace, "plain", "Succeeded")
    pod("new", node="gpu-a", gpus=2)
    kube.core.delete_namespaced_pod("shared", namespace)

    def churned(status: dict[str, Any]) -> None:
        assert resources(status)[GPU] == (8, 8, 5, 3)  # -1 terminating, -1 plain, +2 new
        assert resources(status)[SHARED] == (40, 40, 0, 40)
        assert rows(status)["gpu-a"] == (8, 5)

    kube.wait_for(churned, what="numbers after pod churn")

    # A node that leaves takes its row and, through garbage collection, its GPUNode.
    kube.core.delete_node("shared-c")
    kube.wait_for(lambda s: _assert_rows(s, {"gpu-a", "mig-b"}), what="shared-c's row to go")
    eventually(
        lambda: equals(kube.gpunode_names(), {"gpu-a", "mig-b"}),
        timeout=90,
        what="the garbage collector to delete GPUNode shared-c",
    )
    # A node that arrives gets a row and a GPUNode.
    kube.create_node(make_node("gpu-e", gpus=4, ready=False))

    def arrived(status: dict[str, Any]) -> None:
        assert rows(status).get("gpu-e") == (4, 0)
        assert status["summary"]["readyNodes"] == 2
        assert kube.condition(status, "Degraded") == ("True", "NodesNotReady")

    kube.wait_for(arrived, what="gpu-e's row")
    eventually(lambda: kube.view("gpu-e", allocated=0), timeout=20)


def _assert_rows(status: dict[str, Any], names: set[str]) -> None:
    assert set(rows(status)) == names


def test_the_spec_decides_what_counts(operator: Any, kube: Any, namespace: str) -> None:
    kube.create_node(make_node("n1", gpus=2, resources={SHARED: "20"}))
    kube.create_pod(make_pod("p", namespace=namespace, node="n1", resources={SHARED: "3"}))
    kube.wait_for(lambda s: equals(s["summary"]["allocated"], 0))
    seen = InventoryWatch(kube.api)
    kube.custom.patch_cluster_custom_object(
        "gpuinventory.io",
        "v1alpha1",
        "gpuinventories",
        "cluster",
        {"spec": {"resourceNames": [SHARED], "primaryResource": SHARED}},
    )

    def switched(status: dict[str, Any]) -> None:
        assert status["observedGeneration"] == 2
        assert resources(status) == {SHARED: (20, 20, 3, 17)}
        assert status["summary"]["allocated"] == 3

    kube.wait_for(switched, what="the new spec to be honoured")
    statuses = seen.stop()
    # The change was announced before the numbers moved, and no condition ever carried
    # another generation than the status itself.
    announced = [
        s
        for s in statuses
        if s.get("observedGeneration") == 2 and condition(s, "Reconciling") == "True"
    ]
    assert announced, "Reconciling=True was never shown for the new spec"
    assert announced[0]["summary"]["allocated"] == 0  # the old numbers, said to be old
    for status in statuses:
        generations = {c.get("observedGeneration") for c in status.get("conditions", [])}
        assert generations <= {status.get("observedGeneration")}, status
    # Wider label prefixes: labels the operator never kept are read again (one LIST of nodes).
    kube.core.patch_node("n1", {"metadata": {"labels": {"team": "ml"}}})
    kube.custom.patch_cluster_custom_object(
        "gpuinventory.io",
        "v1alpha1",
        "gpuinventories",
        "cluster",
        {"spec": {"labelPrefixes": ["nvidia.com/gpu.product", "team"]}},
    )

    def relabelled() -> None:
        view = kube.view("n1", allocated=3)
        assert view["labels"] == {"nvidia.com/gpu.product": "Tesla-T4", "team": "ml"}

    eventually(relabelled, timeout=20, what="the GPUNode labels to follow the new prefixes")


def test_agent_fields_are_never_touched(operator: Any, kube: Any) -> None:
    """The operator owns status.kubernetes of a GPUNode and nothing else in it."""
    kube.create_node(make_node("n1", gpus=2))
    agent_status = {
        "agent": {"version": "1.0", "heartbeatTime": "2099-01-01T00:00:00Z", "nvmlAvailable": True},
        "summary": {"gpus": 2, "product": "Tesla-T4", "health": "Healthy", "unhealthy": 0},
        # The GPUNode's CEL rules: the summary counts the GPUs listed.
        "gpus": [{"uuid": f"GPU-{i}", "index": i, "health": {"status": "Healthy"}} for i in (0, 1)],
    }

    def agent_writes() -> None:
        try:  # on the GPUNode the operator created
            kube.custom.patch_cluster_custom_object_status(
                "gpuinventory.io", "v1alpha1", "gpunodes", "n1", {"status": agent_status}
            )
        except client.ApiException as error:
            raise AssertionError(f"GPUNode n1 not there yet: {error.status}") from error

    eventually(agent_writes, timeout=20, what="the operator to create GPUNode n1")
    # An agent whose clock says 2099 is not trusted: Invalid, and Degraded says so.
    status = kube.wait_for(
        lambda s: equals(s["nodes"][0]["agent"], "Invalid"), what="agent Invalid"
    )
    assert kube.condition(status, "Degraded") == ("True", "AgentsStale")
    view = eventually(lambda: kube.view("n1", allocated=0), timeout=20)
    assert view["agentState"] == "Invalid"
    after = kube.gpunode("n1")["status"]
    assert after["agent"] == agent_status["agent"]
    assert after["summary"] == agent_status["summary"]
