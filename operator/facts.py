"""One GPU node's facts: what its row, its GPUNode view and the cluster totals are made of.

A node's GPUs come from its device plugin (Node `status.allocatable`, pods' requests), from
DRA (`dra.accounting.NodeCounts`: ResourceSlices and ResourceClaims), or from both, and a
node's `source` says DRA as soon as a GPU driver publishes devices on it. Both kinds can share
a node: the 1.34 scheduler serves an extended resource through DRA only on nodes whose
allocatable has none of it (kubernetes pkg/scheduler/framework/plugins/dynamicresources,
extendeddynamicresources.go), but a pod's own ResourceClaim takes DRA devices on any node. So
each source keeps its own counts (`by_source`, one (name, source) row each in the totals), and
the node's physical GPUs are both sources' together. Where they add up to more than GPU
Feature Discovery's `nvidia.com/gpu.count`, the same GPUs are advertised twice (the device
plugin and the DRA driver both managing them) and the node is flagged.

Pure: no I/O; `now` is passed in. A node's facts change only when its Node, its GPUNode or the
pods bound to it change, or when time alone moves its agent's state (a heartbeat going stale,
the moment `expires` says). `aggregates.FactsCache` keeps them and recomputes only those.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from gpu_inventory.api import constants, freshness
from gpu_inventory.api.models import AgentState, GPUInventorySpec, Source
from gpu_inventory.operator import accounting
from gpu_inventory.operator.dra.accounting import NodeCounts
from gpu_inventory.operator.projections import GPUNodeProjection, Malformed, NodeProjection

UNKNOWN_PRODUCT: Final = "Unknown"
"""Product of a GPU node with neither the `nvidia.com/gpu.product` label nor an agent report."""

_NONE: Final = accounting.ResourceCounts()
_USABLE_AGENT: Final = frozenset({"Reporting", "Stale", "NVMLUnavailable"})


@dataclasses.dataclass(frozen=True, slots=True)
class NodeFacts:
    """Everything the status and the GPUNode view say about one GPU node."""

    name: str
    product: str
    ready: bool
    resources: Mapping[str, accounting.ResourceCounts]
    """Per GPU resource name (sorted): capacity, allocatable, allocated, available."""
    primary: accounting.ResourceCounts
    """The counts of `spec.primaryResource` (zeros when the node has none)."""
    gpus: int
    """Physical GPUs: the agent's count when usable and plausible, else `listed_gpus`."""
    unhealthy: int
    agent: AgentState
    agent_problem: bool
    """Counts in `staleAgents` (stale, invalid, or missing past the grace period)."""
    agent_note: str
    """Why the agent's report was not believed (empty when it was)."""
    malformed: Malformed
    expires: datetime | None
    """When time alone would change these facts (an agent turning stale); None: never."""
    source: Source = "DevicePlugin"
    by_source: tuple[tuple[Source, Mapping[str, accounting.ResourceCounts]], ...] = ()
    """Each source's own counts per resource name; `resources` adds them up."""
    advertised_twice: str = ""
    """Why the node's GPUs look advertised by both sources (empty when they do not)."""

    @property
    def over_allocated(self) -> bool:
        return self.primary.allocated > self.primary.allocatable

    @property
    def needs_attention(self) -> bool:
        """Shown in the inventory's rows even on a cluster too large to list every node."""
        return (
            not self.ready
            or self.unhealthy > 0
            or self.agent_problem
            or self.agent in ("Missing", "Stale", "Invalid")
            or self.over_allocated
            or bool(self.malformed)
            or bool(self.advertised_twice)
        )


def node_facts(
    node: NodeProjection,
    gpunode: GPUNodeProjection | None,
    allocated: Mapping[str, int],
    spec: GPUInventorySpec,
    *,
    now: datetime,
    dra: NodeCounts | None = None,
) -> NodeFacts:
    """The facts of one node (any node; callers decide which ones are GPU nodes)."""
    plugin = accounting.node_totals(
        accounting.NodeResources(capacity=dict(node.capacity), allocatable=dict(node.allocatable)),
        allocated,
    )
    by_source: list[tuple[Source, Mapping[str, accounting.ResourceCounts]]] = []
    if plugin or dra is None:
        by_source.append(("DevicePlugin", plugin))
    if dra is not None:
        by_source.append(("DRA", dra.resources))
    resources = _added(plugin, dra.resources) if dra is not None else plugin
    stale_after = timedelta(seconds=spec.agent_stale_after_seconds)
    report = gpunode.agent if gpunode is not None else None
    state = freshness.agent_state(
        present=gpunode is not None,
        agent_error=gpunode.agent_error if gpunode is not None else "",
        heartbeat=report.heartbeat if report is not None else None,
        nvml_available=report.nvml_available if report is not None else False,
        stale_after=stale_after,
        now=now,
    )
    usable = report if report is not None and state in _USABLE_AGENT else None
    note = ""
    bound = agent_bound(node, dra)
    listed, twice = listed_gpus(node, dra)
    if usable is not None and bound is not None and usable.gpus > bound:
        # A hostile or broken agent must not inflate the cluster's count (design: "the
        # operator cross-checks an agent's GPU count against the Node's capacity").
        note = (
            f"agent reports {usable.gpus} GPUs, the node advertises at most {bound}"
            " (GFD nvidia.com/gpu.count, or its nvidia.com/ capacity)"
        )
        state, usable = "Invalid", None
    gpus = usable.gpus if usable is not None and usable.gpus else listed
    product = (
        node.product
        or (dra.product if dra is not None else "")
        or (usable.product if usable is not None else "")
        or UNKNOWN_PRODUCT
    )
    unhealthy = max(
        usable.unhealthy if usable is not None else 0, dra.unhealthy if dra is not None else 0
    )
    return NodeFacts(
        name=node.name,
        product=product,
        ready=node.ready,
        resources=resources,
        primary=resources.get(spec.primary_resource, _NONE),
        gpus=gpus,
        unhealthy=min(unhealthy, gpus),
        agent=state,
        agent_problem=freshness.agent_problem(
            state, node_created=node.created, stale_after=stale_after, now=now
        ),
        agent_note=note,
        malformed=node.malformed,
        expires=_expires(node, report, state, stale_after, now=now),
        source="DRA" if dra is not None else "DevicePlugin",
        by_source=tuple(by_source),
        advertised_twice=twice,
    )


