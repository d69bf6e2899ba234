"""Projections + spec -> the desired GPUInventory status and each GPUNode's `status.kubernetes`.

Pure: no I/O. `now` is passed in (agent staleness and condition transition times depend on it);
the same inputs always give the same status, so the writer can compare and skip.

Rules that a reader of the CR relies on:
- a *GPU node* has capacity of some resource in `spec.resourceNames`; only those get rows;
- headline numbers count `spec.primaryResource`; every resource name gets its own totals;
- `available = allocatable - allocated`, floored at 0 per node (accounting.ResourceTotals);
- `gpus` is physical GPUs: the agent's count when its report is usable, else the node's
  `nvidia.com/gpu.count` label;
- an agent is a problem (Degraded `AgentsStale`, `summary.staleAgents`) when its heartbeat is
  older than `spec.agentStaleAfterSeconds`, when its report is unusable (`Invalid`), or when
  it never reported on a node older than that same grace period (`Missing`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Final

from gpu_inventory.api import conditions as api_conditions
from gpu_inventory.api import freshness
from gpu_inventory.api.constants import ConditionType, Reason
from gpu_inventory.api.models import (
    MAX_LABELS,
    MAX_NODES,
    MAX_PRODUCTS,
    MAX_RESOURCE_NAMES,
    AgentState,
    GPUInventorySpec,
    GPUInventoryStatus,
    InventorySummary,
    KubernetesView,
    NodeResource,
    NodeRow,
    ProductTotals,
    ResourceTotals,
)
from gpu_inventory.operator import accounting
from gpu_inventory.operator.projections import (
    AgentReport,
    GPUNodeProjection,
    NodeProjection,
)

UNKNOWN_PRODUCT: Final = "Unknown"
"""Product of a GPU node with neither the `nvidia.com/gpu.product` label nor an agent report."""

MAX_NAMES_IN_MESSAGE: Final = 5
_NO_SUMS: Final[Mapping[str, int]] = {}
_NO_TOTALS: Final = accounting.ResourceTotals()
_USABLE_AGENT: Final = frozenset({"Reporting", "Stale", "NVMLUnavailable"})


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterState:
    """What the store holds, as read-only maps (the store's own dicts; nothing awaits meanwhile)."""

    nodes: Mapping[str, NodeProjection]
    gpunodes: Mapping[str, GPUNodeProjection]
    allocated: Mapping[str, Mapping[str, int]]


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorHealth:
    """How the operator itself is doing; it decides Ready, Reconciling and Stalled."""

    synced: bool = True
    forbidden: tuple[str, ...] = ()
    """Writes the API server refused with 403, e.g. "patch gpunodes/status"."""
    write_errors: tuple[str, ...] = ()
    """Other writes that keep failing (422 with the server's message)."""
    spec_error: str = ""


@functools.lru_cache(maxsize=8)
def _matcher(names: tuple[str, ...]) -> accounting.ResourceMatcher:
    return accounting.ResourceMatcher(names)


def matcher_for(spec: GPUInventorySpec) -> accounting.ResourceMatcher:
    """The spec's resource names as a cached matcher."""
    return _matcher(tuple(spec.resource_names))


# --- per node -----------------------------------------------------------------------------------


def agent_state(
    gpunode: GPUNodeProjection | None,
    *,
    stale_after: timedelta,
    now: datetime,
) -> AgentState:
    """The agent's state on one node (the shared rule in `api.freshness`)."""
    agent = gpunode.agent if gpunode is not None else None
    return freshness.agent_state(
        present=gpunode is not None,
        agent_error=gpunode.agent_error if gpunode is not None else "",
        heartbeat=agent.heartbeat if agent is not None else None,
        nvml_available=agent.nvml_available if agent is not None else False,
        stale_after=stale_after,
        now=now,
    )


def agent_problem(
    state: AgentState, node: NodeProjection, *, stale_after: timedelta, now: datetime
) -> bool:
    """Whether this agent state degrades the inventory (`api.freshness.agent_problem`)."""
    return freshness.agent_problem(
        state, node_created=node.created, stale_after=stale_after, now=now
    )


def _usable(gpunode: GPUNodeProjection | None, state: AgentState) -> AgentReport | None:
    if gpunode is None or state not in _USABLE_AGENT:
        return None
    return gpunode.agent


def node_resources(
    node: NodeProjection,
    allocated: Mapping[str, int],
    matcher: accounting.ResourceMatcher,
) -> dict[str, accounting.ResourceTotals]:
    """A node's totals per GPU resource name (sorted), from capacity, allocatable, allocated."""
    return accounting.node_totals(
        accounting.NodeResources(
            capacity={n: c for n, c in node.capacity if matcher.matches(n)},
            allocatable={n: c for n, c in node.allocatable if matcher.matches(n)},
        ),
        {n: c for n, c in allocated.items() if matcher.matches(n)},
    )


def node_view(
    node: NodeProjection,
    gpunode: GPUNodeProjection | None,
    allocated: Mapping[str, int],
    spec: GPUInventorySpec,
    *,
    now: datetime,
) -> KubernetesView:
    """The desired `status.kubernetes` of one GPUNode."""
    totals = node_resources(node, allocated, matcher_for(spec))
    stale_after = timedelta(seconds=spec.agent_stale_after_seconds)
    primary = totals.get(spec.primary_resource)
    return KubernetesView(
        labels=dict(node.labels[:MAX_LABELS]),
        conditions=dict(node.conditions),
        gpu_resources=[
            NodeResource(
                name=name, capacity=t.capacity, allocatable=t.allocatable, allocated=t.allocated
            )
            for name, t in list(totals.items())[:MAX_RESOURCE_NAMES]
        ],
        allocated=primary.allocated if primary is not None else 0,
        agent_state=agent_state(gpunode, stale_after=stale_after, now=now),
    )


def desired_views(
    state: ClusterState, spec: GPUInventorySpec, names: Iterable[str], *, now: datetime
) -> dict[str, KubernetesView]:
    """Views of the named nodes that have both a Node and a GPUNode (others are skipped)."""
    views: dict[str, KubernetesView] = {}
    for name in names:
        node = state.nodes.get(name)
        gpunode = state.gpunodes.get(name)
        if node is None or gpunode is None:
            continue
        views[name] = node_view(node, gpunode, state.allocated.get(name, _NO_SUMS), spec, now=now)
    return views


def gpu_nodes(state: ClusterState, spec: GPUInventorySpec) -> list[str]:
    """Names of the GPU nodes (capacity of a counted resource), sorted."""
    matcher = matcher_for(spec)
    return sorted(name for name, node in state.nodes.items() if node.has_capacity(matcher))


# --- the inventory ------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Problems:
    unhealthy: dict[str, int] = dataclasses.field(default_factory=dict)
    not_ready: list[str] = dataclasses.field(default_factory=list)
    stale: list[str] = dataclasses.field(default_factory=list)


def desired_status(
    state: ClusterState,
    spec: GPUInventorySpec,
    *,
    generation: int | None,
    existing: GPUInventoryStatus | None,
    health: OperatorHealth,
    now: datetime,
) -> GPUInventoryStatus:
    """The whole desired status. Before the first sync, only the conditions change: numbers
    from half a listing would be wrong, the previous ones are merely old."""
    now = now.replace(microsecond=0)
    existing_conditions = existing.conditions if existing is not None else []
    if not health.synced:
        base = existing if existing is not None else GPUInventoryStatus()
        verdicts = _verdicts(health, _Problems())
        return base.model_copy(
            update={
                "conditions": api_conditions.apply_verdicts(
                    existing_conditions,
                    verdicts,
                    generation=base.observed_generation,
                    now=now,
                )
            }
        )
    matcher = matcher_for(spec)
    stale_after = timedelta(seconds=spec.agent_stale_after_seconds)
    primary = spec.primary_resource
    rows: list[NodeRow] = []
    per_node: list[dict[str, accounting.ResourceTotals]] = []
    problems = _Problems()
    products: dict[str, list[int]] = {}  # product -> [nodes, gpus, allocatable, allocated, avail]
    ready_nodes = gpus = unhealthy = 0
    for name in gpu_nodes(state, spec):
        node = state.nodes[name]
        gpunode = state.gpunodes.get(name)
        totals = node_resources(node, state.allocated.get(name, _NO_SUMS), matcher)
        per_node.append(totals)
        mine = totals.get(primary, _NO_TOTALS)
        agent = agent_state(gpunode, stale_after=stale_after, now=now)
        report = _usable(gpunode, agent)
        node_gpus = report.gpus if report is not None and report.gpus else (node.gpu_count or 0)
        node_unhealthy = report.unhealthy if report is not None else 0
        product = node.product or (report.product if report is not None else "") or UNKNOWN_PRODUCT
        rows.append(
            NodeRow(
                name=name,
                product=product,
                ready=node.ready,
                allocatable=mine.allocatable,
                allocated=mine.allocated,
                gpus=node_gpus,
                unhealthy=node_unhealthy,
                agent=agent,
            )
        )
        ready_nodes += node.ready
        gpus += node_gpus
        unhealthy += node_unhealthy
        if node_unhealthy:
            problems.unhealthy[name] = node_unhealthy
        if not node.ready:
            problems.not_ready.append(name)
        if agent_problem(agent, node, stale_after=stale_after, now=now):
            problems.stale.append(name)
        acc = products.setdefault(product, [0, 0, 0, 0, 0])
        acc[0] += 1
        acc[1] += node_gpus
        acc[2] += mine.allocatable
        acc[3] += mine.allocated
        acc[4] += mine.available
    cluster = accounting.sum_totals(per_node)
    headline = cluster.get(primary, _NO_TOTALS)
    product_names = sorted(products)[:MAX_PRODUCTS]
    return GPUInventoryStatus(
        observed_generation=generation,
        summary=InventorySummary(
            nodes=len(rows),
            ready_nodes=ready_nodes,
            gpus=gpus,
            capacity=headline.capacity,
            allocatable=headline.allocatable,
            allocated=headline.allocated,
            available=headline.available,
            unhealthy_gpus=unhealthy,
            stale_agents=len(problems.stale),
            products=product_names,
        ),
        resources=[
            ResourceTotals(
                name=name,
                capacity=t.capacity,
                allocatable=t.allocatable,
                allocated=t.allocated,
                available=t.available,
            )
            for name, t in list(cluster.items())[: MAX_RESOURCE_NAMES * 4]
        ],
        products=[
            ProductTotals(
                product=p,
                nodes=products[p][0],
                gpus=products[p][1],
                allocatable=products[p][2],
                allocated=products[p][3],
                available=products[p][4],
            )
            for p in product_names
        ],
        nodes=rows[:MAX_NODES],
        conditions=api_conditions.apply_verdicts(
            existing_conditions, _verdicts(health, problems), generation=generation, now=now
        ),
    )


def _verdicts(health: OperatorHealth, problems: _Problems) -> list[api_conditions.Verdict]:
    return [
        _ready(health),
        _degraded(health, problems),
        _reconciling(health),
        _stalled(health),
    ]


def _ready(health: OperatorHealth) -> api_conditions.Verdict:
    if not health.synced:
        return api_conditions.Verdict(
            ConditionType.READY,
            "False",
            Reason.INDEXING,
            "listing nodes, pods and GPUNodes; numbers are from the previous sync",
        )
    failures = [f"forbidden to {what}" for what in health.forbidden] + list(health.write_errors)
    if failures:
        return api_conditions.Verdict(
            ConditionType.READY, "False", Reason.WRITE_FAILED, "; ".join(failures)[:1024]
        )
    return api_conditions.Verdict(
        ConditionType.READY, "True", Reason.INVENTORY_CURRENT, "inventory is complete and current"
    )


def _names(names: Iterable[str]) -> str:
    ordered = sorted(names)
    shown = ", ".join(ordered[:MAX_NAMES_IN_MESSAGE])
    more = len(ordered) - MAX_NAMES_IN_MESSAGE
    return f"{shown} and {more} more" if more > 0 else shown


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _degraded(health: OperatorHealth, problems: _Problems) -> api_conditions.Verdict:
    if not health.synced:
        return api_conditions.Verdict(
            ConditionType.DEGRADED, "Unknown", Reason.INDEXING, "not known before the first sync"
        )
    found: list[tuple[str, str]] = []
    if problems.unhealthy:
        count = sum(problems.unhealthy.values())
        found.append(
            (
                Reason.UNHEALTHY_GPUS,
                f"{_plural(count, 'unhealthy GPU')} on {_names(problems.unhealthy)}",
            )
        )
    if problems.not_ready:
        found.append(
            (
                Reason.NODES_NOT_READY,
                f"{_plural(len(problems.not_ready), 'GPU node')} not Ready: "
                f"{_names(problems.not_ready)}",
            )
        )
    if problems.stale:
        found.append(
            (
                Reason.AGENTS_STALE,
                f"{_plural(len(problems.stale), 'agent')} stale, missing or invalid on "
                f"{_names(problems.stale)}",
            )
        )
    if not found:
        return api_conditions.Verdict(
            ConditionType.DEGRADED, "False", Reason.ALL_HEALTHY, "all GPU nodes are healthy"
        )
    reason = found[0][0] if len(found) == 1 else Reason.MULTIPLE_PROBLEMS
    return api_conditions.Verdict(
        ConditionType.DEGRADED, "True", reason, "; ".join(m for _, m in found)[:1024]
    )


def _reconciling(health: OperatorHealth) -> api_conditions.Verdict:
    if not health.synced:
        return api_conditions.Verdict(
            ConditionType.RECONCILING, "True", Reason.INITIAL_SYNC, "first listing under way"
        )
    return api_conditions.Verdict(
        ConditionType.RECONCILING, "False", Reason.RECONCILED, "status reflects the cluster"
    )


def _stalled(health: OperatorHealth) -> api_conditions.Verdict:
    if health.forbidden:
        what = ", ".join(health.forbidden)
        return api_conditions.Verdict(
            ConditionType.STALLED,
            "True",
            Reason.FORBIDDEN,
            f"the API server forbids the operator to {what}; check its RBAC"[:1024],
        )
    if health.spec_error:
        return api_conditions.Verdict(
            ConditionType.STALLED, "True", Reason.INVALID_SPEC, health.spec_error[:1024]
        )
    return api_conditions.Verdict(
        ConditionType.STALLED, "False", Reason.NOT_STALLED, "the operator is working"
    )
