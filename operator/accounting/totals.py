"""Per-node and cluster totals of GPU resources: capacity, allocatable, allocated, available.

Pure: no I/O. Allocations come in as `(node name, {resource: count})` pairs, not pods, so a
second source (DRA ResourceClaims allocated by the `gpu.nvidia.com` driver) can be chained in
beside the pod requests without changing anything here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Final

_NONE: Final[Mapping[str, int]] = {}


@dataclasses.dataclass(frozen=True, slots=True)
class NodeResources:
    """What one GPU node advertises (Node `status.capacity` / `status.allocatable`), GPUs only."""

    capacity: Mapping[str, int]
    allocatable: Mapping[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceTotals:
    """Scheduler numbers for one resource name, on one node or summed over the cluster.

    `available` is floored at 0 per node before summing. A node can be over-allocated, e.g.
    when the device plugin lowers allocatable after a GPU fails while pods still hold it; its
    deficit frees nothing on other nodes, so letting it go negative in a cluster sum would hide
    GPUs that are really free elsewhere. Hence cluster `available` can exceed
    `allocatable - allocated`.
    """

    capacity: int = 0
    allocatable: int = 0
    allocated: int = 0
    available: int = 0


def allocated_by_node(
    allocations: Iterable[tuple[str, Mapping[str, int]]],
) -> dict[str, dict[str, int]]:
    """Sum allocations per node: node name -> resource name -> count.

    Feed it counted pods as `(nodeName, pod_requests(...))`; a DRA source is chained in the
    same shape.
    """
    by_node: dict[str, dict[str, int]] = {}
    for node, counts in allocations:
        if not counts:
            continue
        into = by_node.get(node)
        if into is None:
            into = by_node[node] = {}
        for name, count in counts.items():
            into[name] = into.get(name, 0) + count
    return by_node


def node_totals(node: NodeResources, allocated: Mapping[str, int]) -> dict[str, ResourceTotals]:
    """Totals per resource name for one node, sorted by name.

    A resource that is allocated but no longer advertised (device plugin restarting, GPUs
    removed) still gets a row, so its allocations stay visible.
    """
    names = node.capacity.keys() | node.allocatable.keys() | allocated.keys()
    totals: dict[str, ResourceTotals] = {}
    for name in sorted(names):
        allocatable = node.allocatable.get(name, 0)
        used = allocated.get(name, 0)
        totals[name] = ResourceTotals(
            capacity=node.capacity.get(name, 0),
            allocatable=allocatable,
            allocated=used,
            available=max(0, allocatable - used),
        )
    return totals


def cluster_totals(
    nodes: Mapping[str, NodeResources],
    allocated: Mapping[str, Mapping[str, int]],
) -> dict[str, ResourceTotals]:
    """Totals per resource name over the GPU nodes in `nodes`, sorted by name.

    Allocations on nodes missing from `nodes` are ignored: they are not GPU nodes (or not
    known yet), and counting them would report more allocated than the cluster has.
    """
    sums: dict[str, list[int]] = {}
    for node_name, node in nodes.items():
        for name, row in node_totals(node, allocated.get(node_name, _NONE)).items():
            acc = sums.get(name)
            if acc is None:
                acc = sums[name] = [0, 0, 0, 0]
            acc[0] += row.capacity
            acc[1] += row.allocatable
            acc[2] += row.allocated
            acc[3] += row.available
    return {name: ResourceTotals(*sums[name]) for name in sorted(sums)}
