"""What the answers need to know about one GPU node, merged from its GPUNode and inventory row.

Pure: no I/O. The agent's readings (`GPUNode.status.gpus`, `.agent`, `.driver`) and the
operator's Kubernetes view (`GPUNode.status.kubernetes`, the inventory's `status.nodes` row) are
read here and nowhere else, so a change to either API lands in one module.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gpu_inventory.api import constants, freshness
from gpu_inventory.api.models import (
    GPU,
    AgentState,
    GPUInventory,
    GPUInventoryStatus,
    GPUNode,
    GPUNodeStatus,
    KubernetesView,
    NodeRow,
    Source,
    XidEvent,
)
from gpu_inventory.mcpserver import shapes

SICK = ("Unhealthy", "Degraded")
"""GPU health values the health answers list ("degraded or worse")."""


def free(total: int, used: int) -> int:
    """What is left of `total` after `used`, floored at 0 (the scheduler's view of "free")."""
    return max(total - used, 0)


def node_status(gpunode: GPUNode | None) -> GPUNodeStatus | None:
    return gpunode.status if gpunode is not None else None


def kubernetes_view(gpunode: GPUNode | None) -> KubernetesView | None:
    """The operator's view of the node (`status.kubernetes`), if it has written one."""
    status = node_status(gpunode)
    return status.kubernetes if status is not None else None


def xid_events(gpu: GPU) -> Sequence[XidEvent]:
    """The XID events the agent still holds for this GPU: the one place the answers read them
    (the agent's XID representation is being reworked; adapt only this function)."""
    return gpu.xids


def gpu_names(gpunode: GPUNode) -> tuple[str, ...]:
    """The distinct NVML product names of the node's GPUs."""
    status = gpunode.status
    return tuple(dict.fromkeys(g.name for g in (status.gpus if status else ()) if g.name))


def is_sick(gpu: GPU) -> bool:
    return gpu.health.status in SICK


@functools.lru_cache(maxsize=4096)
def tokens(text: str) -> tuple[str, ...]:
    """A product name as lower-case words: case, spaces, dashes, underscores and slashes do not
    matter, so NVML's "Tesla T4" and GPU Feature Discovery's "Tesla-T4" are the same words."""
    return tuple(t for t in re.split(r"[\s_\-/]+", text.lower()) if t)


@dataclass(frozen=True)
class NodeFacts:
    """One GPU node as the answers see it."""

    name: str
    gpunode: GPUNode | None
    ready: bool | None
    product: str
    capacity: int
    allocatable: int
    allocated: int
    gpus: tuple[GPU, ...]
    gpu_count: int
    unhealthy: int
    agent_state: AgentState
    source: Source

    @property
    def available(self) -> int:
        return free(self.allocatable, self.allocated)

    @property
    def kubernetes(self) -> KubernetesView | None:
        return kubernetes_view(self.gpunode)

    @property
    def status(self) -> shapes.NodeStatus:
        if self.ready is None:
            return "unknown"
        return "ready" if self.ready else "not_ready"

    @property
    def all_gpus_unhealthy(self) -> bool:
        return bool(self.gpus) and all(g.health.status == "Unhealthy" for g in self.gpus)

    def agent_problem(self, *, stale_after: timedelta, now: datetime) -> bool:
        """The agent stopped reporting or reports nonsense, by the operator's own rule
        (`api.freshness`), judged now rather than at the operator's last write."""
        status = node_status(self.gpunode)
        agent = status.agent if status is not None else None
        state = self.agent_state
        if agent is not None and state not in freshness.AGENT_PROBLEM_STATES:
            state = freshness.agent_state(
                present=True,
                agent_error="",
                heartbeat=agent.heartbeat_time,
                nvml_available=agent.nvml_available,
                stale_after=stale_after,
                now=now,
            )
        created = self.gpunode.metadata.creation_timestamp if self.gpunode else None
        return freshness.agent_problem(
            state, node_created=created, stale_after=stale_after, now=now
        )


def product_names(gpunode: GPUNode | None, row: NodeRow | None) -> tuple[str, ...]:
    """Every name the node's GPU product goes by: the operator's, the label, the agent's."""
    status = node_status(gpunode)
    view = kubernetes_view(gpunode)
    names = [
        row.product if row else "",
        view.labels.get(constants.PRODUCT_LABEL, "") if view else "",
        status.summary.product if status and status.summary else "",
        *(g.name for g in (status.gpus if status else ())),
    ]
    return tuple(dict.fromkeys(n for n in names if n))


def node_facts(name: str, gpunode: GPUNode | None, row: NodeRow | None, primary: str) -> NodeFacts:
    """Merge the operator's views (the GPUNode's first, then the row) and the agent's."""
    status = node_status(gpunode)
    view = kubernetes_view(gpunode)
    gpus = tuple(sorted(status.gpus, key=lambda g: g.index)) if status else ()
    summary = status.summary if status else None

    ready: bool | None = None
    if view is not None and "Ready" in view.conditions:
        ready = view.conditions["Ready"]
    elif row is not None:
        ready = row.ready

    resource = next((r for r in view.gpu_resources if r.name == primary), None) if view else None
    if resource is not None:
        capacity = resource.capacity
        allocatable, allocated = resource.allocatable, resource.allocated
    elif row is not None:
        # The row carries no capacity; allocatable is the closest honest number.
        capacity, allocatable, allocated = row.allocatable, row.allocatable, row.allocated
    else:
        capacity, allocatable, allocated = 0, 0, 0

    names = product_names(gpunode, row)
    if gpus:
        gpu_count = len(gpus)
        unhealthy = sum(g.health.status == "Unhealthy" for g in gpus)
    else:
        gpu_count = row.gpus if row else (summary.gpus if summary else 0)
        unhealthy = row.unhealthy if row else (summary.unhealthy if summary else 0)
    if view is not None:
        agent_state: AgentState = view.agent_state
    else:
        agent_state = row.agent if row else "Missing"
    source: Source = view.source if view is not None else (row.source if row else "DevicePlugin")
    return NodeFacts(
        name=name,
        gpunode=gpunode,
        ready=ready,
        product=names[0] if names else "",
        capacity=capacity,
        allocatable=allocatable,
        allocated=allocated,
        gpus=gpus,
        gpu_count=gpu_count,
        unhealthy=unhealthy,
        agent_state=agent_state,
        source=source,
    )


@dataclass(frozen=True)
class GPUNodes:
    """The GPU nodes of one snapshot: every GPUNode and every row of the inventory.

    Facts are computed only for the nodes an answer needs, so a one-node question costs one
    node's work, not the cluster's.
    """

    nodes: Mapping[str, GPUNode]
    rows: Mapping[str, NodeRow]
    primary: str
    status: GPUInventoryStatus

    @classmethod
    def of(
        cls, nodes: Mapping[str, GPUNode], inventory: GPUInventory, status: GPUInventoryStatus
    ) -> GPUNodes:
        rows = {row.name: row for row in status.nodes}
        return cls(nodes, rows, inventory.spec.primary_resource, status)

    def names(self) -> list[str]:
        return sorted(self.rows.keys() | self.nodes.keys())

    def __contains__(self, name: object) -> bool:
        return name in self.nodes or name in self.rows

    def facts(self, name: str) -> NodeFacts:
        return node_facts(name, self.nodes.get(name), self.rows.get(name), self.primary)

    def product_names(self, name: str) -> tuple[str, ...]:
        return product_names(self.nodes.get(name), self.rows.get(name))

    def known_products(self) -> list[str]:
        """Every spelling of every product in the cluster (labels, the operator's, NVML's), one
        per set of words: what a `product` argument may match."""
        known: dict[tuple[str, ...], str] = {}
        for product in self.status.summary.products:
            known.setdefault(tokens(product), product)
        for name in self.names():
            for product in self.product_names(name):
                known.setdefault(tokens(product), product)
        return sorted(known.values())

    def gpu_types(self, reported: Mapping[str, Sequence[str]] | None = None) -> list[str]:
        """The cluster's GPU products as NVML names them (`gpus[].name`, e.g. "Tesla T4"), as
        the legacy answer's `gpu_types` did.

        GPU Feature Discovery's label is another vocabulary: it spells the MIG strategy
        ("NVIDIA-A100-SXM4-80GB-MIG-1g.10gb") and time-slicing ("Tesla-T4-SHARED") into the
        product. So a label's spelling is used only for a node whose agent reports no GPU names
        (no agent yet, NVML unavailable), and for a product the summary lists that no node
        reporting names carries. `reported` (node -> its GPU names) saves walking every GPU
        when the caller already knows them.
        """
        if reported is None:
            reported = {name: gpu_names(node) for name, node in self.nodes.items()}
        nvml: dict[tuple[str, ...], str] = {}
        for names in reported.values():
            for gpu_name in names:
                nvml.setdefault(tokens(gpu_name), gpu_name)
        labelled: dict[tuple[str, ...], str] = {}
        covered: set[tuple[str, ...]] = set(nvml)
        for name in self.names():
            spellings = self.product_names(name)
            if reported.get(name):
                covered.update(tokens(s) for s in spellings)
            else:
                for spelling in spellings:
                    labelled.setdefault(tokens(spelling), spelling)
        for product in self.status.summary.products:
            labelled.setdefault(tokens(product), product)
        others = (p for words, p in labelled.items() if words not in covered)
        return sorted({*nvml.values(), *others})

    def is_sick(self, name: str) -> bool:
        """A GPU is unhealthy or degraded (by the agent), else the operator counts one."""
        gpunode, row = self.nodes.get(name), self.rows.get(name)
        status = node_status(gpunode)
        if status and status.gpus:
            return any(is_sick(g) for g in status.gpus)
        if row is not None:
            return row.unhealthy > 0
        return bool(status and status.summary and status.summary.unhealthy)
