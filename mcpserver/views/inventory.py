"""`get_gpu_inventory` and the `gpuinventory://cluster` resource.

Pure: no I/O. The answer is a superset of the legacy gateway's JSON (see `shapes`): the same
field names, types and meanings, plus additions.
"""

from __future__ import annotations

import bisect
import threading
from datetime import datetime

from gpu_inventory.api.models import GPU, GPUInventory, GPUInventoryStatus, GPUNode, NodeRow
from gpu_inventory.mcpserver import shapes
from gpu_inventory.mcpserver.snapshot import Snapshot
from gpu_inventory.mcpserver.views import arguments
from gpu_inventory.mcpserver.views.availability import require_inventory
from gpu_inventory.mcpserver.views.nodes import (
    GPUNodes,
    NodeFacts,
    free,
    gpu_names,
    is_sick,
    node_status,
    xid_events,
)


def cluster_summary(
    inventory: GPUInventory, status: GPUInventoryStatus, gpu_types: list[str]
) -> shapes.ClusterSummary:
    s = status.summary
    return shapes.ClusterSummary(
        total_nodes=s.nodes,
        total_gpus=s.gpus,
        gpus_allocatable=s.allocatable,
        gpus_allocated=s.allocated,
        gpus_available=s.available,
        gpu_types=gpu_types,
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


def gpu_out(gpu: GPU) -> shapes.GPUOut:
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
        recent_xids=len(xid_events(gpu)),
    )


def kubernetes_out(facts: NodeFacts) -> shapes.NodeKubernetes:
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
                available=free(r.allocatable, r.allocated),
            )
            for r in (view.gpu_resources if view else [])
        ],
    )


