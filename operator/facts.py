"""One GPU node's facts: what its row, its GPUNode view and the cluster totals are made of.

A node's GPUs come from its device plugin (Node `status.allocatable`, pods' requests) or from
DRA (`dra.accounting.NodeCounts`: ResourceSlices and ResourceClaims), and a node's `source`
says which: DRA as soon as a GPU driver publishes devices on it. Both add up per resource name
(upstream forbids a node to offer one name both ways: extendeddynamicresources.go).

Pure: no I/O; `now` is passed in. A node's facts change only when its Node, its GPUNode or the
pods bound to it change, or when time alone moves its agent's state (a heartbeat going stale,
the moment `expires` says). `aggregates.FactsCache` keeps them and recomputes only those.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from gpu_inventory.api import freshness
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
    """Physical GPUs: the agent's count when usable and plausible, else the GFD label."""
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
    resources = accounting.node_totals(
        accounting.NodeResources(capacity=dict(node.capacity), allocatable=dict(node.allocatable)),
        allocated,
    )
    if dra is not None:
        resources = _added(resources, dra.resources)
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
    bound = max(plausible_gpus(node), dra.gpus if dra is not None else 0)
    if usable is not None and usable.gpus > bound:
        # A hostile or broken agent must not inflate the cluster's count (design: "the
        # operator cross-checks an agent's GPU count against the Node's capacity").
        note = (
            f"agent reports {usable.gpus} GPUs, the node advertises at most {bound}"
            " (GFD nvidia.com/gpu.count, or its nvidia.com/ capacity)"
        )
        state, usable = "Invalid", None
    listed = dra.gpus if dra is not None and dra.gpus else (node.gpu_count or 0)
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
