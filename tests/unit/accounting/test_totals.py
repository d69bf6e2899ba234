"""Per-node and cluster GPU totals: sums, available floored per node, non-GPU nodes left out."""

from __future__ import annotations

import dataclasses

import pytest

from gpu_inventory.operator.accounting import (
    NodeResources,
    ResourceCounts,
    node_totals,
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


def test_rows_come_sorted_by_resource_name() -> None:
    resources = NodeResources(capacity={MIG: 1, GPU: 1}, allocatable={MIG: 1, GPU: 1})
    assert list(node_totals(resources, {})) == [GPU, MIG]


def test_value_objects_are_frozen() -> None:
    totals = ResourceCounts(1, 1, 0, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        totals.allocated = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        node(1).capacity = {}  # type: ignore[misc]
