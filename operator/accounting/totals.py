"""Per-node totals of GPU resources: capacity, allocatable, allocated, available.

Pure: no I/O. Allocations come in as per-node sums (`{resource: count}`), not pods, so a
second source (DRA ResourceClaims allocated by the `gpu.nvidia.com` driver) can be added to
the pod requests without changing anything here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True, slots=True)
class NodeResources:
    """What one GPU node advertises (Node `status.capacity` / `status.allocatable`), GPUs only."""

    capacity: Mapping[str, int]
    allocatable: Mapping[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceCounts:
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


def node_totals(node: NodeResources, allocated: Mapping[str, int]) -> dict[str, ResourceCounts]:
    """Totals per resource name for one node, sorted by name.

    A resource that is allocated but no longer advertised (device plugin restarting, GPUs
    removed) still gets a row, so its allocations stay visible.
    """
    names = node.capacity.keys() | node.allocatable.keys() | allocated.keys()
    totals: dict[str, ResourceCounts] = {}
    for name in sorted(names):
        allocatable = node.allocatable.get(name, 0)
        used = allocated.get(name, 0)
        totals[name] = ResourceCounts(
            capacity=node.capacity.get(name, 0),
            allocatable=allocatable,
            allocated=used,
            available=max(0, allocatable - used),
        )
    return totals
