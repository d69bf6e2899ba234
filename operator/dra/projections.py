"""ResourceSlices, ResourceClaims and DeviceClasses -> the small frozen values the operator keeps.

Pure: no I/O. Only the GPU drivers' objects are kept (`spec.draDrivers`, NVIDIA's
`gpu.nvidia.com` by default), and of them only what the counting needs:

- a ResourceSlice: its pool (driver, name, generation, slice count), its shared counter sets
  and, per device, its node, the few attributes NVIDIA's driver publishes that say what the
  device is, what it consumes of the counter sets (partitionable devices, KEP-4815), and
  whether a taint makes it unavailable or unhealthy;
- a ResourceClaim: the (driver, pool, device) keys its allocation holds, nothing else, so
  150,000 claims cost what their device keys cost;
- a DeviceClass: the extended resource name it maps (DRAExtendedResource) and, when its CEL
  selector is a plain conjunction of equalities, which devices it selects.

The API server validates these built-in kinds, so a malformed object only comes from a bug or a
hand-made body: `MalformedError` says what is wrong, and the caller logs it and keeps the object
out of the counts rather than guessing.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Collection, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Final, TypeVar

from gpu_inventory.operator.accounting.quantities import QuantityError, parse_quantity

GROUP: Final = "resource.k8s.io"
VERSION: Final = "v1"

DeviceKey = tuple[str, str, str]
"""(driver, pool, device): how the scheduler names a device (`structured.MakeDeviceID`)."""

# The `type` attribute NVIDIA's driver gives every device (sigs.k8s.io/dra-driver-nvidia-gpu,
# cmd/gpu-kubelet-plugin/types.go: GpuDeviceType "gpu", MigStaticDeviceType "mig",
# VfioDeviceType "vfio"); a MIG device also carries `parentUUID` and `profile` (mig.go,
# CommonAttributesMig), every device `uuid` and `productName` (deviceinfo.go).
TYPE_MIG: Final = "mig"

UNAVAILABLE: Final = 1
"""A taint with effect NoSchedule or NoExecute: the scheduler allocates the device to no claim
that does not tolerate it (KEP-5055, resource.k8s.io/v1 DeviceTaint)."""
UNHEALTHY: Final = 2
"""Such a taint set by the driver's health monitor: `<driver>/xid` (a fatal XID; non-fatal ones
get effect None) or `<driver>/gpu-lost` (cmd/gpu-kubelet-plugin/device_health.go,
healthEventToTaint). `<driver>/unmonitored` has effect None: neither."""

_BLOCKING_EFFECTS: Final = frozenset({"NoSchedule", "NoExecute"})
_HEALTH_TAINTS: Final = ("xid", "gpu-lost")
_EMPTY: Final[Mapping[str, Any]] = {}
_intern = sys.intern

_ATTRIBUTE_FIELDS: Final = {
    "type": "kind",
    "uuid": "uuid",
    "parentUUID": "parent",
    "productName": "product",
    "profile": "profile",
}
"""The device attributes kept, and the `Device` field each lands in."""


class MalformedError(ValueError):
    """An object the API server would not have accepted; the message says what is wrong."""


Counters = tuple[tuple[str, int], ...]
"""Counter name -> amount in thousandths (a quantity such as `98`, `1` or `9856Mi`), sorted.
One tuple per distinct shape is kept (`_shared`): every A100's `1g.10gb` placement 3 consumes
the same counters, so 5,000 nodes of partitionable GPUs cost a few hundred tuples, not millions."""

Consumption = tuple[tuple[str, Counters], ...]
"""(counter set, counters) per set a device consumes from (`consumesCounters`)."""

_Shape = TypeVar("_Shape", bound=tuple[Any, ...])
_SHAPES: dict[Any, Any] = {}
_MAX_SHAPES: Final = 100_000
"""Beyond this many distinct shapes (a hostile driver) tuples are kept unshared."""


def _shared(shape: _Shape) -> _Shape:
    """One tuple per distinct value: the counters, and a device's whole consumption (the same
    on every node, as NVIDIA names counter sets by GPU minor)."""
    if len(_SHAPES) >= _MAX_SHAPES:
        return _SHAPES.get(shape, shape)  # type: ignore[no-any-return]
    return _SHAPES.setdefault(shape, shape)  # type: ignore[no-any-return]


# --- ResourceSlices -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Device:
    """One device of a ResourceSlice, reduced to what says which GPU it is and where."""

    name: str
    node: str
    """The one node it is attached to; empty for a device that many nodes reach."""
    kind: str
    """The driver's `type` attribute: gpu, mig, vfio (empty when absent)."""
    uuid: str
    parent: str
    """`parentUUID`: the physical GPU a MIG device is carved from."""
    product: str
    profile: str
    """A MIG device's profile, e.g. `1g.10gb`."""
    taints: int = 0
    """`UNAVAILABLE` and `UNHEALTHY` bits."""
    consumes: Consumption = ()
    """What it takes from its pool's counter sets when allocated (empty for most devices)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SliceProjection:
    """A ResourceSlice of a GPU driver: its place in a pool and its devices."""

    uid: str
    driver: str
    pool: str
    generation: int
    slice_count: int
    """`pool.resourceSliceCount`: how many slices the complete pool has."""
    devices: tuple[Device, ...]
    counter_sets: tuple[tuple[str, Counters], ...] = ()
    """`sharedCounters`: (counter set name, counters) that its devices consume from."""


def project_slice(body: Mapping[str, Any], drivers: Collection[str]) -> SliceProjection | None:
    """Project a ResourceSlice; None for another driver's (not kept). Raises MalformedError."""
    spec = body.get("spec") or _EMPTY
    driver = spec.get("driver")
    if driver not in drivers:
        return None
    pool = spec.get("pool")
    if not isinstance(pool, Mapping):
        raise MalformedError("spec.pool is missing")
    pool_name = pool.get("name")
    generation = pool.get("generation")
    count = pool.get("resourceSliceCount")
    if not isinstance(pool_name, str) or not pool_name:
        raise MalformedError("spec.pool.name is missing")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise MalformedError(f"spec.pool.generation {generation!r} is not a whole number >= 0")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise MalformedError(f"spec.pool.resourceSliceCount {count!r} is not a whole number >= 1")
    # Where the devices are (pools_stable.go GatherPools): `nodeName` puts all of them on one
    # node; `perDeviceNodeSelection` lets each device say; `nodeSelector` and `allNodes` make
    # them reachable from many nodes (GatherPools offers them to each node that matches), so
    # they belong to no one node's count. Such devices get node "" and are NOT COUNTED
    # anywhere, not even in the cluster totals: the totals are sums of node rows
    # (operator/aggregates.py), and a cluster-only row would need its own place there.
    # NVIDIA's GPU driver never publishes this shape (its pools are node-local), so only a
    # hand-configured `spec.draDrivers` entry can meet it.
    node = spec.get("nodeName")
    node = node if isinstance(node, str) else ""
    per_device = spec.get("perDeviceNodeSelection") is True
    devices = []
    for index, raw in enumerate(spec.get("devices") or ()):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise MalformedError(f"spec.devices[{index}] has no name")
        device_node = node
        if per_device and isinstance(raw.get("nodeName"), str):
            device_node = raw["nodeName"]
        consumes = _named_counters(
            raw.get("consumesCounters"),
            f"spec.devices[{index}].consumesCounters",
            "counterSet",
            ROUND_CEILING,
        )
        devices.append(_device(raw, str(driver), device_node, consumes))
    meta = body.get("metadata") or _EMPTY
    return SliceProjection(
        uid=str(meta.get("uid", "")),
        driver=_intern(str(driver)),
        pool=_intern(pool_name),
        generation=generation,
        slice_count=count,
        devices=tuple(devices),
        counter_sets=_named_counters(
            spec.get("sharedCounters"), "spec.sharedCounters", "name", ROUND_FLOOR
        ),
    )