def listed_gpus(node: NodeProjection, dra: NodeCounts | None) -> tuple[int, str]:
    """The node's physical GPUs by what Kubernetes lists (when no agent report is believed),
    and why they look advertised twice ('' when they do not).

    A device-plugin node: GFD's `nvidia.com/gpu.count`. A DRA node: the GPUs its driver
    publishes, or the label where it counts more (GPUs the driver does not publish, a pool
    never seen complete). A node with both: the device plugin's whole GPUs (its
    `nvidia.com/gpu` capacity, divided by GFD's `nvidia.com/gpu.replicas` under time-slicing or
    MPS, when that label is kept) plus DRA's, capped by the label, which counts every GPU NVML
    sees; a sum above it means some GPU is offered both ways.
    """
    label = node.gpu_count
    if dra is None:
        return label or 0, ""
    replicas = dict(node.labels).get(constants.GPU_REPLICAS_LABEL, "1")
    shared = int(replicas) if replicas.isdigit() and 0 < len(replicas) <= 4 else 1
    plugin = dict(node.capacity).get(constants.PRIMARY_RESOURCE, 0) // max(shared, 1)
    if not plugin:
        return max(dra.gpus, label or 0), ""
    both = plugin + dra.gpus
    if label is None or both <= label:
        return both, ""
    return label, (
        f"the device plugin advertises {plugin} {constants.PRIMARY_RESOURCE} and DRA publishes"
        f" {dra.gpus} GPUs, more than the {label} of GFD {constants.GPU_COUNT_LABEL}:"
        " the same GPUs are advertised twice"
    )


def _added(
    a: Mapping[str, accounting.ResourceCounts], b: Mapping[str, accounting.ResourceCounts]
) -> dict[str, accounting.ResourceCounts]:
    """Per resource name, the counts of both sources of one node added up (sorted by name)."""
    added = {}
    for name in sorted(a.keys() | b.keys()):
        x, y = a.get(name, _NONE), b.get(name, _NONE)
        added[name] = accounting.ResourceCounts(
            capacity=x.capacity + y.capacity,
            allocatable=x.allocatable + y.allocatable,
            allocated=x.allocated + y.allocated,
            available=x.available + y.available,
        )
    return added


def agent_bound(node: NodeProjection, dra: NodeCounts | None) -> int | None:
    """The most GPUs the node's agent may report; None: nothing Kubernetes says bounds it.

    A DRA count can fall short of the GPUs there: a pool never seen complete counts none of
    its devices (pools_stable.go GatherPools), and NVIDIA's driver
    publishes nothing for a MIG-enabled GPU without MIG devices (k8s-dra-driver-gpu nvlib.go,
    GetPerGpuAllocatableDevices). So the bound is the larger of it and what the Node says (GFD
    `nvidia.com/gpu.count`, device-plugin capacity), and an empty DRA count bounds nothing: a
    DRA node with neither label nor count is bounded only by the GPUNode schema.
    """
    said = plausible_gpus(node)
    if dra is None:
        return said
    if not dra.gpus:
        return said or None
    return max(said, dra.gpus)


def plausible_gpus(node: NodeProjection) -> int:
    """The most physical GPUs this node can have, by what Kubernetes says of it.

    GPU Feature Discovery's `nvidia.com/gpu.count` is NVML's own count (except under the
    single MIG strategy: see `projections`); and every physical GPU the device plugin serves
    is at least one unit of some `nvidia.com/` resource (a whole GPU, a MIG device or a
    shared replica), whatever the spec selects, so the sum of those capacities bounds it too.
    """
    selected = sum(count for _, count in node.capacity)
    return max(node.gpu_count or 0, node.device_units, selected)


def _expires(
    node: NodeProjection,
    report: object,
    state: AgentState,
    stale_after: timedelta,
    *,
    now: datetime,
) -> datetime | None:
    """The next moment time alone changes this node's agent state (None: no such moment)."""
    heartbeat = getattr(report, "heartbeat", None)
    moment: datetime | None = None
    if state in ("Reporting", "NVMLUnavailable") and heartbeat is not None:
        moment = freshness.utc(heartbeat) + stale_after + timedelta(seconds=1)
    elif state == "Invalid" and heartbeat is not None:
        moment = freshness.utc(heartbeat) - stale_after  # a future heartbeat becomes plausible
    elif state == "Missing" and node.created is not None:
        moment = freshness.utc(node.created) + stale_after + timedelta(seconds=1)
    return moment if moment is not None and moment > now else None
