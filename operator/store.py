"""The projection store: what the watches said, kept small, and what changed since the last write.

Pure: no I/O; time comes in as `now` (monotonic seconds). One object lives in kopf's `memo`;
event handlers feed it, the writer reads it. Everything runs on the operator's event loop, so
there is no lock: no method awaits.

As in Kueue's cache, mutators report what they changed: each returns whether the store moved,
marks the inventory dirty and notes which nodes' GPUNode views may differ. Per-node allocated
sums are kept incrementally: a pod event adjusts its node's sums in O(1), so a write never
walks 100,000 pods.

Listings. kopf hands listed objects to handlers with event type None and does not say when a
LIST is over, nor does a relist (after "410 Gone", e.g. when the API server restarts) report
the objects deleted meanwhile. The store therefore tracks, per kind:
- *synced*: the first listing is over (the kind was probed empty, a watch event arrived, or
  listing events went quiet for `settle` seconds);
- *relisted*: listing events arrived after sync. The writer then compares the store with one
  metadata-only LIST (`sweep`), dropping objects that are gone; objects touched by any event
  since the sweep began are kept, so the LIST's age cannot remove a newer object.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Collection
from typing import Final, TypeVar

from gpu_inventory.operator.projections import (
    GPUNodeProjection,
    InventoryProjection,
    LabelFilter,
    NodeProjection,
    PodProjection,
)


class Kind(enum.Enum):
    PODS = "pods"
    NODES = "nodes"
    GPUNODES = "gpunodes"
    INVENTORY = "gpuinventories"


INVENTORY_KEY: Final = "cluster"

_P = TypeVar("_P", NodeProjection, GPUNodeProjection)


@dataclasses.dataclass(slots=True)
class _Listing:
    """Listing bookkeeping of one kind."""

    started: float
    synced: bool = False
    expect_objects: bool | None = None
    """From the writer's probe: None until probed, then whether the API had any objects."""
    last_listing_event: float | None = None
    relisted: bool = False
    touched: set[str] | None = None
    """Keys touched by events while a sweep is under way (None when no sweep runs)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Changes:
    """What changed since the last `take_changes`."""

    inventory: bool
    nodes: frozenset[str]
    first_pod_event: float | None
    """Monotonic time of the oldest pod change not yet reflected in a write."""


class Projections:
    """Pods, nodes, GPUNodes and the inventory as projections, with incremental node sums."""

    def __init__(self, *, labels: LabelFilter | None = None, now: float = 0.0) -> None:
        self.pods: dict[str, PodProjection] = {}
        self.nodes: dict[str, NodeProjection] = {}
        self.gpunodes: dict[str, GPUNodeProjection] = {}
        self.inventory: InventoryProjection | None = None
        self.inventory_known = False
        """Whether `inventory` is known (from an event or a read), so None means "absent"."""
        self.allocated: dict[str, dict[str, int]] = {}
        """node name -> resource name -> sum of requests of the counted pods bound there."""
        self.pods_on: dict[str, int] = {}
        """node name -> how many occupying pods are bound there (to drop empty sums)."""
        self.skipped_pods: set[str] = set()
        """Keys of pods whose quantities could not be read; shown as a metric, never summed."""
        self.labels = labels or LabelFilter()
        self._listings = {kind: _Listing(started=now) for kind in Kind}
        self._dirty_inventory = True
        self._dirty_nodes: set[str] = set()
        self._first_pod_event: float | None = None
        self.on_change: Callable[[], None] = _nothing
        """Called after every change; the writer sets it to wake itself."""

    # --- pods -----------------------------------------------------------------------------------

    def pod_event(
        self, key: str, projection: PodProjection | None, *, listing: bool, now: float
    ) -> bool:
        """A pod was listed, added, modified (`projection`) or deleted/skipped (None).

        Pods that occupy nothing (no GPU requests, not counted) are not kept: most pods in a
        cluster ask for no GPU, and they would only cost memory.
        """
        self._note(Kind.PODS, key, listing=listing, now=now)
        self.skipped_pods.discard(key)
        old = self.pods.get(key)
        new = projection if projection is not None and projection.occupies else None
        if old == new:
            return False
        if old is not None:
            self._unbind(key, old)
        if new is not None:
            self.pods[key] = new
            self._bind(new)
        if self._first_pod_event is None:
            self._first_pod_event = now
        self._changed()
        return True

    def pod_skipped(self, key: str, *, listing: bool, now: float) -> bool:
        """A pod whose quantities cannot be read: never summed, remembered for the metric."""
        changed = self.pod_event(key, None, listing=listing, now=now)
        self.skipped_pods.add(key)
        return changed

    def _bind(self, pod: PodProjection) -> None:
        sums = self.allocated.setdefault(pod.node, {})
        for name, count in pod.requests:
            sums[name] = sums.get(name, 0) + count
        self.pods_on[pod.node] = self.pods_on.get(pod.node, 0) + 1
        self._dirty_nodes.add(pod.node)

    def _unbind(self, key: str, pod: PodProjection) -> None:
        del self.pods[key]
        sums = self.allocated[pod.node]
        for name, count in pod.requests:
            left = sums[name] - count
            if left:
                sums[name] = left
            else:
                del sums[name]
        remaining = self.pods_on[pod.node] - 1
        if remaining:
            self.pods_on[pod.node] = remaining
        else:
            del self.pods_on[pod.node]
            del self.allocated[pod.node]
        self._dirty_nodes.add(pod.node)

    # --- nodes and GPUNodes ---------------------------------------------------------------------

    def node_event(
        self,
        name: str,
        uid: str,
        projection: NodeProjection | None,
        *,
        listing: bool,
        now: float,
    ) -> bool:
        """A Node changed (`projection`) or was deleted/skipped (None, with its uid)."""
        self._note(Kind.NODES, name, listing=listing, now=now)
        if not _put(self.nodes, name, uid, projection):
            return False
        self._dirty_nodes.add(name)
        self._changed()
        return True

    def gpunode_event(
        self,
        name: str,
        uid: str,
        projection: GPUNodeProjection | None,
        *,
        listing: bool,
        now: float,
    ) -> bool:
        """A GPUNode changed (`projection`) or was deleted (None, with its uid)."""
        self._note(Kind.GPUNODES, name, listing=listing, now=now)
        return self._set_gpunode(name, uid, projection)

    def gpunode_written(self, projection: GPUNodeProjection) -> bool:
        """The server's answer to our own write: the freshest state we know."""
        return self._set_gpunode(projection.name, projection.uid, projection)

    def _set_gpunode(self, name: str, uid: str, projection: GPUNodeProjection | None) -> bool:
        old = self.gpunodes.get(name)
        if not _put(self.gpunodes, name, uid, projection):
            return False
        self._dirty_nodes.add(name)
        if _agent_side(old) != _agent_side(projection):
            self._changed()  # our own `status.kubernetes` echoing back moves no inventory number
        else:
            self.on_change()
        return True

    # --- the inventory --------------------------------------------------------------------------

    def inventory_event(
        self, projection: InventoryProjection | None, *, listing: bool, now: float
    ) -> bool:
        """The GPUInventory changed (`projection`) or was deleted (None)."""
        self._note(Kind.INVENTORY, INVENTORY_KEY, listing=listing, now=now)
        return self.inventory_read(projection)

    def inventory_read(self, projection: InventoryProjection | None) -> bool:
        """What a GET, create or patch returned (None: the object does not exist)."""
        known = self.inventory_known
        self.inventory_known = True
        if known and projection == self.inventory:
            return False
        old_spec = self.inventory.spec if self.inventory is not None else None
        self.inventory = projection
        if projection is not None and old_spec is not None and projection.spec != old_spec:
            self._dirty_nodes.update(self.gpunodes)  # views depend on the spec
        self._changed()
        return True

    def set_label_filter(self, labels: LabelFilter) -> bool:
        """Apply new label prefixes to the stored nodes.

        Returns whether the stored labels are complete: True when the new prefixes only narrow
        the old ones (re-filtering is exact). False when they widen: labels never stored must
        be read again, which the writer does with one LIST of nodes (`refresh_node`).
        """
        if labels == self.labels:
            return True
        previous, self.labels = self.labels, labels
        for name, node in list(self.nodes.items()):
            kept = tuple(item for item in node.labels if labels.keep(item[0]))
            if kept != node.labels:
                self.nodes[name] = dataclasses.replace(node, labels=kept)
        self._dirty_nodes.update(self.nodes)
        self._changed()
        return labels.narrows(previous)

    def refresh_node(self, projection: NodeProjection) -> bool:
        """Re-projection of a listed Node; taken only if it is the version we hold.

        A listed Node at the stored resourceVersion is the same object seen again, now with
        the current label filter. Any other version is either older than ours or newer, and
        then its own event (projected with the current filter) is on its way.
        """
        old = self.nodes.get(projection.name)
        if old is None or old.resource_version != projection.resource_version:
            return False
        if old == projection:
            return False
        self.nodes[projection.name] = projection
        self._dirty_nodes.add(projection.name)
        self._changed()
        return True

    # --- listings -------------------------------------------------------------------------------

    def _note(self, kind: Kind, key: str, *, listing: bool, now: float) -> None:
        state = self._listings[kind]
        if state.touched is not None:
            state.touched.add(key)
        if listing:
            state.last_listing_event = now
            if state.synced:
                state.relisted = True
        elif not state.synced:
            self._sync(kind)  # a watch event: kopf's listing of this kind is over

    def expect(self, kind: Kind, has_objects: bool) -> None:
        """The writer's probe: whether the API server holds any object of `kind`."""
        state = self._listings[kind]
        state.expect_objects = has_objects
        if not has_objects and not state.synced:
            self._sync(kind)

    def settle(self, *, now: float, quiet: float, timeout: float) -> list[Kind]:
        """Close listings that went quiet; return the kinds that were relisted and now need a
        sweep. Call before every computation."""
        need_sweep: list[Kind] = []
        for kind, state in self._listings.items():
            last = state.last_listing_event
            if not state.synced:
                if state.expect_objects is None:
                    continue
                quiet_enough = last is not None and now - last >= quiet
                if quiet_enough or now - state.started >= timeout:
                    self._sync(kind)
            elif state.relisted and last is not None and now - last >= quiet:
                state.relisted = False
                need_sweep.append(kind)
        return need_sweep

    def _sync(self, kind: Kind) -> None:
        state = self._listings[kind]
        if not state.synced:
            state.synced = True
            self._dirty_inventory = True
            self._changed()

    def synced(self, kind: Kind | None = None) -> bool:
        """Whether the first listing of `kind` (or of every kind) is complete."""
        if kind is not None:
            return self._listings[kind].synced
        return all(state.synced for state in self._listings.values())

    def listing_pending(self) -> bool:
        """Whether some listing still waits to go quiet (first listing or relist)."""
        return any(not s.synced or s.relisted for s in self._listings.values())

    def abort_sweep(self, kind: Kind) -> None:
        """The sweep's LIST failed: drop nothing, and sweep again at the next settle."""
        state = self._listings[kind]
        state.touched = None
        state.relisted = True

    def begin_sweep(self, kind: Kind) -> None:
        """Start recording touched keys; the writer LISTs next, then calls `sweep`."""
        self._listings[kind].touched = set()

    def sweep(self, kind: Kind, listed: Collection[str], *, now: float) -> list[str]:
        """Drop objects of `kind` that the LIST no longer has and no event touched since
        `begin_sweep`. Returns the keys dropped. Keys: pod uid, node/GPUNode name."""
        state = self._listings[kind]
        touched = state.touched or set()
        state.touched = None
        listed_set = listed if isinstance(listed, set | frozenset) else set(listed)
        gone: list[str] = []
        if kind is Kind.PODS:
            keys: Collection[str] = self.pods.keys() | self.skipped_pods
        elif kind is Kind.NODES:
            keys = list(self.nodes)
        elif kind is Kind.GPUNODES:
            keys = list(self.gpunodes)
        else:
            keys = [INVENTORY_KEY] if self.inventory is not None else []
        for key in keys:
            if key in listed_set or key in touched:
                continue
            gone.append(key)
            if kind is Kind.PODS:
                self.pod_event(key, None, listing=False, now=now)
            elif kind is Kind.NODES:
                self.node_event(key, "", None, listing=False, now=now)
            elif kind is Kind.GPUNODES:
                self._set_gpunode(key, "", None)
            else:
                self.inventory_read(None)
        return gone

    # --- what changed ---------------------------------------------------------------------------

    def _changed(self) -> None:
        self._dirty_inventory = True
        self.on_change()

    @property
    def dirty(self) -> bool:
        return self._dirty_inventory or bool(self._dirty_nodes)

    def take_changes(self) -> Changes:
        """What changed since the previous call; resets the record."""
        changes = Changes(
            inventory=self._dirty_inventory,
            nodes=frozenset(self._dirty_nodes),
            first_pod_event=self._first_pod_event,
        )
        self._dirty_inventory = False
        self._dirty_nodes = set()
        self._first_pod_event = None
        return changes

    def restore(self, changes: Changes) -> None:
        """Put back changes a failed write did not reflect, so the next pass retries them."""
        self._dirty_inventory = self._dirty_inventory or changes.inventory
        self._dirty_nodes |= changes.nodes
        if changes.first_pod_event is not None and (
            self._first_pod_event is None or changes.first_pod_event < self._first_pod_event
        ):
            self._first_pod_event = changes.first_pod_event

    def mark_inventory(self) -> None:
        """Ask the writer to compute the inventory status again."""
        self._dirty_inventory = True

    def mark_nodes(self, names: Collection[str]) -> None:
        """Ask the writer to look at these nodes' GPUNodes again (e.g. a write to retry)."""
        self._dirty_nodes.update(names)

    def counts(self) -> dict[str, int]:
        """Objects held per kind, for the metrics gauge."""
        return {
            "pods": len(self.pods),
            "nodes": len(self.nodes),
            "gpunodes": len(self.gpunodes),
            "gpuinventories": 1 if self.inventory is not None else 0,
            "skipped_pods": len(self.skipped_pods),
        }


def _put(table: dict[str, _P], name: str, uid: str, projection: _P | None) -> bool:
    """Store or delete `name`; whether anything a computation reads changed.

    A deletion carrying another uid is the DELETED event of a predecessor with the same name,
    and is ignored. Equal content under a new resourceVersion (a kubelet status report that
    moved nothing we keep) is stored without counting as a change, so the resourceVersion a
    later `refresh_node` compares with stays current.
    """
    old = table.get(name)
    if projection is None:
        if old is None or (uid and old.uid and old.uid != uid):
            return False
        del table[name]
        return True
    table[name] = projection
    return old != projection


def _agent_side(gpunode: GPUNodeProjection | None) -> tuple[object, ...] | None:
    """What the inventory status reads of a GPUNode (not our own `status.kubernetes`)."""
    return None if gpunode is None else (gpunode.uid, gpunode.agent, gpunode.agent_error)


def _nothing() -> None:
    return None
