"""One node's DRA GPUs, counted the way the scheduler sees them.

Pure: no I/O. Two steps, each a plain function over projections:

- `gather_pool`: which devices of a pool exist, as the scheduler's pool gathering decides
  (kubernetes staging/src/k8s.io/dynamic-resource-allocation/structured/internal/stable/
  pools_stable.go, `GatherPools`): only the slices of the pool's highest `pool.generation`
  count ("out-dated slices are silently ignored"); a pool with fewer (or more) slices than
  `resourceSliceCount` is incomplete, and one whose device names repeat is invalid. An invalid
  pool is not counted (the allocator refuses it). While a pool is incomplete (being
  republished one slice at a time) its last complete gathering is counted (`carry_over`); one
  never seen complete counts nothing, its nodes keep their rows. (The scheduler gathers per
  node; GPU drivers publish node-local pools, where both agree.)
- `node_counts`: a node's devices and the allocated set -> per resource name capacity,
  allocatable, allocated, available; physical GPUs; unhealthy GPUs; the product.

How devices become numbers (the README's API section says the same):

- A *unit* of a resource is one physical thing: devices with the same `uuid` are one unit
  (NVIDIA's driver publishes a passthrough GPU twice, as `gpu` and `vfio` siblings of one
  UUID, allocatable one way at a time: allocatable.go RemoveSiblingDevices).
- Resource names: a DeviceClass with `extendedResourceName` that selects the device names it
  (what a pod asking for that name gets, KEP-5004; NVIDIA's `gpu.nvidia.com` class maps
  `nvidia.com/gpu` onto full GPUs); otherwise a MIG device is `nvidia.com/mig-<profile>` and
  any other device `nvidia.com/gpu`, the names the device plugin gives the same units. Only
  names `spec.resourceNames` selects are counted, as for device-plugin nodes.
- Physical GPUs: distinct UUIDs of full GPUs plus distinct `parentUUID`s of MIG devices, so MIG
  devices and partitions never add GPUs (a MIG node that also published its whole GPUs, NVIDIA
  driver bug #719, still counts each GPU once; NVIDIA's dynamic MIG placements carry a
  `parentUUID` and no `uuid`, mig.go CommonAttributesMig).
- Partitionable devices (KEP-4815, DRAPartitionableDevices; NVIDIA's dynamic MIG publishes the
  whole GPU and every MIG placement, all consuming one counter set per GPU: driver.go
  generateCombinedResourceSlices, partitions.go): a unit is available only if it is free,
  untainted, and its consumption fits what the allocated devices left of its counter sets
  (allocator_stable.go checkAvailableCounters). Capacity stays the number of placements.
- allocatable: units with no NoSchedule/NoExecute taint. allocated: units in use, i.e. a
  device of the unit is allocated, or the whole GPU it is carved from is, or (for a whole GPU)
  one of its MIG devices is: either way the unit cannot be handed out. available =
  allocatable - allocated, floored at 0, as for device-plugin resources.
- unhealthy: physical GPUs with a device tainted by the driver's health monitor.
- product: the most common `productName`, spelled as GPU Feature Discovery labels it (spaces
  become dashes: k8s-device-plugin internal/lm/resource.go, productLabel), so a DRA node and a
  device-plugin node of one product share its row.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Final

from gpu_inventory.api import constants
from gpu_inventory.operator.accounting import ResourceCounts
from gpu_inventory.operator.dra.projections import (
    TYPE_MIG,
    UNAVAILABLE,
    UNHEALTHY,
    ClassProjection,
    Counters,
    Device,
    DeviceKey,
    SliceProjection,
)

CounterSetKey = tuple[str, str, str]
"""(driver, pool, counter set name)."""

MIG_PREFIX: Final = "nvidia.com/mig-"
"""The device plugin's name for MIG devices (mixed strategy): `nvidia.com/mig-1g.10gb`."""


def mig_resource_name(profile: str) -> str:
    """The device plugin's name for a MIG profile: `1g.10gb` -> `nvidia.com/mig-1g.10gb`.

    A profile with attributes (go-nvlib MigProfileInfo.String: `1g.10gb+me`, `1g.10gb-me`)
    is named with `.` for the `+`, `nvidia.com/mig-1g.10gb.me`: a resource name must be a DNS
    subdomain (k8s-device-plugin api/config/v1/resources.go NewResourceName validates it with
    NameIsDNSSubdomain), which has no `+`, so a DRA row and the device plugin's row line up.
    """
    return MIG_PREFIX + (profile or "unknown").replace("+", ".")


Naming = Callable[[str, Device], str | None]
"""(driver, device) -> the resource name the device counts under, None: not counted."""


