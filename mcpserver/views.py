"""The answers behind the MCP tools, computed from one cache snapshot.

Pure: no I/O. Every function takes the snapshot and `now`, checks its arguments (a `ValueError`
whose message starts with the argument's name) and returns a model from `shapes`. When the data
cannot be trusted (cache not loaded, API server gone too long, no GPUInventory) it raises
`InventoryUnavailableError` with a message a user can act on.

Unknown `node` or `product` values are errors that list valid values, never an empty answer: an
assistant that typed a wrong name should learn that, not conclude the cluster has no such GPUs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from gpu_inventory.api import constants
from gpu_inventory.api.conditions import find_condition
from gpu_inventory.api.models import (
    GPU,
    MAX_NODES,
    AgentState,
    GPUInventory,
    GPUInventoryStatus,
    GPUNode,
    KubernetesView,
    NodeRow,
    Source,
)
from gpu_inventory.mcpserver import shapes
from gpu_inventory.mcpserver.snapshot import Snapshot

MAX_LIMIT = MAX_NODES
MAX_COUNT = 1024
_SHOWN_VALUES = 10

_ACTION_RANK: dict[shapes.RecommendedAction, int] = {
    "None": 0,
    "RestartApplication": 1,
    "Investigate": 2,
    "ResetGPU": 3,
    "DrainAndResetGPU": 4,
    "RebootNode": 5,
    "ReplaceGPU": 6,
}
# NVML's recovery action (nvmlDeviceGetFieldValues NVML_FI_DEV_GET_GPU_RECOVERY_ACTION), as the
# agent reports it, mapped onto our vocabulary.
_DRIVER_ACTIONS: dict[str, shapes.RecommendedAction] = {
    "None": "None",
    "GpuReset": "ResetGPU",
    "NodeReboot": "RebootNode",
    "DrainP2P": "DrainAndResetGPU",
    "DrainAndReset": "DrainAndResetGPU",
}
_XID_ACTIONS: dict[str, shapes.RecommendedAction] = {
    "None": "None",
    "RestartApplication": "RestartApplication",
    "ResetGPU": "ResetGPU",
    "RebootNode": "RebootNode",
    "Investigate": "Investigate",
}
_SEVERITY = {"Unhealthy": 0, "Degraded": 1}


class InventoryUnavailableError(Exception):
    """The inventory cannot be answered from right now; the message says why and what to do."""


# --- availability --------------------------------------------------------------------------------


def require_inventory(
    snapshot: Snapshot, *, now: datetime, max_staleness_seconds: float
) -> tuple[GPUInventory, GPUInventoryStatus, list[str]]:
    """The inventory, its status and warnings, or `InventoryUnavailableError` saying why not."""
    where = f" at {snapshot.server}" if snapshot.server else ""
    if not snapshot.synced:
        if snapshot.last_error:
            raise InventoryUnavailableError(
                f"The Kubernetes API server{where} cannot be reached, so the GPU inventory is "
                f"unavailable: {snapshot.last_error}. The MCP server keeps retrying."
            )
        raise InventoryUnavailableError(
            "The GPU inventory is still loading from the Kubernetes API server; "
            "try again in a few seconds."
        )
    warnings: list[str] = []
    if snapshot.disconnected_since is not None:
        age = max((now - snapshot.disconnected_since).total_seconds(), 0.0)
        if age > max_staleness_seconds:
            raise InventoryUnavailableError(
                f"Lost contact with the Kubernetes API server{where} {age:.0f}s ago "
                f"({snapshot.last_error or 'no detail'}); the cached GPU inventory is too old "
                "to trust. The MCP server keeps retrying."
            )
        warnings.append(
            f"Serving cached data: lost contact with the Kubernetes API server {age:.0f}s ago "
            f"({snapshot.last_error or 'no detail'}); the answer may be out of date."
        )
    inventory = snapshot.inventory
    if inventory is None:
        raise InventoryUnavailableError(
            f"GPUInventory '{constants.INVENTORY_NAME}' does not exist: the gpu-inventory "
            "operator is not running yet (or has not created it). Start the operator; this "
            "server only reads what it writes."
        )
    if inventory.status is None:
        raise InventoryUnavailableError(
            f"GPUInventory '{constants.INVENTORY_NAME}' has no status yet: the gpu-inventory "
            "operator has not reconciled it. Check that the operator is running."
        )
    conditions = inventory.status.conditions
    ready = find_condition(conditions, constants.ConditionType.READY)
    if ready is not None and ready.status != "True":
        warnings.append(
            f"The inventory is not current (Ready={ready.status}, {ready.reason})"
            + (f": {ready.message}" if ready.message else ".")
        )
    stalled = find_condition(conditions, constants.ConditionType.STALLED)
    if stalled is not None and stalled.status == "True":
        warnings.append(
            f"The operator is stalled ({stalled.reason})"
            + (f": {stalled.message}" if stalled.message else ".")
        )
    return inventory, inventory.status, warnings


# --- per-node facts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeFacts:
    """What the tools need to know about one GPU node, merged from its GPUNode and row."""

    name: str
    gpunode: GPUNode | None
    ready: bool | None
    product: str
    capacity: int | None
    allocatable: int
    allocated: int
    gpus: tuple[GPU, ...]
    gpu_count: int
    unhealthy: int
    agent_state: AgentState
    source: Source = "DevicePlugin"

    @property
    def available(self) -> int:
        return max(self.allocatable - self.allocated, 0)

    @property
    def kubernetes(self) -> KubernetesView | None:
        status = self.gpunode.status if self.gpunode else None
        return status.kubernetes if status else None

    @property
    def status(self) -> shapes.NodeStatus:
        if self.ready is None:
            return "unknown"
        return "ready" if self.ready else "not_ready"

    @property
    def all_gpus_unhealthy(self) -> bool:
        return bool(self.gpus) and all(g.health.status == "Unhealthy" for g in self.gpus)


def product_names(gpunode: GPUNode | None, row: NodeRow | None) -> tuple[str, ...]:
    """Every name the node's GPU product goes by: the operator's, the label, the agent's."""
    status = gpunode.status if gpunode else None
    view = status.kubernetes if status else None
    names = [
        row.product if row else "",
        view.labels.get(constants.PRODUCT_LABEL, "") if view else "",
        status.summary.product if status and status.summary else "",
        *(g.name for g in (status.gpus if status else ())),
    ]
    return tuple(dict.fromkeys(n for n in names if n))