def _named_counters(
    raw: object, where: str, name_field: str, rounding: str
) -> tuple[tuple[str, Counters], ...]:
    """(name, counters) per entry: `spec.sharedCounters` (name_field `name`, what each set
    holds) or a device's `consumesCounters` (`counterSet`, what it takes from each set)."""
    named = []
    for index, entry in enumerate(raw if isinstance(raw, list) else ()):
        here = f"{where}[{index}]"
        name = entry.get(name_field) if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or not name:
            raise MalformedError(f"{here} has no {name_field}")
        named.append((_intern(name), _counters(entry.get("counters"), here, rounding)))
    return _shared(tuple(named))


def _counters(raw: object, where: str, rounding: str) -> Counters:
    """Counters in thousandths; what a set holds is rounded down and what a device takes up,
    so a device is never said to fit where the allocator's exact quantities say it does not."""
    if not isinstance(raw, Mapping):
        raise MalformedError(f"{where}.counters is missing")
    counters = []
    for name, counter in raw.items():
        value = counter.get("value") if isinstance(counter, Mapping) else None
        try:
            amount = parse_quantity(value)  # type: ignore[arg-type]
        except QuantityError as error:
            raise MalformedError(f"{where}.counters[{name!r}]: {error}") from None
        milli = (amount * 1000).to_integral_value(rounding=rounding)
        counters.append((_intern(str(name)), int(milli if milli >= 0 else Decimal(0))))
    return _shared(tuple(sorted(counters)))


