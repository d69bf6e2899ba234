"""Bodies -> projections: what the operator keeps of each object, and how bad input is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gpu_inventory.operator import projections
from gpu_inventory.operator.projections import LabelFilter
from gpu_inventory.testing.builders import container, make_node, make_pod


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
            projections.PodProjection("n1", True, (("nvidia.com/gpu", 2),)),
        ),
        (
            "cpu and memory are not kept",
            make_pod("p", node="n1", resources={"cpu": "2", "memory": "1Gi"}),
            projections.PodProjection("n1", True, ()),
        ),
        (
            "MIG and shared resources are kept beside the GPU",
            make_pod(
                "p",
                node="n1",
                resources={"nvidia.com/mig-1g.10gb": "2", "nvidia.com/gpu.shared": "1"},
            ),
            projections.PodProjection(
                "n1", True, (("nvidia.com/gpu.shared", 1), ("nvidia.com/mig-1g.10gb", 2))
            ),
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
            projections.PodProjection("n1", True, (("nvidia.com/gpu", 2),)),
        ),
        (
            "a finished pod does not count",
            make_pod("p", node="n1", gpus=1, phase="Succeeded"),
            projections.PodProjection("n1", False, (("nvidia.com/gpu", 1),)),
        ),
        (
            "an unbound pod does not count",
            make_pod("p", gpus=1),
            projections.PodProjection("", False, (("nvidia.com/gpu", 1),)),
        ),
    ],
)
def test_pod_projection(case: str, pod: dict[str, Any], want: projections.PodProjection) -> None:
    assert projections.project_pod(pod) == want, case


def test_overhead_from_a_runtime_class_is_added() -> None:
    pod = make_pod("p", node="n1", gpus=1)
    pod["spec"]["overhead"] = {"nvidia.com/gpu": "1", "cpu": "100m"}
    assert projections.project_pod(pod).requests == (("nvidia.com/gpu", 2),)


@pytest.mark.parametrize(
    ("case", "value"),
    [("absurd count", "10000000"), ("not a number", "lots"), ("fraction of a GPU", "500m")],
)
def test_a_pod_with_an_unreadable_quantity_is_refused_with_its_name(case: str, value: str) -> None:
    pod = make_pod("bad", namespace="team-a", node="n1", resources={"nvidia.com/gpu": value})
    with pytest.raises(projections.ProjectionError, match=r"pod team-a/bad skipped") as raised:
        projections.project_pod(pod)
    assert "nvidia.com/gpu" in str(raised.value), case


def test_pod_key_is_the_uid_so_a_recreated_pod_never_collides() -> None:
    old = with_uid(make_pod("p", node="n1"), "uid-1")
    new = with_uid(make_pod("p", node="n1"), "uid-2")
    assert projections.pod_key(old) != projections.pod_key(new)


# --- nodes --------------------------------------------------------------------------------------


def test_node_projection_keeps_gpu_relevant_labels_conditions_and_extended_resources() -> None:
    body = with_uid(
        make_node(
            "n1",
            gpus=8,
            product="NVIDIA-H100-80GB-HBM3",
            resources={"nvidia.com/mig-1g.10gb": "7"},
            labels={"topology.kubernetes.io/zone": "z1", "team": "ml"},
        ),
        "uid-n1",
    )
    body["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    body["metadata"]["resourceVersion"] = "42"
    body["status"]["conditions"].append({"type": "DiskPressure", "status": "False"})
    body["status"]["conditions"].append({"type": "SomethingElse", "status": "True"})
    node = projections.project_node(body, LabelFilter())
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
        conditions=(("DiskPressure", False), ("Ready", True)),
        capacity=(("nvidia.com/gpu", 8), ("nvidia.com/mig-1g.10gb", 7)),
        allocatable=(("nvidia.com/gpu", 8), ("nvidia.com/mig-1g.10gb", 7)),
        product="NVIDIA-H100-80GB-HBM3",
        gpu_count=8,
        created=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_a_node_without_labels_or_status_is_valid_and_not_a_gpu_node() -> None:
    node = projections.project_node({"metadata": {"name": "bare", "uid": "u"}}, LabelFilter())
    assert (node.labels, node.conditions, node.capacity, node.product, node.gpu_count) == (
        (),
        (),
        (),
        "",
        None,
    )
    assert not node.ready
    assert not node.has_capacity(projections.EXTENDED_RESOURCES)


def test_a_gpu_count_label_that_is_not_a_number_is_ignored() -> None:
    node = projections.project_node(
        make_node("n1", gpus=1, labels={"nvidia.com/gpu.count": "eight"}), LabelFilter()
    )
    assert node.gpu_count is None


def test_a_node_with_an_absurd_capacity_is_refused_with_its_name() -> None:
    body = make_node("n1", resources={"nvidia.com/gpu": "1T"})
    with pytest.raises(projections.ProjectionError, match="node n1 skipped"):
        projections.project_node(body, LabelFilter())


def test_label_filters_know_when_they_only_narrow() -> None:
    wide = LabelFilter(("nvidia.com/", "topology.kubernetes.io/"))
    assert LabelFilter(("nvidia.com/gpu.",)).narrows(wide)
    assert not LabelFilter(("nvidia.com/", "team")).narrows(wide)


# --- GPUNodes -----------------------------------------------------------------------------------


def gpunode(status: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "n1", "uid": "g1"}}
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