def node_facts(name: str, gpunode: GPUNode | None, row: NodeRow | None, primary: str) -> NodeFacts:
    """Merge the operator's views (the GPUNode's first, then the row) and the agent's."""
    status = gpunode.status if gpunode else None
    view = status.kubernetes if status else None
    gpus = tuple(sorted(status.gpus, key=lambda g: g.index)) if status else ()
    summary = status.summary if status else None

    ready: bool | None = None
    if view is not None and "Ready" in view.conditions:
        ready = view.conditions["Ready"]
    elif row is not None:
        ready = row.ready

    resource = next((r for r in view.gpu_resources if r.name == primary), None) if view else None
    capacity: int | None
    if resource is not None:
        capacity = resource.capacity
        allocatable, allocated = resource.allocatable, resource.allocated
    elif row is not None:
        capacity, allocatable, allocated = None, row.allocatable, row.allocated
    else:
        capacity, allocatable, allocated = None, 0, 0

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
        cls, snapshot: Snapshot, inventory: GPUInventory, status: GPUInventoryStatus
    ) -> GPUNodes:
        rows = {row.name: row for row in status.nodes}
        return cls(snapshot.nodes, rows, inventory.spec.primary_resource, status)

    def names(self) -> list[str]:
        return sorted(self.rows.keys() | self.nodes.keys())

    def __contains__(self, name: object) -> bool:
        return name in self.nodes or name in self.rows

    def facts(self, name: str) -> NodeFacts:
        return node_facts(name, self.nodes.get(name), self.rows.get(name), self.primary)

    def product_names(self, name: str) -> tuple[str, ...]:
        return product_names(self.nodes.get(name), self.rows.get(name))

    def known_products(self) -> list[str]:
        """Every product name in the cluster, one spelling per product (the operator's first)."""
        known: dict[tuple[str, ...], str] = {}
        for product in self.status.summary.products:
            known.setdefault(_tokens(product), product)
        for name in self.names():
            for product in self.product_names(name):
                known.setdefault(_tokens(product), product)
        return sorted(known.values())

    def is_unhealthy(self, name: str) -> bool:
        """A GPU is unhealthy or degraded (by the agent), else the operator counts one."""
        gpunode, row = self.nodes.get(name), self.rows.get(name)
        status = gpunode.status if gpunode else None
        if status and status.gpus:
            return any(_is_sick(g) for g in status.gpus)
        if row is not None:
            return row.unhealthy > 0
        return bool(status and status.summary and status.summary.unhealthy)


