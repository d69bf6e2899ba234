"""Per-node and cluster GPU totals: sums, available floored per node, non-GPU nodes left out."""

from __future__ import annotations

import dataclasses

import pytest

from gpu_inventory.operator.accounting import (
    NodeResources,
    ResourceCounts,
    node_totals,
    sum_totals,
)

GPU = "nvidia.com/gpu"
MIG = "nvidia.com/mig-1g.10gb"


def node(capacity: int, allocatable: int | None = None, name: str = GPU) -> NodeResources:
    return NodeResources(
        capacity={name: capacity},
        allocatable={name: capacity if allocatable is None else allocatable},
    )


NODE_TOTALS = [
    ("idle", node(4), {}, {GPU: ResourceCounts(4, 4, 0, 4)}),
    ("partly-used", node(4), {GPU: 3}, {GPU: ResourceCounts(4, 4, 3, 1)}),
    ("full", node(4), {GPU: 4}, {GPU: ResourceCounts(4, 4, 4, 0)}),
    ("over-allocated-floors-at-zero", node(4, 2), {GPU: 3}, {GPU: ResourceCounts(4, 2, 3, 0)}),
    (
        "allocated-but-not-advertised-keeps-a-row",
        node(4),
        {MIG: 1},
        {GPU: ResourceCounts(4, 4, 0, 4), MIG: ResourceCounts(0, 0, 1, 0)},
    ),
]


@pytest.mark.parametrize(
    ("resources", "allocated", "expected"),
    [c[1:] for c in NODE_TOTALS],
    ids=[c[0] for c in NODE_TOTALS],
)
def test_node_totals(
    resources: NodeResources, allocated: dict[str, int], expected: dict[str, ResourceCounts]
) -> None:
    assert node_totals(resources, allocated) == expected


CLUSTER = [
    ("no-nodes", {}, {"n1": {GPU: 1}}, {}),
    ("one-idle-node", {"n1": node(8)}, {}, {GPU: ResourceCounts(8, 8, 0, 8)}),
    (
        "two-nodes-summed",
        {"n1": node(8), "n2": node(4, 3)},
        {"n1": {GPU: 5}, "n2": {GPU: 1}},
        {GPU: ResourceCounts(12, 11, 6, 5)},
    ),
    (
        # Summing raw differences would give 4 - 6 + 4 = 2; node n2's free GPUs are really 4.
        "available-floored-per-node-not-per-cluster",
        {"n1": node(4), "n2": node(4)},
        {"n1": {GPU: 6}, "n2": {}},
        {GPU: ResourceCounts(8, 8, 6, 4)},
    ),
    (
        "pods-on-non-gpu-nodes-ignored",
        {"n1": node(4)},
        {"n1": {GPU: 1}, "cpu-only": {GPU: 2}, "unknown": {MIG: 1}},
        {GPU: ResourceCounts(4, 4, 1, 3)},
    ),
    (
        "resource-names-kept-apart",
        {"n1": node(4), "n2": node(7, name=MIG)},
        {"n2": {MIG: 2}},
        {GPU: ResourceCounts(4, 4, 0, 4), MIG: ResourceCounts(7, 7, 2, 5)},
    ),
    (
        "allocatable-zero-while-device-plugin-restarts",
        {"n1": NodeResources(capacity={GPU: 4}, allocatable={GPU: 0})},
        {"n1": {GPU: 2}},
        {GPU: ResourceCounts(4, 0, 2, 0)},
    ),
]


@pytest.mark.parametrize(
    ("nodes", "allocated", "expected"), [c[1:] for c in CLUSTER], ids=[c[0] for c in CLUSTER]
)
def test_cluster_totals(
    nodes: dict[str, NodeResources],
    allocated: dict[str, dict[str, int]],
    expected: dict[str, ResourceCounts],
) -> None:
    per_node = (node_totals(r, allocated.get(name, {})) for name, r in nodes.items())
    assert sum_totals(per_node) == expected


def test_rows_come_sorted_by_resource_name() -> None:
    nodes = {"n1": NodeResources(capacity={MIG: 1, GPU: 1}, allocatable={MIG: 1, GPU: 1})}
    assert list(sum_totals([node_totals(nodes["n1"], {})])) == [GPU, MIG]


def test_value_objects_are_frozen() -> None:
    totals = ResourceCounts(1, 1, 0, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        totals.allocated = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        node(1).capacity = {}  # type: ignore[misc]
