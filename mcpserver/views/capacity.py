"""`find_gpu_capacity`: where a pod asking for N GPUs fits now.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

from gpu_inventory.api.models import Source
from gpu_inventory.mcpserver import shapes
from gpu_inventory.mcpserver.snapshot import Snapshot
from gpu_inventory.mcpserver.views import arguments
from gpu_inventory.mcpserver.views.availability import require_inventory
from gpu_inventory.mcpserver.views.nodes import GPUNodes, NodeFacts


def capacity_answer(
    snapshot: Snapshot,
    *,
    now: datetime,
    max_staleness_seconds: float,
    count: int,
    product: str | None = None,
    limit: int | None = None,
    text_budget: int = arguments.TEXT_BUDGET,
) -> shapes.CapacityAnswer:
    """Nodes where a pod asking for `count` units of the primary resource fits now, tightest first.

    A node qualifies when it is Ready, has at least `count` units free (allocatable minus what
    bound pods request) and its agent does not report every GPU unhealthy. Tightest fit first
    (least left over, then by name) is best-fit bin packing: placing small jobs in the smallest
    hole that takes them keeps whole free nodes for the big jobs that need them. The list holds
    `limit` nodes, or without a limit as many as fit in `text_budget` characters.

    Each node says how a pod asks for its GPUs. A DRA node takes a ResourceClaim; a pod asking
    for the extended resource lands there only where a DeviceClass maps that name (the
    DRAExtendedResource gate, alpha and off in 1.34; without it the API server drops
    `DeviceClass.spec.extendedResourceName`: k8s.io/api resource/v1 types.go), and the scheduler
    serves the name through DRA only on nodes whose allocatable has none of it
    (pkg/scheduler/framework/plugins/dynamicresources). The inventory does not record which
    classes map a name, so the headline counts device-plugin nodes for an extended-resource
    request and names the DRA nodes separately, as claim capacity.
    """
    arguments.check_range("count", count, 1, arguments.MAX_COUNT)
    arguments.check_limit(limit)
    product = arguments.check_text("product", product)
    trusted = require_inventory(snapshot, now=now, max_staleness_seconds=max_staleness_seconds)
    primary = trusted.inventory.spec.primary_resource
    nodes = GPUNodes.of(snapshot.nodes, trusted.inventory, trusted.status)
    names = nodes.names()
    if product is not None:
        names = arguments.filter_product(product, names, nodes)
    facts = [nodes.facts(n) for n in names]
    eligible = [f for f in facts if f.ready is True and not f.all_gpus_unhealthy]
    fits = sorted(
        (f for f in eligible if f.available >= count), key=lambda f: (f.available, f.name)
    )
    largest = max(eligible, key=lambda f: (f.available, f.name), default=None)
    largest_free = largest.available if largest else 0
    of_product = f" {product}" if product else ""
    if fits:
        message = _fit_message(fits, count, f"{primary}{of_product}")
    elif largest is not None and largest_free > 0:
        message = (
            f"No Ready node has {count} free {primary}{of_product}; the largest free block is "
            f"{largest_free} on {largest.name}."
        )
    else:
        message = f"No Ready node has any free {primary}{of_product}."
    answer = shapes.CapacityAnswer(
        count=count,
        product=product,
        primary_resource=primary,
        nodes=[],
        nodes_matched=len(fits),
        truncated=False,
        largest_free_block=largest_free,
        message=message,
        **trusted.freshness(),
    )
    rows = [
        shapes.CapacityNodeOut(
            node_name=f.name,
            product=f.product,
            available=f.available,
            allocatable=f.allocatable,
            allocated=f.allocated,
            leftover=f.available - count,
            gpu_count=f.gpu_count,
            unhealthy_gpus=f.unhealthy,
            source=f.source,
            request_as=_REQUEST_AS[f.source],
        )
        for f in fits
    ]
    return arguments.paged(answer, "nodes", rows, limit=limit, budget=text_budget)


_REQUEST_AS: Final[Mapping[Source, shapes.RequestForm]] = {
    "DevicePlugin": "ExtendedResource",
    "DRA": "ResourceClaim",
}


def _fit_message(fits: Sequence[NodeFacts], count: int, what: str) -> str:
    """Which nodes a pod asking for `count` units can reach, by how it asks."""
    plugin = [f for f in fits if f.source == "DevicePlugin"]
    claim = [f for f in fits if f.source != "DevicePlugin"]
    parts = []
    if plugin:
        parts.append(
            f"{len(plugin)} node(s) can take a pod asking for {count} {what} now "
            f"(resources.limits); the best fit is {plugin[0].name} ({plugin[0].available} free)"
        )
    if claim:
        parts.append(
            f"{len(claim)} DRA node(s) have {count} {what} free for a pod with a ResourceClaim"
            f" of the DRA driver's DeviceClass; the best fit is {claim[0].name}"
            f" ({claim[0].available} free)"
        )
    return "; ".join(parts) + "."