# --- argument checks -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _tokens(text: str) -> tuple[str, ...]:
    return tuple(t for t in re.split(r"[\s_\-/]+", text.lower()) if t)


def product_matches(query: str, names: Iterable[str]) -> bool:
    """True when the query's words appear, in order, among one name's words.

    Case, spaces, dashes and underscores do not matter, and a word must match whole, so "A100"
    matches "NVIDIA-A100-SXM4-80GB" and "nvidia a100 80gb" does too, but "A10" does not.
    """
    wanted = _tokens(query)
    for name in names:
        have = iter(_tokens(name))
        if wanted and all(word in have for word in wanted):
            return True
    return False


def _listing(values: Sequence[str]) -> str:
    shown = ", ".join(values[:_SHOWN_VALUES])
    more = len(values) - _SHOWN_VALUES
    return shown + (f" (and {more} more)" if more > 0 else "")


def _check_text(argument: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise ValueError(f"{argument} must be a non-empty string or omitted")
    return value


def _check_range(argument: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{argument} must be between {low} and {high}, got {value}")


def _check_node(node: str, nodes: GPUNodes) -> None:
    if node in nodes:
        return
    names = nodes.names()
    if not names:
        raise ValueError(f"node {node!r} is not a GPU node: the inventory has no GPU nodes")
    raise ValueError(
        f"node {node!r} is not a GPU node in the inventory; GPU nodes are: " + _listing(names)
    )


def _filter_product(product: str, names: Iterable[str], nodes: GPUNodes) -> list[str]:
    """The names of nodes with that product; an error listing products when none has it."""
    verdicts: dict[str, bool] = {}

    def matches(node: str) -> bool:
        for name in nodes.product_names(node):
            if name not in verdicts:
                verdicts[name] = product_matches(product, (name,))
            if verdicts[name]:
                return True
        return False

    kept = [n for n in names if matches(n)]
    if kept:
        return kept
    known = nodes.known_products()
    if product_matches(product, known):
        return kept  # a real product, just not among these nodes
    if not known:
        raise ValueError(f"product {product!r} matches no GPU: the inventory has no GPU products")
    raise ValueError(
        f"product {product!r} matches no GPU product in the cluster; products are: "
        + _listing(known)
    )


# --- get_gpu_inventory ---------------------------------------------------------------------------


def cluster_summary(inventory: GPUInventory, status: GPUInventoryStatus) -> shapes.ClusterSummary:
    s = status.summary
    return shapes.ClusterSummary(
        total_nodes=s.nodes,
        total_gpus=s.gpus,
        gpus_allocatable=s.allocatable,
        gpus_allocated=s.allocated,
        gpus_available=s.available,
        gpu_types=list(s.products),
        primary_resource=inventory.spec.primary_resource,
        gpu_capacity=s.capacity,
        ready_nodes=s.ready_nodes,
        unhealthy_gpus=s.unhealthy_gpus,
        stale_agents=s.stale_agents,
        # Same field names as the API's models: copied by attribute.
        resources=[
            shapes.ResourceUsage.model_validate(r, from_attributes=True) for r in status.resources
        ],
        products=[
            shapes.ProductUsage.model_validate(p, from_attributes=True) for p in status.products
        ],
        conditions=[
            shapes.ConditionOut.model_validate(c, from_attributes=True) for c in status.conditions
        ],
    )


def _gpu_out(gpu: GPU) -> shapes.GPUOut:
    return shapes.GPUOut(
        index=gpu.index,
        name=gpu.name,
        uuid=gpu.uuid,
        memory_total=gpu.memory_total,
        memory_used=gpu.memory_used,
        temperature=gpu.temperature,
        utilization=gpu.utilization_gpu,
        health=gpu.health.status,
        health_reasons=list(gpu.health.reasons),
        utilization_memory=gpu.utilization_memory,
        power_draw_watts=gpu.power_draw_watts,
        power_limit_watts=gpu.power_limit_watts,
        pci_bus_id=gpu.pci_bus_id,
        mig_enabled=gpu.mig.enabled,
        recent_xids=len(gpu.xids),
    )


def _kubernetes_out(facts: NodeFacts) -> shapes.NodeKubernetes:
    view = facts.kubernetes
    return shapes.NodeKubernetes(
        labels=dict(view.labels) if view else {},
        conditions=dict(view.conditions) if view else {},
        gpu_resources=shapes.GPUResources(
            capacity=facts.capacity,
            allocatable=facts.allocatable,
            allocated=facts.allocated,
            available=facts.available,
        ),
        all_gpu_resources=[
            shapes.ResourceUsage(
                name=r.name,
                source=facts.source,
                capacity=r.capacity,
                allocatable=r.allocatable,
                allocated=r.allocated,
                available=max(r.allocatable - r.allocated, 0),
            )
            for r in (view.gpu_resources if view else [])
        ],
    )


def _is_sick(gpu: GPU) -> bool:
    return gpu.health.status in _SEVERITY


def node_out(
    facts: NodeFacts, *, include_k8s_metadata: bool, only_unhealthy: bool
) -> shapes.NodeOut:
    status = facts.gpunode.status if facts.gpunode else None
    agent = status.agent if status else None
    driver = status.driver if status else None
    gpus = [g for g in facts.gpus if _is_sick(g)] if only_unhealthy else facts.gpus
    return shapes.NodeOut(
        node_name=facts.name,
        pod_name=(agent.pod_name or None) if agent else None,
        status=facts.status,
        kubernetes=_kubernetes_out(facts) if include_k8s_metadata else None,
        gpus=[_gpu_out(g) for g in gpus],
        product=facts.product,
        gpu_count=facts.gpu_count,
        unhealthy_gpus=facts.unhealthy,
        allocatable=facts.allocatable,
        allocated=facts.allocated,
        available=facts.available,
        agent_state=facts.agent_state,
        last_heartbeat=agent.heartbeat_time if agent else None,
        driver_version=driver.driver_version if driver else None,
        cuda_version=driver.cuda_version if driver else None,
        source=facts.source,
    )


class NodeOutMemo:
    """Remembers each node's output until its GPUNode object, inventory row or the primary
    resource (which picks the numbers) changes.

    The cache replaces a GPUNode object whenever the node changes, so identity tells a stale
    entry; rows are compared by value because every inventory write brings new row objects.
    With it, a big answer costs dictionary lookups instead of rebuilding ~10 models per node.
    Safe to share between threads: a race only builds an entry twice.
    """

    def __init__(self) -> None:
        self._entries: dict[
            tuple[str, str, bool, bool], tuple[object, NodeRow | None, shapes.NodeOut]
        ]
        self._entries = {}

    def get(
        self, nodes: GPUNodes, name: str, *, include_k8s_metadata: bool, only_unhealthy: bool
    ) -> shapes.NodeOut:
        key = (name, nodes.primary, include_k8s_metadata, only_unhealthy)
        gpunode, row = nodes.nodes.get(name), nodes.rows.get(name)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is gpunode and entry[1] == row:
            return entry[2]
        out = node_out(
            nodes.facts(name),
            include_k8s_metadata=include_k8s_metadata,
            only_unhealthy=only_unhealthy,
        )
        self._entries[key] = (gpunode, row, out)
        if len(self._entries) > 8 * (len(nodes.nodes) + len(nodes.rows)) + 64:
            self._entries.clear()  # deleted nodes pile up only this far
        return out


def inventory_answer(
    snapshot: Snapshot,
    *,
    now: datetime,
    max_staleness_seconds: float,
    include_k8s_metadata: bool = True,
    node: str | None = None,
    product: str | None = None,
    only_unhealthy: bool = False,
    limit: int = 500,
    memo: NodeOutMemo | None = None,
) -> shapes.InventoryAnswer:
    """The legacy-compatible inventory, filtered by node, product and health, cut at `limit`.

    Nodes come sorted by name. With `only_unhealthy`, only nodes with an unhealthy or degraded
    GPU are listed, each with just those GPUs. `memo` makes repeated big answers cheap.
    """
    memo = memo or NodeOutMemo()
    _check_range("limit", limit, 1, MAX_LIMIT)
    node = _check_text("node", node)
    product = _check_text("product", product)
    inventory, status, warnings = require_inventory(
        snapshot, now=now, max_staleness_seconds=max_staleness_seconds
    )
    nodes = GPUNodes.of(snapshot, inventory, status)
    if node is not None:
        _check_node(node, nodes)
        names = [node]
    else:
        names = nodes.names()
    if product is not None:
        names = _filter_product(product, names, nodes)
    if only_unhealthy:
        names = [n for n in names if nodes.is_unhealthy(n)]
    return shapes.InventoryAnswer(
        cluster_summary=cluster_summary(inventory, status),
        nodes=[
            memo.get(
                nodes,
                name,
                include_k8s_metadata=include_k8s_metadata,
                only_unhealthy=only_unhealthy,
            )
            for name in names[:limit]
        ],
        nodes_matched=len(names),
        truncated=len(names) > limit,
        warnings=warnings,
    )


def inventory_resource(
    snapshot: Snapshot, *, now: datetime, max_staleness_seconds: float
) -> shapes.InventoryResource:
    """The summary published as the `gpuinventory://cluster` resource."""
    inventory, status, warnings = require_inventory(
        snapshot, now=now, max_staleness_seconds=max_staleness_seconds
    )
    return shapes.InventoryResource(
        cluster_summary=cluster_summary(inventory, status), warnings=warnings
    )


# --- get_gpu_health ------------------------------------------------------------------------------


def recommend(gpu: GPU) -> tuple[shapes.RecommendedAction, str]:
    """The most disruptive action any of the GPU's signals calls for, and which signal it was.

    Signals: NVML's recovery action (the driver's own verdict), row-remapping failure (the GPU
    needs replacing) or pending remap / page retirement (a reset applies it), and the action
    NVIDIA's XID catalogue gives for each recent XID. A sick GPU with none of these gets
    "Investigate". The server only reports: it never cordons, drains or resets.
    """
    candidates: list[tuple[shapes.RecommendedAction, str]] = []
    if gpu.recovery_action is not None:
        candidates.append(
            (_DRIVER_ACTIONS[gpu.recovery_action], f"driver recovery action {gpu.recovery_action}")
        )
    rows = gpu.remapped_rows
    if rows is not None and rows.failure:
        candidates.append(("ReplaceGPU", "row remapping failed"))
    if rows is not None and rows.pending:
        candidates.append(("ResetGPU", "row remapping pending until a GPU reset"))
    if gpu.retired_pages is not None and gpu.retired_pages.pending:
        candidates.append(("ResetGPU", "page retirement pending until a GPU reset"))
    for event in gpu.xids:
        candidates.append((_XID_ACTIONS[event.action], f"XID {event.xid} ({event.class_})"))
    if not candidates or all(action == "None" for action, _ in candidates):
        if _is_sick(gpu):
            reasons = "; ".join(gpu.health.reasons) or "no reason given"
            return "Investigate", f"health {gpu.health.status}: {reasons}"
        return "None", "no signal"
    # max() keeps the first of equals, so the earliest signal listed above names the reason.
    return max(candidates, key=lambda c: _ACTION_RANK[c[0]])


def _agent_stale(facts: NodeFacts, *, now: datetime, stale_after_seconds: int) -> bool:
    """As the operator counts `staleAgents` (Stale or Invalid), or stale since its last write."""
    if facts.agent_state in ("Stale", "Invalid"):
        return True
    status = facts.gpunode.status if facts.gpunode else None
    heartbeat = status.agent.heartbeat_time if status and status.agent else None
    if heartbeat is None:
        return False
    return (now - heartbeat).total_seconds() > stale_after_seconds


def gpu_health_out(facts: NodeFacts, gpu: GPU, *, agent_stale: bool) -> shapes.GPUHealthOut:
    xids = sorted(gpu.xids, key=lambda x: x.time, reverse=True)
    action, why = recommend(gpu)
    return shapes.GPUHealthOut(
        node_name=facts.name,
        index=gpu.index,
        uuid=gpu.uuid,
        name=gpu.name,
        health=gpu.health.status,
        reasons=list(gpu.health.reasons),
        recommended_action=action,
        action_reason=why,
        driver_recovery_action=gpu.recovery_action,
        recent_xids=[
            shapes.XidOut(xid=x.xid, time=x.time, xid_class=x.class_, action=x.action) for x in xids
        ],
        last_event_time=xids[0].time if xids else None,
        agent_stale=agent_stale,
    )


def health_answer(
    snapshot: Snapshot,
    *,
    now: datetime,
    max_staleness_seconds: float,
    severity: shapes.Severity = "degraded",
) -> shapes.HealthAnswer:
    """Sick GPUs, newest event first, with the action each one calls for.

    `severity` "degraded" lists unhealthy and degraded GPUs, "unhealthy" only unhealthy ones;
    the counts always cover both. GPUs with no timestamped event follow, worst health first,
    then by node and index.
    """
    inventory, status, warnings = require_inventory(
        snapshot, now=now, max_staleness_seconds=max_staleness_seconds
    )
    stale_after = inventory.spec.agent_stale_after_seconds
    nodes = GPUNodes.of(snapshot, inventory, status)
    facts = [nodes.facts(n) for n in nodes.names()]
    sick: list[shapes.GPUHealthOut] = []
    stale: list[str] = []
    for f in facts:
        agent_stale = _agent_stale(f, now=now, stale_after_seconds=stale_after)
        if agent_stale:
            stale.append(f.name)
        sick.extend(gpu_health_out(f, g, agent_stale=agent_stale) for g in f.gpus if _is_sick(g))
    shown = [g for g in sick if severity == "degraded" or g.health == "Unhealthy"]
    dated = sorted(
        (g for g in shown if g.last_event_time is not None),
        key=lambda g: (g.last_event_time, -_SEVERITY[g.health]),
        reverse=True,
    )
    undated = sorted(
        (g for g in shown if g.last_event_time is None),
        key=lambda g: (_SEVERITY[g.health], g.node_name, g.index),
    )
    return shapes.HealthAnswer(
        unhealthy_gpus=sum(g.health == "Unhealthy" for g in sick),
        degraded_gpus=sum(g.health == "Degraded" for g in sick),
        gpus=dated + undated,
        nodes_not_ready=[f.name for f in facts if f.ready is False],
        stale_agents=stale,
        warnings=warnings,
    )


# --- find_gpu_capacity ---------------------------------------------------------------------------


def capacity_answer(
    snapshot: Snapshot,
    *,
    now: datetime,
    max_staleness_seconds: float,
    count: int,
    product: str | None = None,
) -> shapes.CapacityAnswer:
    """Nodes where a pod asking for `count` units of the primary resource fits now, tightest first.

    A node qualifies when it is Ready, has at least `count` units free (allocatable minus what
    bound pods request) and its agent does not report every GPU unhealthy. Tightest fit first
    (least left over, then by name) is best-fit bin packing: placing small jobs in the smallest
    hole that takes them keeps whole free nodes for the big jobs that need them.
    """
    _check_range("count", count, 1, MAX_COUNT)
    product = _check_text("product", product)
    inventory, status, warnings = require_inventory(
        snapshot, now=now, max_staleness_seconds=max_staleness_seconds
    )
    primary = inventory.spec.primary_resource
    nodes = GPUNodes.of(snapshot, inventory, status)
    names = nodes.names()
    if product is not None:
        names = _filter_product(product, names, nodes)
    facts = [nodes.facts(n) for n in names]
    eligible = [f for f in facts if f.ready is True and not f.all_gpus_unhealthy]
    fits = sorted(
        (f for f in eligible if f.available >= count), key=lambda f: (f.available, f.name)
    )
    largest = max(eligible, key=lambda f: (f.available, f.name), default=None)
    largest_free = largest.available if largest else 0
    of_product = f" {product}" if product else ""
    if fits:
        message = (
            f"{len(fits)} node(s) can take a pod asking for {count} {primary}{of_product} now; "
            f"the best fit is {fits[0].name} ({fits[0].available} free)."
        )
    elif largest is not None and largest_free > 0:
        message = (
            f"No Ready node has {count} free {primary}{of_product}; the largest free block is "
            f"{largest_free} on {largest.name}."
        )
    else:
        message = f"No Ready node has any free {primary}{of_product}."
    return shapes.CapacityAnswer(
        count=count,
        product=product,
        primary_resource=primary,
        nodes=[
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
            )
            for f in fits
        ],
        largest_free_block=largest_free,
        message=message,
        warnings=warnings,
    )
