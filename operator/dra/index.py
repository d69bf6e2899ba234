"""Which DRA devices exist and which are allocated, kept incrementally from the watches.

Pure: no I/O. The store holds three tables (ResourceSlices by name, ResourceClaims by uid,
DeviceClasses by name; see `tables`) and hands each update to this index, which answers with
the nodes whose counts may have changed; the store marks them for both writers, as it does for
a pod event. So a claim event costs O(its devices), a slice event O(its pool), never a walk
over 150,000 claims; a node's counts are computed only when the writer recomputes that node.

- pools: (driver, pool) -> its slices, and the pool as gathered (`accounting.gather_pool`);
- nodes: node -> the pools with devices on it. While a pool is incomplete (being
  republished) its last complete gathering is counted; a node only its incomplete generation
  names keeps a row that counts nothing from it;
- allocated: device key -> how many claims hold it. A device is allocated once however many
  claims share it (allocateddevices.go keeps a *set* of device IDs): a claim shared by several
  pods holds its devices once anyway, and a device that several claims share (DRAConsumable-
  Capacity) is still one device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from gpu_inventory.operator.dra import accounting
from gpu_inventory.operator.dra.projections import (
    ClaimProjection,
    ClassProjection,
    Device,
    DeviceKey,
    SliceProjection,
)
from gpu_inventory.operator.tables import Changed, Replaced, Table

PoolId = tuple[str, str]


class DraIndex:
    """ResourceSlices, ResourceClaims and DeviceClasses, and what they say per node."""

    def __init__(self) -> None:
        self.slices: Table[SliceProjection] = Table()
        self.claims: Table[ClaimProjection] = Table()
        self.classes: Table[ClassProjection] = Table()
        self.allocated: dict[DeviceKey, int] = {}
        self._pool_slices: dict[PoolId, dict[str, SliceProjection]] = {}
        self._pools: dict[PoolId, accounting.Pool] = {}
        self._node_pools: dict[str, set[PoolId]] = {}
        self._naming: tuple[Callable[[str], bool], accounting.Naming] | None = None
        self._reported: dict[PoolId, int] = {}  # pool -> the generation whose problem was said
        self._problems: list[tuple[bool, str]] = []  # not yet taken by `take_problems`

    # --- reading ----------------------------------------------------------------------------------

    def has_devices(self, node: str) -> bool:
        """Whether the newest generation of some pool puts devices on `node`."""
        return node in self._node_pools

    def devices_on(self, node: str) -> Iterator[tuple[str, str, Device]]:
        """(driver, pool, device) of every counted device attached to `node`."""
        for pool_id in sorted(self._node_pools.get(node, ())):
            pool = self._pools[pool_id]
            if not pool.counted:
                continue
            for device in pool.devices:
                if device.node == node:
                    yield pool.driver, pool.name, device

    def why_not(self, node: str) -> tuple[str, ...]:
        """Why pools with devices on `node` are not counted, or counted as an older generation
        (`pool <driver>/<name>: <reason>`, by pool); empty when every one counts as it is."""
        return tuple(
            _problem(pool_id, self._pools[pool_id].why_not)
            for pool_id in sorted(self._node_pools.get(node, ()))
            if self._pools[pool_id].why_not
        )

    def take_problems(self) -> list[tuple[bool, str]]:
        """Pool problems not taken before, each once per (pool, generation), for the log:
        (still counted, as its last complete generation; what is wrong)."""
        problems, self._problems = self._problems, []
        return problems

    def counts(self, node: str, selected: Callable[[str], bool]) -> accounting.NodeCounts | None:
        """The node's DRA counts, for the resource names `selected` keeps (the spec's
        `resourceNames`); None when no pool has devices on it."""
        if node not in self._node_pools:
            return None
        counter_sets = {
            (pool.driver, pool.name, name): counters
            for pool_id in self._node_pools[node]
            if (pool := self._pools[pool_id]).counted
            for name, counters in pool.counter_sets
        }
        return accounting.node_counts(
            self.devices_on(node), self.allocated, self.naming(selected), counter_sets
        )

    def naming(self, selected: Callable[[str], bool]) -> accounting.Naming:
        """Device -> resource name under the current DeviceClasses (cached until one changes)."""
        if self._naming is None or self._naming[0] != selected:
            self._naming = (selected, accounting.naming(self.classes.live, selected))
        return self._naming[1]

    # --- updates (each returns the nodes whose counts may have changed) -------------------------

    def slices_update(
        self, update: Changed[SliceProjection] | Replaced[SliceProjection] | None
    ) -> set[str]:
        if update is None:
            return set()
        if isinstance(update, Replaced):
            before = set(self._node_pools)
            previous = self._pools  # a relist keeps each pool's last complete gathering
            self._pool_slices, self._pools, self._node_pools = {}, {}, {}
            for name, piece in update.new.items():
                self._pool_slices.setdefault((piece.driver, piece.pool), {})[name] = piece
            for pool_id in list(self._pool_slices):
                self._regather(pool_id, previous.get(pool_id))
            for gone in self._reported.keys() - self._pool_slices.keys():
                del self._reported[gone]
            return before | set(self._node_pools)
        touched: set[PoolId] = set()
        if update.old is not None:  # a slice may move to another pool: leave the old one
            old_id = (update.old.driver, update.old.pool)
            touched.add(old_id)
            self._pool_slices.get(old_id, {}).pop(update.key, None)
        if update.new is not None:
            pool_id = (update.new.driver, update.new.pool)
            touched.add(pool_id)
            self._pool_slices.setdefault(pool_id, {})[update.key] = update.new
        nodes: set[str] = set()
        for pool_id in touched:
            nodes |= self._regather(pool_id)
        return nodes

    def claims_update(
        self, update: Changed[ClaimProjection] | Replaced[ClaimProjection] | None
    ) -> set[str]:
        if update is None:
            return set()
        if isinstance(update, Replaced):
            before = self.allocated
            self.allocated = {}
            for claim in update.new.values():
                _count(self.allocated, claim.devices, +1)
            flipped = before.keys() ^ self.allocated.keys()
        else:
            flipped = set()
            if update.old is not None:
                flipped |= _count(self.allocated, update.old.devices, -1)
            if update.new is not None:
                flipped ^= _count(self.allocated, update.new.devices, +1)
        return self._nodes_of(flipped)

    def classes_update(
        self, update: Changed[ClassProjection] | Replaced[ClassProjection] | None
    ) -> set[str]:
        """A class can rename any device: every DRA node's counts may change."""
        if update is None:
            return set()
        self._naming = None
        return set(self._node_pools)

    # --- helpers --------------------------------------------------------------------------------

    def _regather(self, pool_id: PoolId, relisted: accounting.Pool | None = None) -> set[str]:
        """Gather one pool again; the nodes whose devices of it changed. `relisted`: what was
        counted before a relist emptied `_pools`, to stand in while the pool is incomplete."""
        old = self._pools.pop(pool_id, None)
        members = self._pool_slices.get(pool_id)
        newest = accounting.gather_pool(members.values()) if members else None
        new = accounting.carry_over(newest, old or relisted)
        self._note(pool_id, newest, new)
        if not members:
            self._pool_slices.pop(pool_id, None)
        if new is not None:
            self._pools[pool_id] = new
        old_nodes = _nodes_in(old)
        new_nodes = _nodes_in(new)
        for node in old_nodes - new_nodes:
            pools = self._node_pools[node]
            pools.discard(pool_id)
            if not pools:
                del self._node_pools[node]
        for node in new_nodes - old_nodes:
            self._node_pools.setdefault(node, set()).add(pool_id)
        if old is not None and new is not None and old.counted and new.counted:
            if old.why_not != new.why_not or old.counter_sets != new.counter_sets:
                return old_nodes | new_nodes
            changed = {node for node in old_nodes & new_nodes if _on(old, node) != _on(new, node)}
            return changed | (old_nodes ^ new_nodes)
        return old_nodes | new_nodes

    def _note(
        self, pool_id: PoolId, newest: accounting.Pool | None, new: accounting.Pool | None
    ) -> None:
        """Queue a pool's problem for the log, once per (pool, generation)."""
        if newest is None or new is None or not new.why_not:
            self._reported.pop(pool_id, None)
        elif self._reported.get(pool_id) != newest.generation:
            self._reported[pool_id] = newest.generation
            self._problems.append((new.counted, _problem(pool_id, new.why_not)))

    def _nodes_of(self, keys: Iterable[DeviceKey]) -> set[str]:
        nodes = set()
        for driver, pool_name, device in keys:
            pool = self._pools.get((driver, pool_name))
            node = pool.node_of(device) if pool is not None else None
            if node:
                nodes.add(node)
        return nodes


def _count(allocated: dict[DeviceKey, int], keys: Iterable[DeviceKey], step: int) -> set[DeviceKey]:
    """Add `step` to each key's count; the keys that became (or stopped being) allocated."""
    flipped = set()
    for key in keys:
        count = allocated.get(key, 0) + step
        if count > 0:
            allocated[key] = count
        else:
            allocated.pop(key, None)
        if (count > 0) != (count - step > 0):
            flipped.add(key)
    return flipped


def _problem(pool_id: PoolId, why_not: str) -> str:
    return f"pool {pool_id[0]}/{pool_id[1]}: {why_not}"


def _nodes_in(pool: accounting.Pool | None) -> set[str]:
    if pool is None:
        return set()
    return {device.node for device in pool.devices if device.node} | pool.pending_nodes


def _on(pool: accounting.Pool, node: str) -> tuple[Device, ...]:
    return tuple(device for device in pool.devices if device.node == node)