@dataclasses.dataclass(frozen=True, slots=True)
class Pool:
    """One (driver, pool) after gathering: the newest generation's devices, if they count."""

    driver: str
    name: str
    generation: int
    devices: tuple[Device, ...]
    counted: bool
    """Complete and valid: its devices exist for the scheduler."""
    why_not: str = ""
    """Why it is not counted (incomplete, duplicate device name), or why an older generation
    is counted in its place (see `carry_over`)."""
    incomplete: bool = False
    """Its newest generation lacks slices (an older complete one may stand in for it)."""
    pending_nodes: frozenset[str] = frozenset()
    """Nodes of a newer, incomplete generation not yet counted: they keep their rows."""
    counter_sets: tuple[tuple[str, Counters], ...] = ()
    """The shared counter sets of its slices (partitionable devices)."""
    nodes: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    """Device name -> its node ('' for none), for the claims' lookups."""

    def node_of(self, device: str) -> str | None:
        """The node a counted device is attached to ('' for none); None: not a counted device."""
        return self.nodes.get(device) if self.counted else None


def gather_pool(slices: Iterable[SliceProjection]) -> Pool | None:
    """Gather one pool's slices (all of one driver and pool name); None when there are none."""
    newest: list[SliceProjection] = []
    for piece in slices:
        if newest and piece.generation < newest[0].generation:
            continue  # out-dated
        if newest and piece.generation > newest[0].generation:
            newest = []  # newer: replaces all old slices
        newest.append(piece)
    if not newest:
        return None
    first = newest[0]
    devices = tuple(device for piece in newest for device in piece.devices)
    counts = {piece.slice_count for piece in newest}
    why_not = ""
    if len(counts) > 1:
        # GatherPools takes the first slice's count, and the order of slices is arbitrary;
        # slices of one generation that disagree are a pool being rewritten: not counted.
        why_not = f"incomplete: its slices disagree on resourceSliceCount {sorted(counts)}"
    elif len(newest) != first.slice_count:
        why_not = f"incomplete: {len(newest)} of {first.slice_count} slices"
    elif len({device.name for device in devices}) != len(devices):  # poolIsInvalid
        why_not = "invalid: duplicate device name"
    return Pool(
        first.driver,
        first.pool,
        first.generation,
        devices,
        counted=not why_not,
        why_not=why_not,
        incomplete=why_not.startswith("incomplete"),
        nodes={device.name: device.node for device in devices},
        # The 1.34 allocator scopes a counter set to its slice (allocator_stable.go
        # checkAvailableCounters reads `slice.Spec.SharedCounters` of the device's own slice);
        # 1.35 lets one slice carry them for the whole pool. NVIDIA's driver names one set per
        # GPU (`gpu-<minor>-counter-set`, partitions.go GetSharedCounterSetName) in either
        # layout, so sets are kept per pool, which reads both.
        counter_sets=tuple(sorted({n: c for p in newest for n, c in p.counter_sets}.items())),
    )


def carry_over(newest: Pool | None, previous: Pool | None) -> Pool | None:
    """The pool to count: the newest gathering, or, while that is incomplete, the last complete
    one (`previous`, what was counted before).

    A driver republishes a pool one slice at a time (the kubelet's resourceslice controller,
    `syncPool`, writes one slice per API call after bumping the generation), so a pool of
    several slices is briefly incomplete at each change. The scheduler meanwhile allocates
    from the newest generation's slices present so far (GatherPools in pools_stable.go keeps
    only them and marks the pool `IsIncomplete`); counting only those would show GPUs vanishing
    for the seconds of each republish. This is a choice, not the scheduler's rule: the last
    complete gathering stands until the new generation is complete (a driver that dies
    mid-publish leaves it standing; the log says so once per generation). A pool never seen
    complete counts nothing; an invalid one (duplicate device names) counts nothing either, as
    the allocator refuses it outright.
    """
    if newest is None or not newest.incomplete or previous is None or not previous.counted:
        return newest
    return dataclasses.replace(
        previous,
        why_not=(
            f"{newest.why_not} at generation {newest.generation}; counting the last complete"
            f" one (generation {previous.generation}) meanwhile"
        ),
        incomplete=True,
        pending_nodes=frozenset(d.node for d in newest.devices if d.node),
    )


def naming(classes: Mapping[str, ClassProjection], selected: Callable[[str], bool]) -> Naming:
    """The resource name of each device, from the DeviceClasses (class name -> projection)
    that map names onto devices (the first class by name wins when two select one device),
    else the default names."""
    mapped = [(c.resource_name, c.selector) for _, c in sorted(classes.items()) if c.selector]

    def name_of(driver: str, device: Device) -> str | None:
        for resource, selector in mapped:
            if selector is not None and selector.selects(driver, device):
                return resource if selected(resource) else None
        if device.kind == TYPE_MIG:
            default = mig_resource_name(device.profile)
        else:
            default = constants.PRIMARY_RESOURCE
        return default if selected(default) else None

    return name_of


@dataclasses.dataclass(frozen=True, slots=True)
class NodeCounts:
    """What DRA says about one node's GPUs."""

    resources: Mapping[str, ResourceCounts]
    """Per resource name (sorted)."""
    gpus: int
    unhealthy: int
    product: str
    """The most common `productName` of its GPUs ('' when none says)."""


@dataclasses.dataclass(slots=True)
class _Unit:
    tainted: bool = False
    in_use: bool = False
    fits: bool = False
    """Some device of it fits what remains of the counter sets it consumes from."""


