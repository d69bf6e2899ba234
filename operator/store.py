"""The projection store: what the watches said, kept small, and what changed for each writer.

Pure: no I/O; time comes in as `now` (monotonic seconds). One object lives in the operator's
runtime; kopf's event handlers feed it, the two writers read it. Everything runs on the
operator's event loop, so there is no lock: no method awaits.

- One `tables.Table` per kind: every listing (the first, and each relist) is applied as one
  complete snapshot, so nothing derived from half a listing is ever visible (see `tables`).
- Per-node allocated sums are kept incrementally from the pods table: a pod event adjusts its
  node's sums in O(1), so a write never walks 150,000 pods.
- As in Kueue's cache, what changed is recorded for its consumers: the inventory writer (a
  flag and the nodes whose facts to recompute) and the GPUNode writer (the nodes whose
  `status.kubernetes` may differ); each is woken through a callback.
- The spec shapes projections (`projections.Projector`). When it changes, the kinds it shapes
  are marked for a refresh: the inventory writer re-reads them with one LIST each.
- DRA's kinds (ResourceSlices, ResourceClaims, DeviceClasses) live in `dra.index.DraIndex`,
  fed the same way, and only where the API server serves them (`watch_dra`): the phase never
  waits for a kind nobody watches.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Final, TypeVar

from gpu_inventory.operator.dra.accounting import NodeCounts
from gpu_inventory.operator.dra.index import DraIndex
from gpu_inventory.operator.dra.projections import (
    ClaimProjection,
    ClassProjection,
    SliceProjection,
)
from gpu_inventory.operator.projections import (
    DEFAULT_PROJECTOR,
    GPUNodeProjection,
    InventoryProjection,
    NodeProjection,
    PodProjection,
    Projector,
)
from gpu_inventory.operator.tables import Changed, Replaced, Stream, Table

INVENTORY_KEY: Final = "cluster"

_V = TypeVar("_V")


class Kind(enum.Enum):
    PODS = "pods"
    NODES = "nodes"
    GPUNODES = "gpunodes"
    INVENTORY = "gpuinventories"
    RESOURCE_SLICES = "resourceslices"
    RESOURCE_CLAIMS = "resourceclaims"
    DEVICE_CLASSES = "deviceclasses"


CORE_KINDS: Final = frozenset({Kind.PODS, Kind.NODES, Kind.GPUNODES, Kind.INVENTORY})
DRA_KINDS: Final = frozenset({Kind.RESOURCE_SLICES, Kind.RESOURCE_CLAIMS, Kind.DEVICE_CLASSES})


class Phase(enum.Enum):
    """How complete the store is; only CURRENT numbers are ever published."""

    INDEXING = "Indexing"
    """The first listing of some kind is not complete yet."""
    RELISTING = "Relisting"
    """A watch was lost and its kind is being listed again."""
    REFRESHING = "Refreshing"
    """The spec changed how objects are projected; they are being read again."""
    CURRENT = "Current"


def _nothing() -> None:
    return None


class Store:
    """Pods, nodes, GPUNodes and the inventory as projections, with incremental node sums."""

    def __init__(self, *, projector: Projector = DEFAULT_PROJECTOR) -> None:
        self.pods: Table[PodProjection] = Table()
        self.nodes: Table[NodeProjection] = Table()
        self.gpunodes: Table[GPUNodeProjection] = Table()
        self.inventory_table: Table[InventoryProjection] = Table()
        self.dra = DraIndex()
        self.watched: frozenset[Kind] = CORE_KINDS
        self.dra_refused: tuple[str, ...] = ()
        """What RBAC refuses of DRA's kinds where the API serves them (e.g. "list deviceclasses"):
        the inventory's conditions say its numbers leave out DRA GPUs."""
        """The kinds kopf watches: the core four, and DRA's where the API serves it."""
        self._tables: dict[Kind, Table[Any]] = {
            Kind.PODS: self.pods,
            Kind.NODES: self.nodes,
            Kind.GPUNODES: self.gpunodes,
            Kind.INVENTORY: self.inventory_table,
            Kind.RESOURCE_SLICES: self.dra.slices,
            Kind.RESOURCE_CLAIMS: self.dra.claims,
            Kind.DEVICE_CLASSES: self.dra.classes,
        }
        self.projector = projector
        self.allocated: dict[str, dict[str, int]] = {}
        """node name -> resource name -> sum of requests of the pods bound there."""
        self._pods_on: dict[str, int] = {}
        self._malformed: dict[str, tuple[str, ...]] = {}
        """pod key -> why its GPU resources were left out (kept as pods come and go)."""
        self.pending_refresh: set[Kind] = set()
        """Kinds to read again because the spec changed how they are projected."""
        self._refreshing: set[Kind] = set()
        self.inventory_dirty = True
        self.first_pod_event: float | None = None
        """Monotonic time of the oldest pod change not yet reflected in a written status."""
        self._facts_dirty: set[str] = set()
        self._views_dirty: set[str] = set()
        self.on_inventory_change: Callable[[], None] = _nothing
        self.on_views_change: Callable[[], None] = _nothing

    # --- reading ----------------------------------------------------------------------------------

    def table(self, kind: Kind) -> Table[Any]:
        return self._tables[kind]

    def watch_dra(self) -> None:
        """The API server serves resource.k8s.io/v1: its kinds are watched, and waited for."""
        self.watched = CORE_KINDS | DRA_KINDS

    def dra_counts(self, name: str) -> NodeCounts | None:
        """What DRA says of node `name`'s GPUs, under the spec's resource names."""
        return self.dra.counts(name, self.projector.matcher.matches)

    def is_gpu_node(self, name: str) -> bool:
        """GPU capacity on the Node (device plugin), or devices of a GPU driver (DRA)."""
        node = self.nodes.live.get(name)
        return node is not None and (node.has_gpus or self.dra.has_devices(name))

    @property
    def inventory(self) -> InventoryProjection | None:
        return self.inventory_table.live.get(INVENTORY_KEY)

    def phase(self) -> Phase:
        kinds = [self.table(kind) for kind in sorted(self.watched, key=_order)]
        if not all(table.synced for table in kinds):
            return Phase.INDEXING
        if any(table.gathering for table in kinds):
            return Phase.RELISTING
        if self.pending_refresh or self._refreshing:
            return Phase.REFRESHING
        return Phase.CURRENT

    def waiting_for(self) -> list[str]:
        """The kinds whose listing is not complete (for messages)."""
        return [
            kind.value for kind in sorted(self.watched, key=_order) if self.table(kind).gathering
        ]

    def malformed_pods(self) -> list[str]:
        """Why GPU resources of pods were left out, one line per resource."""
        return [why for key in sorted(self._malformed) for why in self._malformed[key]]

    def skipped_pods(self) -> int:
        return len(self._malformed)

    def counts(self) -> dict[str, int]:
        """Objects held per kind, for the metrics gauge."""
        return {
            "pods": len(self.pods.live),
            "nodes": len(self.nodes.live),
            "gpunodes": len(self.gpunodes.live),
            "gpuinventories": len(self.inventory_table.live),
            "skipped_pods": self.skipped_pods(),
            "resourceslices": len(self.dra.slices.live),
            "resourceclaims": len(self.dra.claims.live),
            "deviceclasses": len(self.dra.classes.live),
        }

    # --- kopf's streams ---------------------------------------------------------------------------

    def pod(self, key: str, value: PodProjection | None, stream: Stream, *, now: float) -> None:
        self._pods_update(self.pods.apply(key, value, stream), now)

    def node(self, name: str, uid: str, value: NodeProjection | None, stream: Stream) -> None:
        self._nodes_update(self.nodes.apply(name, value, stream, uid=uid))

    def gpunode(self, name: str, uid: str, value: GPUNodeProjection | None, stream: Stream) -> None:
        self._gpunodes_update(self.gpunodes.apply(name, value, stream, uid=uid))

    def inventory_event(self, uid: str, value: InventoryProjection | None, stream: Stream) -> None:
        self._inventory_update(self.inventory_table.apply(INVENTORY_KEY, value, stream, uid=uid))

    def resource_slice(
        self, name: str, uid: str, value: SliceProjection | None, stream: Stream
    ) -> None:
        self._dispatch(Kind.RESOURCE_SLICES, self.dra.slices.apply(name, value, stream, uid=uid), 0)

    def resource_claim(self, key: str, value: ClaimProjection | None, stream: Stream) -> None:
        self._dispatch(Kind.RESOURCE_CLAIMS, self.dra.claims.apply(key, value, stream), 0)

    def device_class(
        self, name: str, uid: str, value: ClassProjection | None, stream: Stream
    ) -> None:
        self._dispatch(Kind.DEVICE_CLASSES, self.dra.classes.apply(name, value, stream, uid=uid), 0)

    def listing_over(self, kind: Kind, epoch: int, count: int, *, now: float) -> None:
        """kopf's LIST of `kind` in stream `epoch` is over and yielded `count` objects."""
        table = self.table(kind)
        before = (table.synced, table.gathering)
        update = table.listing_over(epoch, count)
        self._dispatch(kind, update, now)
        if (table.synced, table.gathering) != before:  # the phase moved: both writers may write
            self._touch_inventory()
            if self._views_dirty:
                self.on_views_change()

    def _dispatch(self, kind: Kind, update: object, now: float) -> None:
        if kind is Kind.PODS:
            self._pods_update(update, now)  # type: ignore[arg-type]
        elif kind is Kind.NODES:
            self._nodes_update(update)  # type: ignore[arg-type]
        elif kind is Kind.GPUNODES:
            self._gpunodes_update(update)  # type: ignore[arg-type]
        elif kind is Kind.INVENTORY:
            self._inventory_update(update)  # type: ignore[arg-type]
        elif kind is Kind.RESOURCE_SLICES:
            self._mark(self.dra.slices_update(update))  # type: ignore[arg-type]
        elif kind is Kind.RESOURCE_CLAIMS:
            self._mark(self.dra.claims_update(update))  # type: ignore[arg-type]
        else:
            self._mark(self.dra.classes_update(update))  # type: ignore[arg-type]

    # --- the operator's own reads and writes ------------------------------------------------------

    def gpunode_answer(self, value: GPUNodeProjection) -> None:
        """The server's answer to our own GPUNode create or patch."""
        self._gpunodes_update(self.gpunodes.answer(value.name, value), views=False)

    def gpunode_gone(self, name: str) -> None:
        """Our write found the GPUNode gone (404)."""
        self._gpunodes_update(self.gpunodes.answer(name, None))

    def inventory_answer(self, value: InventoryProjection | None) -> None:
        """The server's answer to our own GPUInventory read, create or patch (None: absent)."""
        self._inventory_update(self.inventory_table.answer(INVENTORY_KEY, value))

    # --- refreshes after a spec change ------------------------------------------------------------

    def begin_refresh(self, kind: Kind) -> bool:
        """Start re-reading `kind` (the writer LISTs next); False while its listing runs."""
        if not self.table(kind).begin_refresh():
            return False
        self.pending_refresh.discard(kind)
        self._refreshing.add(kind)
        return True

    def finish_refresh(self, kind: Kind, listed: Mapping[str, object], *, now: float) -> None:
        self._refreshing.discard(kind)
        update = self.table(kind).finish_refresh(listed)
        if update is None:
            self.pending_refresh.add(kind)  # a relist overtook it; read again afterwards
        self._dispatch(kind, update, now)
        self._touch_inventory()

    def abort_refresh(self, kind: Kind) -> None:
        """The LIST failed: keep what we have, and try again."""
        self.table(kind).abort_refresh()
        self._refreshing.discard(kind)
        self.pending_refresh.add(kind)

    # --- what changed -----------------------------------------------------------------------------

    def take_facts_dirty(self) -> set[str]:
        dirty, self._facts_dirty = self._facts_dirty, set()
        return dirty

    def take_views_dirty(self) -> set[str]:
        dirty, self._views_dirty = self._views_dirty, set()
        return dirty

    def mark_views(self, names: Iterable[str]) -> None:
        """Ask the GPUNode writer to look at these nodes again (e.g. a write to retry)."""
        self._views_dirty.update(names)

    def mark_inventory(self) -> None:
        """Ask the inventory writer to compute the status again."""
        self._touch_inventory()

    def _touch_inventory(self) -> None:
        self.inventory_dirty = True
        self.on_inventory_change()

    def _mark(self, names: Collection[str], *, views: bool = True) -> None:
        if not names:
            return
        self._facts_dirty.update(names)
        self._touch_inventory()
        if views:
            self._views_dirty.update(names)
            self.on_views_change()

    # --- applying updates -------------------------------------------------------------------------

    def _pods_update(
        self, update: Changed[PodProjection] | Replaced[PodProjection] | None, now: float
    ) -> None:
        if update is None:
            return
        if isinstance(update, Changed):
            touched = set()
            if update.old is not None:
                self._unbind(update.old)
                touched.add(update.old.node)
            self._malformed.pop(update.key, None)
            if update.new is not None:
                self._bind(update.new)
                touched.add(update.new.node)
                if update.new.malformed:
                    self._malformed[update.key] = update.new.malformed
        else:
            before = self.allocated
            self.allocated, self._pods_on = {}, {}
            self._malformed = {k: p.malformed for k, p in update.new.items() if p.malformed}
            for pod in update.new.values():
                self._bind(pod)
            touched = {
                node
                for node in before.keys() | self.allocated.keys()
                if before.get(node) != self.allocated.get(node)
            }
        if self.first_pod_event is None:
            self.first_pod_event = now
        self._mark(touched)
        self._touch_inventory()  # skipped counts may move while no sum does

    def _bind(self, pod: PodProjection) -> None:
        sums = self.allocated.setdefault(pod.node, {})
        for name, count in pod.requests:
            sums[name] = sums.get(name, 0) + count
        self._pods_on[pod.node] = self._pods_on.get(pod.node, 0) + 1

    def _unbind(self, pod: PodProjection) -> None:
        sums = self.allocated[pod.node]
        for name, count in pod.requests:
            left = sums[name] - count
            if left:
                sums[name] = left
            else:
                del sums[name]
        remaining = self._pods_on[pod.node] - 1
        if remaining:
            self._pods_on[pod.node] = remaining
        else:
            del self._pods_on[pod.node]
            del self.allocated[pod.node]

    def _nodes_update(
        self, update: Changed[NodeProjection] | Replaced[NodeProjection] | None
    ) -> None:
        if update is not None:
            self._mark(_changed_keys(update))

    def _gpunodes_update(
        self,
        update: Changed[GPUNodeProjection] | Replaced[GPUNodeProjection] | None,
        *,
        views: bool = True,
    ) -> None:
        if update is None:
            return
        if isinstance(update, Changed):
            if _agent_side(update.old) != _agent_side(update.new):
                self._mark([update.key], views=views)
            elif views:
                self._views_dirty.add(update.key)  # our own view echoing back: compare again
                self.on_views_change()
        else:
            self._mark(_changed_keys(update))

    def _inventory_update(
        self, update: Changed[InventoryProjection] | Replaced[InventoryProjection] | None
    ) -> None:
        if update is None:
            return
        old = update.old if isinstance(update, Changed) else update.old.get(INVENTORY_KEY)
        new = self.inventory
        old_spec = old.spec if old is not None else None
        if new is not None and new.spec != old_spec:
            self._apply_spec(Projector.for_spec(new.spec))
            self._mark(self.nodes.live)  # views carry what the spec selects
        self._touch_inventory()

    def _apply_spec(self, projector: Projector) -> None:
        old, self.projector = self.projector, projector
        if projector.matcher != old.matcher:
            self.pending_refresh.update((Kind.PODS, Kind.NODES))
        elif projector.labels != old.labels:
            self.pending_refresh.add(Kind.NODES)
        if projector.drivers != old.drivers:
            self.pending_refresh.update(self.watched & {Kind.RESOURCE_SLICES, Kind.RESOURCE_CLAIMS})


def _order(kind: Kind) -> int:
    return list(Kind).index(kind)


def _changed_keys(update: Changed[_V] | Replaced[_V]) -> set[str]:
    if isinstance(update, Changed):
        return {update.key}
    old, new = update.old, update.new
    return {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


def _agent_side(gpunode: GPUNodeProjection | None) -> tuple[object, ...] | None:
    """What the inventory status reads of a GPUNode (not our own `status.kubernetes`)."""
    return None if gpunode is None else (gpunode.uid, gpunode.agent, gpunode.agent_error)
