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

from collections.abc import Sequence
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
    ProductTotals,
    ResourceTotals,
    SkippedObjects,
)
from gpu_inventory.operator import verdicts
from gpu_inventory.operator.aggregates import Aggregates, FactsCache
from gpu_inventory.operator.facts import NodeFacts

_MAX_RESOURCE_ROWS: Final = MAX_RESOURCE_NAMES * 4


def desired_status(
    cache: FactsCache,
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
    """The whole status, from complete listings only (the caller checks the phase). It reads
    the cache's running totals: O(products + rows), whatever the number of nodes."""
    totals = cache.totals
    headline = [0, 0, 0, 0]  # both sources' rows of the primary resource
    for (name, _source), counts in totals.resources.items():
        if name == spec.primary_resource:
            headline = [a + b for a, b in zip(headline, counts, strict=True)]
    rows = list(totals.shown_rows(spec.max_node_rows))
    products = _products(totals)
    problems = verdicts.FleetProblems(
        unhealthy=totals.unhealthy,
        not_ready=list(totals.not_ready),
        stale=list(totals.stale),
        malformed=[why for name in sorted(totals.malformed) for why in totals.malformed[name]]
        + list(malformed_pods),
        notes=totals.notes,
        advertised_twice=totals.advertised_twice,
        dra_refused=health.dra_refused,
    )
    return GPUInventoryStatus(
        observed_generation=generation,
        last_sync_time=last_sync_time,
        summary=InventorySummary(
            nodes=totals.nodes,
            ready_nodes=totals.ready_nodes,
            gpus=totals.gpus,
            capacity=headline[0],
            allocatable=headline[1],
            allocated=headline[2],
            available=headline[3],
            unhealthy_gpus=totals.unhealthy_gpus,
            stale_agents=len(totals.stale),
            products=[p.product for p in products],
        ),
        resources=[
            ResourceTotals(
                name=name,
                source=source,
                capacity=c[0],
                allocatable=c[1],
                allocated=c[2],
                available=c[3],
            )
            for (name, source), c in sorted(totals.resources.items())[:_MAX_RESOURCE_ROWS]
        ],
        products=products,
        nodes=rows,
        nodes_omitted=totals.nodes - len(rows),
        skipped=SkippedObjects(pods=skipped_pods, nodes=len(totals.malformed)),
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


def _products(totals: Aggregates) -> list[ProductTotals]:
    return [
        ProductTotals(
            product=product,
            nodes=acc[0],
            gpus=acc[1],
            allocatable=acc[2],
            allocated=acc[3],
            available=acc[4],
        )
        for product, acc in sorted(totals.products.items())[:MAX_PRODUCTS]
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