def node_out(facts: NodeFacts, *, include_k8s_metadata: bool, only_sick: bool) -> shapes.NodeOut:
    status = node_status(facts.gpunode)
    agent = status.agent if status else None
    driver = status.driver if status else None
    gpus = [g for g in facts.gpus if is_sick(g)] if only_sick else facts.gpus
    return shapes.NodeOut(
        node_name=facts.name,
        pod_name=agent.pod_name if agent else "",
        status=facts.status,
        kubernetes=kubernetes_out(facts) if include_k8s_metadata else None,
        gpus=[gpu_out(g) for g in gpus],
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


class AnswerMemo:
    """Remembers what does not change between calls on the same data.

    - each node's output and the length of its JSON, until its GPUNode object, inventory row or
      the primary resource (which picks the numbers) changes. The cache replaces a GPUNode
      object whenever the node changes, so identity tells a stale entry; rows are compared by
      value because every inventory write brings new row objects;
    - the cluster summary, until the snapshot changes (the cache publishes a new snapshot
      object on every change).

    With it, a big answer costs dictionary lookups instead of rebuilding ~10 models per node.
    Shared by the worker threads that run tool calls: a race on a node entry only builds it
    twice, and the GPU-name table, which is walked and pruned, is kept under a lock.
    """

    def __init__(self) -> None:
        self._nodes: dict[
            tuple[str, str, bool, bool], tuple[object, NodeRow | None, shapes.NodeOut, int]
        ]
        self._nodes = {}
        self._summary: tuple[object, shapes.ClusterSummary] | None = None
        self._gpu_names: dict[str, tuple[GPUNode, tuple[str, ...]]] = {}
        self._names_lock = threading.Lock()

    def node(
        self, nodes: GPUNodes, name: str, *, include_k8s_metadata: bool, only_sick: bool
    ) -> tuple[shapes.NodeOut, int]:
        """The node's output and the length of its compact JSON."""
        key = (name, nodes.primary, include_k8s_metadata, only_sick)
        gpunode, row = nodes.nodes.get(name), nodes.rows.get(name)
        entry = self._nodes.get(key)
        if entry is not None and entry[0] is gpunode and entry[1] == row:
            return entry[2], entry[3]
        out = node_out(
            nodes.facts(name), include_k8s_metadata=include_k8s_metadata, only_sick=only_sick
        )
        size = len(out.model_dump_json())
        self._nodes[key] = (gpunode, row, out, size)
        if len(self._nodes) > 8 * (len(nodes.nodes) + len(nodes.rows)) + 64:
            self._nodes.clear()  # deleted nodes pile up only this far
        return out, size

    def summary(
        self, snapshot: Snapshot, inventory: GPUInventory, nodes: GPUNodes
    ) -> shapes.ClusterSummary:
        held = self._summary
        if held is not None and held[0] is snapshot:
            return held[1]
        summary = cluster_summary(inventory, nodes.status, nodes.gpu_types(self._names(nodes)))
        self._summary = (snapshot, summary)
        return summary

    def _names(self, nodes: GPUNodes) -> dict[str, tuple[str, ...]]:
        """Every node's GPU names, recomputed only for GPUNodes that changed: the snapshot
        changes with every agent heartbeat, the names almost never."""
        names: dict[str, tuple[str, ...]] = {}
        with self._names_lock:
            for name, gpunode in nodes.nodes.items():
                entry = self._gpu_names.get(name)
                if entry is None or entry[0] is not gpunode:
                    entry = (gpunode, gpu_names(gpunode))
                    self._gpu_names[name] = entry
                names[name] = entry[1]
            if len(self._gpu_names) > 2 * len(nodes.nodes) + 64:
                self._gpu_names = {n: e for n, e in self._gpu_names.items() if n in nodes.nodes}
        return names


def inventory_answer(
    snapshot: Snapshot,
    *,
    now: datetime,
    max_staleness_seconds: float,
    include_k8s_metadata: bool = True,
    node: str | None = None,
    product: str | None = None,
    only_unhealthy_or_degraded: bool = False,
    limit: int | None = None,
    cursor: str | None = None,
    memo: AnswerMemo | None = None,
    text_budget: int = arguments.TEXT_BUDGET,
) -> shapes.InventoryAnswer:
    """The legacy-compatible inventory, filtered by node, product and health, one page at a time.

    Nodes come sorted by name; a page holds `limit` of them, or without a limit as many as fit
    in `text_budget` characters of JSON (at least one), and `next_cursor` continues after the
    last. With `only_unhealthy_or_degraded`, only nodes with an unhealthy or degraded GPU are
    listed, each with just those GPUs. `memo` makes repeated big answers cheap.
    """
    memo = memo or AnswerMemo()
    arguments.check_limit(limit)
    node = arguments.check_text("node", node)
    product = arguments.check_text("product", product)
    cursor = arguments.check_text("cursor", cursor)
    filters = arguments.filters_fingerprint(node, product, only_unhealthy_or_degraded)
    after = arguments.Cursor.decode(cursor, filters=filters).after if cursor else None
    trusted = require_inventory(snapshot, now=now, max_staleness_seconds=max_staleness_seconds)
    nodes = GPUNodes.of(snapshot.nodes, trusted.inventory, trusted.status)
    if node is not None:
        arguments.check_node(node, nodes)
        names = [node]
    else:
        names = nodes.names()
    if product is not None:
        names = arguments.filter_product(product, names, nodes)
    if only_unhealthy_or_degraded:
        names = [n for n in names if nodes.is_sick(n)]
    rest = names[bisect.bisect_right(names, after) if after is not None else 0 :]
    answer = shapes.InventoryAnswer(
        cluster_summary=memo.summary(snapshot, trusted.inventory, nodes),
        nodes=[],
        nodes_matched=len(names),
        truncated=False,
        next_cursor=None,
        **trusted.freshness(),
    )
    outs: dict[str, tuple[shapes.NodeOut, int]] = {}

    def built(name: str) -> tuple[shapes.NodeOut, int]:
        if name not in outs:
            outs[name] = memo.node(
                nodes,
                name,
                include_k8s_metadata=include_k8s_metadata,
                only_sick=only_unhealthy_or_degraded,
            )
        return outs[name]

    taken = arguments.fit(
        rest,
        lambda name: built(name)[1],
        limit=limit,
        room=arguments.room(text_budget, answer),
    )
    page = rest[:taken]
    more = taken < len(rest)
    return answer.model_copy(
        update={
            "nodes": [built(name)[0] for name in page],
            "truncated": more,
            "next_cursor": arguments.Cursor(page[-1], filters).encode() if more else None,
        }
    )


def inventory_resource(
    snapshot: Snapshot, *, now: datetime, max_staleness_seconds: float
) -> shapes.InventoryResource:
    """The summary published as the `gpuinventory://cluster` resource."""
    trusted = require_inventory(snapshot, now=now, max_staleness_seconds=max_staleness_seconds)
    nodes = GPUNodes.of(snapshot.nodes, trusted.inventory, trusted.status)
    return shapes.InventoryResource(
        cluster_summary=cluster_summary(trusted.inventory, trusted.status, nodes.gpu_types()),
        **trusted.freshness(),
    )
