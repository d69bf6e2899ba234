"""Bodies -> projections: what the operator keeps of each object under the spec, and how bad
input is kept out of the totals without losing the rest of the object."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gpu_inventory.api.models import GPUInventorySpec
from gpu_inventory.operator import accounting, projections
from gpu_inventory.operator.projections import DEFAULT_PROJECTOR, PodProjection, Projector
from gpu_inventory.testing import shapes
from gpu_inventory.testing.builders import container, make_node, make_pod

GPUS = DEFAULT_PROJECTOR.matcher


def with_uid(body: dict[str, Any], uid: str) -> dict[str, Any]:
    body["metadata"]["uid"] = uid
    return body


# --- pods ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "pod", "want"),
    [
        (
            "one container asking for 2 GPUs",
            make_pod("p", node="n1", gpus=2),
            PodProjection("n1", (("nvidia.com/gpu", 2),)),
        ),
        (
            "MIG and shared resources are kept beside the GPU",
            make_pod(
                "p",
                node="n1",
                resources={"nvidia.com/mig-1g.10gb": "2", "nvidia.com/gpu.shared": "1"},
            ),
            PodProjection("n1", (("nvidia.com/gpu.shared", 1), ("nvidia.com/mig-1g.10gb", 2))),
        ),
        (
            "a sidecar adds to the main container, a regular init container does not",
            make_pod(
                "p",
                node="n1",
                gpus=1,
                init_containers=[
                    container("init", gpus=1),
                    container("side", gpus=1, restart_policy="Always"),
                ],
            ),
            PodProjection("n1", (("nvidia.com/gpu", 2),)),
        ),
    ],
)
def test_pod_projection(case: str, pod: dict[str, Any], want: PodProjection) -> None:
    assert projections.project_pod(pod, GPUS) == want, case


@pytest.mark.parametrize(
    ("case", "pod"),
    [
        ("cpu and memory only", make_pod("p", node="n1", resources={"cpu": "2", "memory": "1Gi"})),
        ("finished", make_pod("p", node="n1", gpus=1, phase="Succeeded")),
        ("unbound", make_pod("p", gpus=1)),
        ("another vendor's resource", make_pod("p", node="n1", resources={"amd.com/gpu": "2"})),
    ],
)
def test_pods_that_hold_no_gpu_are_not_kept(case: str, pod: dict[str, Any]) -> None:
    assert projections.project_pod(pod, GPUS) is None, case


def test_overhead_from_a_runtime_class_is_added() -> None:
    pod = make_pod("p", node="n1", gpus=1)
    pod["spec"]["overhead"] = {"nvidia.com/gpu": "1", "cpu": "100m"}
    got = projections.project_pod(pod, GPUS)
    assert got is not None
    assert got.requests == (("nvidia.com/gpu", 2),)


@pytest.mark.parametrize(
    ("case", "value"),
    [("absurd count", "10000000"), ("not a number", "lots"), ("fraction of a GPU", "500m")],
)
def test_an_unreadable_gpu_quantity_is_left_out_and_named(case: str, value: str) -> None:
    pod = make_pod(
        "bad",
        namespace="team-a",
        node="n1",
        containers=[
            container("main", resources={"nvidia.com/gpu": value}),
            container("other", resources={"nvidia.com/mig-1g.10gb": "1"}),
        ],
    )
    got = projections.project_pod(pod, GPUS)
    assert got is not None, case
    assert got.requests == (("nvidia.com/mig-1g.10gb", 1),)  # the readable GPU still counts
    (why,) = got.malformed
    assert why.startswith("pod team-a/bad: container 'main', resource nvidia.com/gpu:"), why


@pytest.mark.parametrize("value", ["1Mi", "98566144", "1e12"])
def test_resources_the_spec_does_not_select_are_never_read(value: str) -> None:
    """The bug: `sgx.intel.com/epc: 1Mi` made the pod's GPU go uncounted ("absurd")."""
    pod = make_pod("p", node="n1", resources={"nvidia.com/gpu": "1", "sgx.intel.com/epc": value})
    assert projections.project_pod(pod, GPUS) == PodProjection("n1", (("nvidia.com/gpu", 1),))


def test_what_the_spec_selects_decides_what_a_pod_holds() -> None:
    pod = make_pod("p", node="n1", resources={"amd.com/gpu": "2", "nvidia.com/gpu": "1"})
    amd = Projector.for_spec(GPUInventorySpec(resource_names=["amd.com/gpu"]))
    assert projections.project_pod(pod, amd.matcher) == PodProjection("n1", (("amd.com/gpu", 2),))


