"""Node facts + spec -> the desired GPUInventory status, and each GPUNode's `status.kubernetes`.

Pure: no I/O. `now` is passed in; the same inputs always give the same status, so the writer
can compare and skip.

Rules that a reader of the CR relies on:
- a *GPU node* has capacity of some resource in `spec.resourceNames`; only those get facts;
- headline numbers count `spec.primaryResource`; every resource name gets its own totals, one
  row per source (DevicePlugin nodes, DRA nodes), and the headline adds both;
- `available = allocatable - allocated`, floored at 0 per node (`accounting.ResourceCounts`);
- `status.nodes` lists every GPU node up to `spec.maxNodeRows`; beyond it, only the nodes that
  need attention (up to the same number), and `nodesOmitted` counts the rest, so the object
  stays small at any cluster size;
- every condition, and the status itself, carry the generation they were computed for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

from gpu_inventory.api import conditions as api_conditions
from gpu_inventory.api.models import (
    MAX_LABELS,
    MAX_PRODUCTS,
    MAX_RESOURCE_NAMES,
    Condition,
    GPUInventorySpec,
    GPUInventoryStatus,
    InventorySummary,
    KubernetesView,
    NodeResource,
    NodeRow,
    ProductTotals,
    ResourceTotals,
    SkippedObjects,
)
from gpu_inventory.operator import accounting, verdicts
from gpu_inventory.operator.facts import NodeFacts

_MAX_RESOURCE_ROWS: Final = MAX_RESOURCE_NAMES * 4


def desired_status(
    facts: Mapping[str, NodeFacts],
    spec: GPUInventorySpec,
    *,
    generation: int | None,
    existing: GPUInventoryStatus | None,
    health: verdicts.OperatorHealth,
    malformed_pods: Sequence[str],
    skipped_pods: int,
    last_sync_time: datetime | None,
    now: datetime,
) -> GPUInventoryStatus:
    """The whole status, from complete listings only (the caller checks the phase)."""
    ordered = [facts[name] for name in sorted(facts)]
    by_source = {
        source: accounting.sum_totals(f.resources for f in ordered if f.source == source)
        for source in ("DevicePlugin", "DRA")
    }
    headline = accounting.sum_totals(
        {spec.primary_resource: totals[spec.primary_resource]}
        for totals in by_source.values()
        if spec.primary_resource in totals
    ).get(spec.primary_resource, accounting.ResourceCounts())
    problems = _problems(ordered, malformed_pods)
    rows, omitted = _rows(ordered, spec.max_node_rows)
    products = _products(ordered)
    return GPUInventoryStatus(
        observed_generation=generation,
        last_sync_time=last_sync_time,
        summary=InventorySummary(
            nodes=len(ordered),
            ready_nodes=sum(f.ready for f in ordered),
            gpus=sum(f.gpus for f in ordered),
            capacity=headline.capacity,
            allocatable=headline.allocatable,
            allocated=headline.allocated,
            available=headline.available,
            unhealthy_gpus=sum(f.unhealthy for f in ordered),
            stale_agents=len(problems.stale),
            products=[p.product for p in products],
        ),
        resources=sorted(
            (
                ResourceTotals(
                    name=name,
                    source=source,
                    capacity=t.capacity,
                    allocatable=t.allocatable,
                    allocated=t.allocated,
                    available=t.available,
                )
                for source, totals in by_source.items()
                for name, t in totals.items()
            ),
            key=lambda row: (row.name, row.source),
        )[:_MAX_RESOURCE_ROWS],
        products=products,
        nodes=rows,
        nodes_omitted=omitted,
        skipped=SkippedObjects(pods=skipped_pods, nodes=sum(1 for f in ordered if f.malformed)),
        conditions=_conditions(
            existing,
            [*verdicts.reconciliation(health), verdicts.degraded(problems)],
            generation,
            now,
        ),
    )


def waiting_status(
    existing: GPUInventoryStatus | None,
    *,
    generation: int | None,
    health: verdicts.OperatorHealth,
    now: datetime,
) -> GPUInventoryStatus:
    """The status while listings or a refresh are under way: the previous numbers, untouched
    (they are old, not wrong; `lastSyncTime` says how old), and conditions that say why."""
    base = existing if existing is not None else GPUInventoryStatus()
    found = {c.type for c in base.conditions}
    judged = verdicts.reconciliation(health)
    if "Degraded" not in found:
        judged.append(verdicts.not_known_yet())
    return base.model_copy(
        update={
            "observed_generation": generation,
            "conditions": _conditions(base, judged, generation, now),
        }
    )


def _conditions(
    existing: GPUInventoryStatus | None,
    judged: Sequence[api_conditions.Verdict],
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Apply the verdicts; every condition carries `generation`, as the status itself does."""
    now = now.replace(microsecond=0)
    current = list(existing.conditions) if existing is not None else []
    order = {t: i for i, t in enumerate(("Ready", "Degraded", "Reconciling", "Stalled"))}
    updated = api_conditions.apply_verdicts(
        current, sorted(judged, key=lambda v: order.get(v.type, 9)), generation=generation, now=now
    )
    return [c.model_copy(update={"observed_generation": generation}) for c in updated]