_NO_COUNTERS: Final[Mapping[CounterSetKey, Counters]] = {}


def node_counts(
    devices: Iterable[tuple[str, str, Device]],
    allocated: Collection[DeviceKey],
    name_of: Naming,
    counter_sets: Mapping[CounterSetKey, Counters] = _NO_COUNTERS,
) -> NodeCounts:
    """Count one node's devices, given as (driver, pool, device) of counted pools, with the
    shared counter sets of those pools."""
    listed = list(devices)
    remaining = _remaining(listed, allocated, counter_sets)
    gpu_of: dict[tuple[str, str, str], str] = {}
    held: set[str] = set()  # GPUs (by physical id) whose whole device is allocated
    carved: set[str] = set()  # GPUs one of whose MIG devices is allocated
    products: dict[str, str] = {}
    sick: set[str] = set()
    for driver, pool, device in listed:
        key = (driver, pool, device.name)
        gpu = _physical_id(key, device)
        gpu_of[key] = gpu
        if device.product:
            products.setdefault(gpu, device.product.replace(" ", "-"))
        if device.taints & UNHEALTHY:
            sick.add(gpu)
        if key in allocated:
            (carved if device.kind == TYPE_MIG else held).add(gpu)
    units: dict[str, dict[str, _Unit]] = {}
    for driver, pool, device in listed:
        resource = name_of(driver, device)
        if resource is None:
            continue
        key = (driver, pool, device.name)
        gpu = gpu_of[key]
        unit = units.setdefault(resource, {}).setdefault(device.uuid or "/".join(key), _Unit())
        unit.tainted |= bool(device.taints & UNAVAILABLE)
        unit.in_use |= (
            key in allocated or gpu in held or (device.kind != TYPE_MIG and gpu in carved)
        )
        unit.fits |= _fits(driver, pool, device, remaining)
    resources = {}
    for resource in sorted(units):
        capacity = len(units[resource])
        allocatable = sum(1 for u in units[resource].values() if not u.tainted)
        in_use = sum(1 for u in units[resource].values() if u.in_use)
        # A partition is available only if it could be allocated now: free, untainted, and
        # its consumption fits what the allocated devices left of its counter sets. Each is
        # judged alone (seven free 1g placements and one free 7g on an idle A100 are all
        # "available", not all at once). Devices without counters always fit, so for them
        # this is allocatable - allocated, as for device-plugin resources.
        free = sum(1 for u in units[resource].values() if u.fits and not (u.tainted or u.in_use))
        resources[resource] = ResourceCounts(
            capacity=capacity,
            allocatable=allocatable,
            allocated=in_use,
            available=min(max(0, allocatable - in_use), free),
        )
    physical = set(gpu_of.values())
    ranked = Counter(products.values()).most_common()
    product = min((p for p, n in ranked if n == ranked[0][1]), default="") if ranked else ""
    return NodeCounts(resources, len(physical), len(sick & physical), product)


def _remaining(
    listed: Iterable[tuple[str, str, Device]],
    allocated: Collection[DeviceKey],
    counter_sets: Mapping[CounterSetKey, Counters],
) -> dict[CounterSetKey, dict[str, int] | None]:
    """What is left of each counter set an allocated device consumes from, as
    allocator_stable.go `checkAvailableCounters` computes it (a counter not in the set is
    ignored); None for a set left with a negative counter, from which nothing fits."""
    remaining: dict[CounterSetKey, dict[str, int]] = {}
    for driver, pool, device in listed:
        if not device.consumes or (driver, pool, device.name) not in allocated:
            continue
        for set_name, counters in device.consumes:
            key = (driver, pool, set_name)
            left = remaining.get(key)
            if left is None:
                whole = counter_sets.get(key)
                if whole is None:
                    continue
                left = remaining[key] = dict(whole)
            for counter, amount in counters:
                if counter in left:
                    left[counter] -= amount
    return {
        key: None if any(value < 0 for value in left.values()) else left
        for key, left in remaining.items()
    }


def _fits(
    driver: str, pool: str, device: Device, remaining: Mapping[CounterSetKey, dict[str, int] | None]
) -> bool:
    """Whether the device's consumption fits what remains of the counter sets it consumes
    from (checkAvailableCounters; consumption of a counter the set does not define is ignored
    there too). A set no allocated device consumes from is whole, and every device fits a whole
    set: NVIDIA's set is the largest profile's capacities and every memory slice (partitions.go
    PartSharedCounterSets), which the whole GPU itself consumes."""
    for set_name, counters in device.consumes:
        key = (driver, pool, set_name)
        if key not in remaining:
            continue
        left = remaining[key]
        if left is None or any(left.get(counter, amount) < amount for counter, amount in counters):
            return False
    return True


def _physical_id(key: DeviceKey, device: Device) -> str:
    """The physical GPU a device is (or is carved from): its UUID, a MIG device's parent's."""
    if device.kind == TYPE_MIG and device.parent:
        return device.parent
    if device.uuid:
        return device.uuid
    if device.consumes:  # a partition of another driver: the device its counter set is
        return "/".join((key[0], key[1], device.consumes[0][0]))
    return "/".join(key)
