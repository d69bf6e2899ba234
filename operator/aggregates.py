"""Cluster totals kept up to date node by node: a changed node costs O(1), a status O(products).

Pure: no I/O. `FactsCache` adds a node's facts here when they appear and takes them out when
they change or go, so the totals, the per-resource and per-product sums, the fleet's problems
and the row of every node are always current. Computing a status at 5,000 nodes then costs a
few milliseconds instead of walking every node (about 80 ms, measured, before this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Final

from gpu_inventory.api.models import GPUInventorySpec, NodeRow, Source
from gpu_inventory.operator.dra.accounting import NodeCounts
from gpu_inventory.operator.facts import NodeFacts, node_facts
from gpu_inventory.operator.projections import GPUNodeProjection, NodeProjection

_NO_SUMS: Final[Mapping[str, int]] = {}


def _no_dra(_: str) -> NodeCounts | None:
    return None


class Aggregates:
    """Sums over every GPU node's facts; `add` and `remove` keep them exact."""

    def __init__(self) -> None:
        self.nodes = 0
        self.ready_nodes = 0
        self.gpus = 0
        self.unhealthy_gpus = 0
        self.resources: dict[tuple[str, Source], list[int]] = {}
        """(resource, source) -> [capacity, allocatable, allocated, available]; available floored
        per node. One row per source: a node with both kinds adds to each its own counts."""
        self.products: dict[str, list[int]] = {}
        """product -> [nodes, gpus, allocatable, allocated, available] of the primary resource."""
        self.unhealthy: dict[str, int] = {}
        self.not_ready: set[str] = set()
        self.stale: set[str] = set()
        self.malformed: dict[str, tuple[str, ...]] = {}
        self.notes: dict[str, str] = {}
        self.advertised_twice: dict[str, str] = {}
        """Nodes whose device plugin and DRA driver seem to offer the same GPUs (node -> why)."""
        self.attention: set[str] = set()
        self.rows: dict[str, NodeRow] = {}
        """The row of every GPU node, built once per change of its facts."""

    def add(self, f: NodeFacts) -> None:
        self._apply(f, 1)
        self.rows[f.name] = row(f)
        _mark(self.unhealthy, f.name, f.unhealthy)
        _flag(self.not_ready, f.name, not f.ready)
        _flag(self.stale, f.name, f.agent_problem)
        _flag(self.attention, f.name, f.needs_attention)
        if f.malformed:
            self.malformed[f.name] = f.malformed
        if f.agent_note:
            self.notes[f.name] = f.agent_note
        if f.advertised_twice:
            self.advertised_twice[f.name] = f.advertised_twice

    def remove(self, f: NodeFacts) -> None:
        self._apply(f, -1)
        del self.rows[f.name]
        self.unhealthy.pop(f.name, None)
        self.not_ready.discard(f.name)
        self.stale.discard(f.name)
        self.attention.discard(f.name)
        self.malformed.pop(f.name, None)
        self.notes.pop(f.name, None)
        self.advertised_twice.pop(f.name, None)

    def _apply(self, f: NodeFacts, sign: int) -> None:
        self.nodes += sign
        self.ready_nodes += sign * f.ready
        self.gpus += sign * f.gpus
        self.unhealthy_gpus += sign * f.unhealthy
        for source, resources in f.by_source:
            for name, counts in resources.items():
                key = (name, source)
                acc = self.resources.setdefault(key, [0, 0, 0, 0])
                acc[0] += sign * counts.capacity
                acc[1] += sign * counts.allocatable
                acc[2] += sign * counts.allocated
                acc[3] += sign * counts.available
                if not any(acc):
                    del self.resources[key]
        p = f.primary
        acc = self.products.setdefault(f.product, [0, 0, 0, 0, 0])
        for index, value in enumerate((1, f.gpus, p.allocatable, p.allocated, p.available)):
            acc[index] += sign * value
        if acc[0] == 0:
            del self.products[f.product]

    def shown_rows(self, limit: int) -> Iterator[NodeRow]:
        """Every row up to `limit` nodes; beyond, the rows that need attention (at most
        `limit`), by name."""
        names = self.rows if self.nodes <= limit else self.attention
        for name in sorted(names)[:limit]:
            yield self.rows[name]


def row(f: NodeFacts) -> NodeRow:
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


def _mark(table: dict[str, int], name: str, count: int) -> None:
    if count:
        table[name] = count


def _flag(names: set[str], name: str, flagged: bool) -> None:
    if flagged:
        names.add(name)


class FactsCache:
    """The facts of every GPU node, recomputed only where something changed or time passed."""

    def __init__(self) -> None:
        self.facts: dict[str, NodeFacts] = {}
        self.totals = Aggregates()
        self._spec: GPUInventorySpec | None = None

    def update(
        self,
        *,
        nodes: Mapping[str, NodeProjection],
        gpunodes: Mapping[str, GPUNodeProjection],
        allocated: Mapping[str, Mapping[str, int]],
        dirty: Iterable[str],
        spec: GPUInventorySpec,
        now: datetime,
        dra: Callable[[str], NodeCounts | None] = _no_dra,
    ) -> set[str]:
        """Recompute the `dirty` nodes, the expired ones, or all of them after a spec change;
        return the names whose facts changed. `dra` gives a node's DRA counts
        (`Store.dra_counts`): a GPU node advertises GPU capacity, or a GPU driver publishes
        devices on it."""
        if spec != self._spec:
            self._spec, self.facts, self.totals = spec, {}, Aggregates()
            names: set[str] = set(nodes)
        else:
            names = set(dirty)
            names.update(
                name
                for name, facts in self.facts.items()
                if facts.expires is not None and facts.expires <= now
            )
        changed: set[str] = set()
        for name in names:
            old = self.facts.pop(name, None)
            node = nodes.get(name)
            counts = dra(name) if node is not None else None
            new = None
            if node is not None and (node.has_gpus or counts is not None):
                new = node_facts(
                    node,
                    gpunodes.get(name),
                    allocated.get(name, _NO_SUMS),
                    spec,
                    now=now,
                    dra=counts,
                )
            if new == old:
                if old is not None:
                    self.facts[name] = old
                continue
            changed.add(name)
            if old is not None:
                self.totals.remove(old)
            if new is not None:
                self.facts[name] = new
                self.totals.add(new)
        return changed

    def next_expiry(self) -> datetime | None:
        """When the earliest facts expire (the writer wakes up then)."""
        return min((f.expires for f in self.facts.values() if f.expires is not None), default=None)