def _device(raw: Mapping[str, Any], driver: str, node: str, consumes: Consumption) -> Device:
    attributes = raw.get("attributes")
    attributes = attributes if isinstance(attributes, Mapping) else _EMPTY
    found = {
        field: _string_attribute(attributes, driver, name)
        for name, field in _ATTRIBUTE_FIELDS.items()
    }
    return Device(
        name=_intern(raw["name"]),
        node=_intern(node),
        kind=_intern(found["kind"]),
        uuid=found["uuid"],
        parent=found["parent"],
        product=_intern(found["product"]),
        profile=_intern(found["profile"]),
        taints=_taints(raw.get("taints"), driver),
        consumes=consumes,
    )


def _string_attribute(attributes: Mapping[str, Any], driver: str, name: str) -> str:
    """An attribute in the driver's own domain: written bare (`type`) or qualified
    (`gpu.nvidia.com/type`), as resource.k8s.io/v1 allows both for the driver's domain."""
    value = attributes.get(name) or attributes.get(f"{driver}/{name}")
    if isinstance(value, Mapping):
        text = value.get("string")
        if isinstance(text, str):
            return text
    return ""


def _taints(raw: object, driver: str) -> int:
    flags = 0
    health = {f"{driver}/{key}" for key in _HEALTH_TAINTS}
    for taint in raw if isinstance(raw, list) else ():
        if isinstance(taint, Mapping) and taint.get("effect") in _BLOCKING_EFFECTS:
            flags |= UNAVAILABLE
            if taint.get("key") in health:
                flags |= UNHEALTHY
    return flags


# --- ResourceClaims -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimProjection:
    """The GPU devices an allocated ResourceClaim holds."""

    devices: tuple[DeviceKey, ...]


def claim_key(body: Mapping[str, Any]) -> str:
    """A claim's store key: its uid, so a claim re-created under the same name (a pod's
    generated claim, recreated with the pod) never collides with its predecessor's DELETED."""
    meta = body.get("metadata") or _EMPTY
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


def project_claim(body: Mapping[str, Any], drivers: Collection[str]) -> ClaimProjection | None:
    """Project a ResourceClaim; None unless its allocation holds a GPU driver's device.

    As the scheduler counts (allocateddevices.go, foreachAllocatedDevice): every result of a
    claim whose `status.allocation` is set marks its device in use, whatever `reservedFor`
    says; a result with `adminAccess: true` "is not considered as allocated". A prioritized-list
    result names its sub-request (`req/subreq`), which changes nothing about the device.
    """
    status = body.get("status") or _EMPTY
    allocation = status.get("allocation") if isinstance(status, Mapping) else None
    if not isinstance(allocation, Mapping):
        return None
    devices = allocation.get("devices") or _EMPTY
    results = devices.get("results") if isinstance(devices, Mapping) else None
    keys: set[DeviceKey] = set()
    for index, result in enumerate(results if isinstance(results, list) else ()):
        if not isinstance(result, Mapping):
            raise MalformedError(f"status.allocation.devices.results[{index}] is not an object")
        if result.get("adminAccess") is True or result.get("driver") not in drivers:
            continue
        pool, device = result.get("pool"), result.get("device")
        if not isinstance(pool, str) or not isinstance(device, str) or not pool or not device:
            raise MalformedError(
                f"status.allocation.devices.results[{index}] names no pool and device"
            )
        keys.add((_intern(result["driver"]), _intern(pool), _intern(device)))
    return ClaimProjection(tuple(sorted(keys))) if keys else None


