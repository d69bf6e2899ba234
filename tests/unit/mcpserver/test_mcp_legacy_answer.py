"""The answer users already parse: the older gateway tool's example, as a fixture.

Field names, JSON types and meanings are checked against `tests/fixtures/
get_gpu_inventory.target.json` (that tool's own example), so drift fails here.
"""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType
from typing import Any

from gpu_inventory.api import constants
from gpu_inventory.api.models import GPUInventory, GPUNode, NodeResource
from gpu_inventory.mcpserver import shapes, views
from gpu_inventory.mcpserver.snapshot import Snapshot
from gpu_inventory.testing import samples
from gpu_inventory.testing.legacy_shape import (
    assert_is_the_seed_answer,
    shape_problems,
    target,
    target_cluster,
)

NOW = samples.EPOCH + timedelta(minutes=1)


def snapshot_of(inventory: GPUInventory, nodes: list[GPUNode]) -> Snapshot:
    return Snapshot(
        inventory=inventory,
        nodes=MappingProxyType({n.metadata.name: n for n in nodes}),
        synced=True,
        connected=True,
    )


def inventory_json(snapshot: Snapshot, **args: Any) -> dict[str, Any]:
    answer = views.inventory_answer(snapshot, now=NOW, max_staleness_seconds=300, **args)
    return answer.model_dump(mode="json")


def test_the_example_cluster_gives_the_example_answer() -> None:
    data = inventory_json(snapshot_of(*target_cluster(samples.EPOCH)), node="ip-10-0-0-153")

    assert_is_the_seed_answer(data)


def test_every_page_of_a_mixed_cluster_keeps_the_legacy_types() -> None:
    """Nodes without an agent, without the GPU resource, and with sick GPUs still answer with
    the legacy types: capacity an integer, pod_name a string, conditions booleans."""
    nodes = [
        samples.gpunode("bare", gpus=0, agent=False, allocatable=0),
        samples.gpunode("no-resource", gpus=2).model_copy(deep=True),
        samples.gpunode(
            "sick", gpus=[samples.gpu(0, node="sick", health="Unhealthy", reasons=["XID 79"])]
        ),
    ]
    view = nodes[1].status.kubernetes  # type: ignore[union-attr]
    assert view is not None
    view.gpu_resources.clear()  # advertises no nvidia.com/gpu at all
    data = inventory_json(snapshot_of(samples.inventory(nodes), nodes))

    assert shape_problems(target(), data) == []
    by_name = {n["node_name"]: n for n in data["nodes"]}
    assert by_name["no-resource"]["kubernetes"]["gpu_resources"]["capacity"] == 0
    assert by_name["bare"]["pod_name"] == ""
    assert by_name["bare"]["kubernetes"]["gpu_resources"]["capacity"] == 0


def test_conditions_are_every_condition_on_the_node() -> None:
    """Node Problem Detector's conditions and GPU health conditions come through as booleans,
    next to the built-in ones (the operator copies every Node condition)."""
    conditions = {
        "MemoryPressure": False,
        "DiskPressure": False,
        "PIDPressure": False,
        "NetworkUnavailable": False,
        "KernelDeadlock": True,
        "ReadonlyFilesystem": False,
        "FrequentKubeletRestart": False,
        "GpuXidError": True,
    }
    node = samples.gpunode("npd", gpus=1, conditions=conditions)
    data = inventory_json(snapshot_of(samples.inventory([node]), [node]))

    assert data["nodes"][0]["kubernetes"]["conditions"] == {"Ready": True, **conditions}


def test_gpu_types_are_nvml_names_not_label_values() -> None:
    nodes = [
        samples.gpunode("t4", gpus=1, product="Tesla-T4", gpu_name="Tesla T4"),
        samples.gpunode(
            "h100",
            gpus=1,
            product="NVIDIA-H100-80GB-HBM3",
            gpu_name="NVIDIA H100 80GB HBM3",
        ),
        # No agent: only the label says what it has, and no agent names that product.
        samples.gpunode("l4", gpus=0, agent=False, product="NVIDIA-L4"),
        # No agent, but agents elsewhere name its product: the NVML name is listed once.
        samples.gpunode("t4-bare", gpus=0, agent=False, product="Tesla-T4"),
    ]
    summary = inventory_json(snapshot_of(samples.inventory(nodes), nodes))["cluster_summary"]

    assert summary["gpu_types"] == ["NVIDIA H100 80GB HBM3", "NVIDIA-L4", "Tesla T4"]


def test_capacity_is_the_node_capacity_not_allocatable() -> None:
    node = samples.gpunode(
        "t4",
        gpus=4,
        allocatable=3,
        extra_resources=[NodeResource(name="nvidia.com/mig-1g.10gb", capacity=7, allocatable=7)],
    )
    view = node.status.kubernetes  # type: ignore[union-attr]
    assert view is not None
    view.gpu_resources[0] = NodeResource(
        name=constants.PRIMARY_RESOURCE, capacity=4, allocatable=3, allocated=1
    )
    data = inventory_json(snapshot_of(samples.inventory([node]), [node]))

    assert data["nodes"][0]["kubernetes"]["gpu_resources"] == {
        "capacity": 4,
        "allocatable": 3,
        "allocated": 1,
        "available": 2,
    }


def test_gpu_types_follow_a_node_whose_gpus_change_between_calls() -> None:
    memo = views.AnswerMemo()
    before = [samples.gpunode("a", gpus=1, gpu_name="Tesla T4"), samples.gpunode("b", gpus=1)]
    after = [before[0], samples.gpunode("b", gpus=1, product="NVIDIA-L4", gpu_name="NVIDIA L4")]

    first = inventory_json(snapshot_of(samples.inventory(before), before), memo=memo)
    second = inventory_json(snapshot_of(samples.inventory(after), after), memo=memo)

    assert first["cluster_summary"]["gpu_types"] == ["Tesla T4"]
    assert second["cluster_summary"]["gpu_types"] == ["NVIDIA L4", "Tesla T4"]


def test_a_reading_nvml_does_not_support_is_null_and_the_schema_says_so() -> None:
    """The one documented departure from the legacy types: NVML reports no memory total,
    temperature or utilisation on some devices (and MIG-enabled GPUs), and a made-up number
    would be a lie; the legacy tool had no such case. Everything else keeps its type."""
    unsupported = samples.gpu(0, node="odd").model_copy(
        update={"memory_total": None, "temperature": None, "utilization_gpu": None}
    )
    node = samples.gpunode("odd", gpus=[unsupported])
    data = inventory_json(snapshot_of(samples.inventory([node]), [node]))

    gpu = data["nodes"][0]["gpus"][0]
    assert (gpu["memory_total"], gpu["temperature"], gpu["utilization"]) == (None, None, None)
    problems = shape_problems(target(), data)
    assert sorted(problems) == [
        f"$.nodes[0].gpus[0].{field}: null where the legacy answer has integer"
        for field in ("memory_total", "temperature", "utilization")
    ]
    schema = shapes.GPUOut.model_json_schema()["properties"]
    for field in ("memory_total", "temperature", "utilization"):
        assert {"type": "null"} in schema[field]["anyOf"]
        assert "null when NVML does not report it" in schema[field]["description"]