def _problems(
    ordered: Sequence[NodeFacts], malformed_pods: Sequence[str]
) -> verdicts.FleetProblems:
    problems = verdicts.FleetProblems()
    for f in ordered:
        if f.unhealthy:
            problems.unhealthy[f.name] = f.unhealthy
        if not f.ready:
            problems.not_ready.append(f.name)
        if f.agent_problem:
            problems.stale.append(f.name)
        problems.malformed.extend(f.malformed)
    problems.malformed.extend(malformed_pods)
    return problems


def _rows(ordered: Sequence[NodeFacts], limit: int) -> tuple[list[NodeRow], int]:
    shown = ordered if len(ordered) <= limit else [f for f in ordered if f.needs_attention][:limit]
    return [_row(f) for f in shown], len(ordered) - len(shown)


def _row(f: NodeFacts) -> NodeRow:
    return NodeRow(
        name=f.name,
        product=f.product,
        ready=f.ready,
        allocatable=f.primary.allocatable,
        allocated=f.primary.allocated,
        gpus=f.gpus,
        unhealthy=f.unhealthy,
        agent=f.agent,
        source=f.source,
    )


def _products(ordered: Sequence[NodeFacts]) -> list[ProductTotals]:
    totals: dict[str, list[int]] = {}  # product -> [nodes, gpus, allocatable, allocated, avail]
    for f in ordered:
        acc = totals.setdefault(f.product, [0, 0, 0, 0, 0])
        for i, value in enumerate(
            (1, f.gpus, f.primary.allocatable, f.primary.allocated, f.primary.available)
        ):
            acc[i] += value
    return [
        ProductTotals(
            product=product,
            nodes=acc[0],
            gpus=acc[1],
            allocatable=acc[2],
            allocated=acc[3],
            available=acc[4],
        )
        for product, acc in sorted(totals.items())[:MAX_PRODUCTS]
    ]


def node_view(
    f: NodeFacts, *, labels: Sequence[tuple[str, str]], conditions: Sequence[tuple[str, bool]]
) -> KubernetesView:
    """The desired `status.kubernetes` of one GPUNode."""
    return KubernetesView(
        labels=dict(labels[:MAX_LABELS]),
        conditions=dict(conditions),
        gpu_resources=[
            NodeResource(
                name=name, capacity=t.capacity, allocatable=t.allocatable, allocated=t.allocated
            )
            for name, t in list(f.resources.items())[:MAX_RESOURCE_NAMES]
        ],
        allocated=f.primary.allocated,
        agent_state=f.agent,
        source=f.source,
    )