# --- DeviceClasses ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Selector:
    """What a DeviceClass selects, when its CEL is equalities joined by `&&`: one driver's
    devices whose listed attributes (in that driver's domain) have these values."""

    driver: str
    attributes: tuple[tuple[str, str], ...]
    """(Device field, value), e.g. ("kind", "gpu") for `device.attributes[d].type == 'gpu'`."""

    def selects(self, driver: str, device: Device) -> bool:
        return driver == self.driver and all(
            getattr(device, field) == value for field, value in self.attributes
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ClassProjection:
    """A DeviceClass that maps an extended resource name onto devices (DRAExtendedResource)."""

    uid: str
    resource_name: str
    """`spec.extendedResourceName`, e.g. nvidia.com/gpu on NVIDIA's `gpu.nvidia.com` class."""
    selector: Selector | None
    """None when the selectors are CEL this module cannot evaluate (`unreadable` says why)."""
    unreadable: str = ""


_DRIVER_TERM: Final = re.compile(r"device\.driver\s*==\s*(?P<q>['\"])(?P<value>[^'\"]*)(?P=q)")
_ATTRIBUTE_TERM: Final = re.compile(
    r"device\.attributes\[(?P<q1>['\"])(?P<domain>[^'\"]+)(?P=q1)\]"
    r"(?:\.(?P<dotted>[A-Za-z_][A-Za-z0-9_]*)|\[(?P<q2>['\"])(?P<quoted>[^'\"]+)(?P=q2)\])"
    r"\s*==\s*(?P<q3>['\"])(?P<value>[^'\"]*)(?P=q3)"
)


def project_class(body: Mapping[str, Any]) -> ClassProjection | None:
    """Project a DeviceClass; None when it maps no extended resource name (not kept)."""
    spec = body.get("spec") or _EMPTY
    name = spec.get("extendedResourceName")
    if not isinstance(name, str) or not name:
        return None
    meta = body.get("metadata") or _EMPTY
    expressions = []
    for selector in spec.get("selectors") or ():
        cel = selector.get("cel") if isinstance(selector, Mapping) else None
        expression = cel.get("expression") if isinstance(cel, Mapping) else None
        if not isinstance(expression, str):
            return ClassProjection(str(meta.get("uid", "")), _intern(name), None, "no CEL selector")
        expressions.append(expression)
    try:
        selector = read_selector(expressions)
    except ValueError as error:
        return ClassProjection(str(meta.get("uid", "")), _intern(name), None, str(error))
    return ClassProjection(str(meta.get("uid", "")), _intern(name), selector)


def read_selector(expressions: Collection[str]) -> Selector:
    """The selector that all `expressions` (ANDed, as a DeviceClass's selectors are) describe.

    Only `device.driver == '<d>'` and `device.attributes['<d>'].<attribute> == '<value>'` joined
    by `&&` are read, for the attributes `Device` keeps; anything else (`||`, functions,
    capacities, other domains) raises ValueError: such a class is not guessed at.
    """
    drivers: set[str] = set()
    attributes: dict[str, str] = {}
    for expression in expressions:
        for raw_term in expression.split("&&"):
            term = raw_term.strip()
            if match := _DRIVER_TERM.fullmatch(term):
                drivers.add(match["value"])
                continue
            match = _ATTRIBUTE_TERM.fullmatch(term)
            if match is None:
                raise ValueError(f"cannot read CEL term {term[:80]!r}")
            attribute = match["dotted"] or match["quoted"]
            field = _ATTRIBUTE_FIELDS.get(attribute)
            if field is None:
                raise ValueError(f"attribute {attribute!r} is not one gpu-inventory keeps")
            if attributes.get(field, match["value"]) != match["value"]:
                raise ValueError(f"attribute {attribute!r} must equal two values")
            attributes[field] = match["value"]
            drivers.add(match["domain"])
    if len(drivers) != 1:
        raise ValueError("the selectors must name exactly one driver")
    return Selector(drivers.pop(), tuple(sorted(attributes.items())))


# --- Pods served through DRAExtendedResource ------------------------------------------------------

_NOTHING: Final[frozenset[str]] = frozenset()


def served_by_dra(pod: Mapping[str, Any]) -> frozenset[str]:
    """Extended resource names of a pod that DRA serves on its node (KEP-5004).

    The scheduler (extendeddynamicresources.go) serves a pod's request for an extended resource
    through DRA when a DeviceClass maps the name and the node's allocatable has none of it; in
    PreBind it creates the pod's claim and records `status.extendedResourceClaimStatus
    .requestMappings[{containerName, resourceName, requestName}]`. `PodRequests` still holds
    those names, so they are counted through the claim and must be left out of the requests.
    """
    status = pod.get("status")
    claim_status = status.get("extendedResourceClaimStatus") if status else None
    if not claim_status or not isinstance(claim_status, Mapping):
        return _NOTHING
    mappings = claim_status.get("requestMappings")
    return frozenset(
        mapping["resourceName"]
        for mapping in (mappings if isinstance(mappings, list) else ())
        if isinstance(mapping, Mapping) and isinstance(mapping.get("resourceName"), str)
    )