def test_pod_key_is_the_uid_so_a_recreated_pod_never_collides() -> None:
    old = with_uid(make_pod("p", node="n1"), "uid-1")
    new = with_uid(make_pod("p", node="n1"), "uid-2")
    assert projections.pod_key(old) != projections.pod_key(new)


# --- real-world shapes (also checked against `kubectl describe node` on the control plane) ------


@pytest.mark.parametrize("shape", shapes.shapes(), ids=lambda s: s.name)
def test_real_world_shapes(shape: shapes.Shape) -> None:
    node = projections.project_node(shape.node, DEFAULT_PROJECTOR)
    assert node.malformed == ()
    assert node.has_gpus == shape.gpu_node, shape.why
    held: dict[str, int] = {}
    for body in shape.pods:
        pod = projections.project_pod(body, GPUS)
        for name, count in pod.requests if pod is not None else ():
            held[name] = held.get(name, 0) + count
    assert held == dict(shape.want), shape.why


# --- nodes --------------------------------------------------------------------------------------


def test_node_projection_keeps_gpu_labels_every_condition_and_selected_resources() -> None:
    body = with_uid(
        make_node(
            "n1",
            gpus=8,
            product="NVIDIA-H100-80GB-HBM3",
            resources={"nvidia.com/mig-1g.10gb": "7", "sgx.intel.com/epc": "98566144"},
            labels={"topology.kubernetes.io/zone": "z1", "team": "ml"},
        ),
        "uid-n1",
    )
    body["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    body["metadata"]["resourceVersion"] = "42"
    body["status"]["conditions"] += [
        {"type": "DiskPressure", "status": "False"},
        {"type": "KernelDeadlock", "status": "False"},  # Node Problem Detector
        {"type": "GpuXidError", "status": "True"},  # a GPU health tool
    ]
    node = projections.project_node(body, DEFAULT_PROJECTOR)
    assert node == projections.NodeProjection(
        name="n1",
        uid="uid-n1",
        resource_version="42",
        labels=(
            ("kubernetes.io/os", "linux"),
            ("nvidia.com/gpu.count", "8"),
            ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
            ("topology.kubernetes.io/zone", "z1"),
        ),
        conditions=(
            ("DiskPressure", False),
            ("Ready", True),
            ("GpuXidError", True),
            ("KernelDeadlock", False),
        ),
        capacity=(("nvidia.com/gpu", 8), ("nvidia.com/mig-1g.10gb", 7)),
        allocatable=(("nvidia.com/gpu", 8), ("nvidia.com/mig-1g.10gb", 7)),
        product="NVIDIA-H100-80GB-HBM3",
        gpu_count=8,
        created=datetime(2026, 1, 1, tzinfo=UTC),
        device_units=15,
    )


def test_a_node_with_hundreds_of_conditions_keeps_a_bounded_number_built_ins_first() -> None:
    body = make_node("n1", gpus=1)
    body["status"]["conditions"] += [
        {"type": f"Custom{i:03d}", "status": "True"} for i in range(200)
    ]
    conditions = projections.project_node(body, DEFAULT_PROJECTOR).conditions
    assert len(conditions) == 32
    assert conditions[0] == ("Ready", True)


def test_a_node_without_labels_or_status_is_valid_and_not_a_gpu_node() -> None:
    node = projections.project_node({"metadata": {"name": "bare", "uid": "u"}}, DEFAULT_PROJECTOR)
    assert (node.labels, node.conditions, node.capacity, node.product, node.gpu_count) == (
        (),
        (),
        (),
        "",
        None,
    )
    assert not node.ready
    assert not node.has_gpus


def test_a_gpu_count_label_that_is_not_a_number_is_ignored() -> None:
    node = projections.project_node(
        make_node("n1", gpus=1, labels={"nvidia.com/gpu.count": "eight"}), DEFAULT_PROJECTOR
    )
    assert node.gpu_count is None


def test_a_node_with_an_absurd_gpu_capacity_keeps_its_other_resources() -> None:
    """The bug: such a node vanished with its 8 GPUs."""
    body = make_node("n1", gpus=8, resources={"nvidia.com/mig-1g.10gb": "1T"})
    node = projections.project_node(body, DEFAULT_PROJECTOR)
    assert node.capacity == (("nvidia.com/gpu", 8),)
    assert len(node.malformed) == 1
    assert node.malformed[0].startswith("node n1: status.capacity, resource nvidia.com/mig-1g")
    assert node.has_gpus


def test_a_node_whose_only_gpu_resource_is_unreadable_is_still_a_gpu_node() -> None:
    node = projections.project_node(
        make_node("n1", resources={"nvidia.com/gpu": "x"}), DEFAULT_PROJECTOR
    )
    assert node.capacity == ()
    assert node.has_gpus
    assert node.malformed


# --- GPUNodes -----------------------------------------------------------------------------------


def gpunode(status: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "n1", "uid": "g1", "resourceVersion": "5"}}
    if status is not None:
        body["status"] = status
    return body


def test_gpunode_with_agent_summary() -> None:
    got = projections.project_gpunode(
        gpunode(
            {
                "agent": {
                    "heartbeatTime": "2026-01-01T00:00:00Z",
                    "nvmlAvailable": True,
                    "podName": "agent-x",
                },
                "summary": {"gpus": 8, "product": "H100", "unhealthy": 1},
                "kubernetes": {"allocated": 2, "agentState": "Reporting"},
            }
        )
    )
    assert got == projections.GPUNodeProjection(
        name="n1",
        uid="g1",
        resource_version="5",
        agent=projections.AgentReport(
            heartbeat=datetime(2026, 1, 1, tzinfo=UTC),
            nvml_available=True,
            pod_name="agent-x",
            gpus=8,
            unhealthy=1,
            product="H100",
        ),
        agent_error="",
        kubernetes={
            "labels": {},
            "conditions": {},
            "gpuResources": [],
            "allocated": 2,
            "agentState": "Reporting",
        },
    )


def test_gpunode_without_summary_counts_gpus_and_unhealthy_ones() -> None:
    got = projections.project_gpunode(
        gpunode(
            {
                "agent": {"heartbeatTime": "2026-01-01T00:00:00Z", "nvmlAvailable": True},
                "gpus": [
                    {"uuid": "GPU-a", "index": 0, "name": "Tesla T4"},
                    {"uuid": "GPU-b", "index": 1, "health": {"status": "Unhealthy"}},
                ],
            }
        )
    )
    assert got.agent is not None
    assert (got.agent.gpus, got.agent.unhealthy, got.agent.product) == (2, 1, "Tesla T4")


def test_gpunode_created_by_the_operator_has_no_agent_data_yet() -> None:
    got = projections.project_gpunode(gpunode(None))
    assert (got.agent, got.agent_error, got.kubernetes) == (None, "", None)


def test_a_broken_agent_report_is_ignored_with_the_reason_and_our_view_kept() -> None:
    got = projections.project_gpunode(
        gpunode(
            {
                "agent": {"heartbeatTime": "yesterday", "nvmlAvailable": "maybe"},
                "gpus": [{"uuid": "GPU-a", "index": -1}],
                "kubernetes": {"allocated": 1},
            }
        )
    )
    assert got.agent is None
    assert "heartbeatTime" in got.agent_error
    assert got.kubernetes is not None
    assert got.kubernetes["allocated"] == 1


# --- the GPUInventory ---------------------------------------------------------------------------


def test_inventory_projection_reads_spec_generation_and_status() -> None:
    got = projections.project_inventory(
        {
            "metadata": {"name": "cluster", "uid": "i1", "generation": 3, "resourceVersion": "9"},
            "spec": {"primaryResource": "nvidia.com/gpu.shared"},
            "status": {"summary": {"nodes": 2}},
        }
    )
    assert (got.generation, got.resource_version, got.spec.primary_resource) == (
        3,
        "9",
        "nvidia.com/gpu.shared",
    )
    assert got.status_wire is not None
    assert got.status_wire["summary"]["nodes"] == 2
    assert got.spec_error == ""


def test_a_spec_that_would_count_everything_is_refused_and_defaults_used() -> None:
    got = projections.project_inventory(
        {"metadata": {"name": "cluster"}, "spec": {"resourceNames": ["*"]}}
    )
    assert got.spec.resource_names == [
        "nvidia.com/gpu",
        "nvidia.com/gpu.shared",
        "nvidia.com/mig-*",
    ]
    assert "spec refused" in got.spec_error
    assert Projector.for_spec(got.spec).matcher == accounting.ResourceMatcher(
        got.spec.resource_names
    )
