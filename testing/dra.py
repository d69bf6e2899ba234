"""Builders for DRA objects shaped like NVIDIA's DRA driver for GPUs publishes and the scheduler
writes: DeviceClasses, ResourceSlices, allocated ResourceClaims, a DRAExtendedResource pod status.

Pure: no I/O. Plain dicts in resource.k8s.io/v1's JSON shape, so a test reads like the YAML.
Shapes follow kubernetes-sigs/dra-driver-nvidia-gpu: device names `gpu-<minor>` and
`gpu-<minor>-mig-<profile>-<profileID>-<placement>` (deviceinfo.go, mig.go ToCanonicalName),
attributes and capacities as `GpuInfo.Attributes`/`CommonAttributesMig` publish them, the
classes of deployments/helm/dra-driver-nvidia-gpu/templates/deviceclass-*.yaml, pool = node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DRIVER = "gpu.nvidia.com"
API_VERSION = "resource.k8s.io/v1"
A100 = "NVIDIA A100-SXM4-80GB"
A100_LABEL = "NVIDIA-A100-SXM4-80GB"
"""The product as GPU Feature Discovery labels it, and as the inventory names it."""
EXTENDED_RESOURCE_CLAIM = "resource.kubernetes.io/extended-resource-claim"


def gpu_uuid(node: str, minor: int) -> str:
    return f"GPU-{node}-{minor:04d}"


def _product_attributes(product: str) -> dict[str, Any]:
    """What a GPU and the MIG devices carved from it share (its product, driver and CUDA)."""
    return {
        "productName": {"string": product},
        "brand": {"string": "Nvidia"},
        "architecture": {"string": "Ampere"},
        "cudaComputeCapability": {"version": "8.0.0"},
        "driverVersion": {"version": "580.95.5"},
        "cudaDriverVersion": {"version": "13.0.0"},
    }


def gpu_device(
    node: str,
    minor: int,
    *,
    product: str = A100,
    taints: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """A full GPU as the driver publishes it."""
    device: dict[str, Any] = {
        "name": f"gpu-{minor}",
        "attributes": {
            "type": {"string": "gpu"},
            "uuid": {"string": gpu_uuid(node, minor)},
            **_product_attributes(product),
            "resource.kubernetes.io/pciBusID": {"string": f"0000:{minor + 7:02x}:00.0"},
        },
        "capacity": {"memory": {"value": "80Gi"}},
    }
    if taints:
        device["taints"] = [dict(t) for t in taints]
    return device


def mig_device(
    node: str,
    minor: int,
    placement: int,
    *,
    profile: str = "1g.10gb",
    profile_id: int = 19,
    product: str = A100,
) -> dict[str, Any]:
    """A MIG device carved from GPU `minor` (a static MIG instance)."""
    return {
        "name": f"gpu-{minor}-mig-{profile.replace('.', '')}-{profile_id}-{placement}",
        "attributes": {
            "type": {"string": "mig"},
            "uuid": {"string": f"MIG-{node}-{minor}-{placement}"},
            "parentUUID": {"string": gpu_uuid(node, minor)},
            "profile": {"string": profile},
            **_product_attributes(product),
        },
        "capacity": {
            "multiprocessors": {"value": "14"},
            "copyEngines": {"value": "1"},
            "decoders": {"value": "0"},
            "encoders": {"value": "0"},
            "jpegEngines": {"value": "0"},
            "ofaEngines": {"value": "0"},
            "memory": {"value": "9856Mi"},
            f"memorySlice{placement}": {"value": "1"},
        },
    }


H100 = "NVIDIA H100 80GB HBM3"


def h100_mig_devices(node: str) -> list[dict[str, Any]]:
    """An HGX H100 node as the nodeagent's `h100-8x-mig` scenario has it, published by the DRA
    driver: GPUs 0 and 1 as seven static 1g.10gb MIG devices each, GPUs 2-7 whole."""
    migs = [
        mig_device(node, minor, placement, product=H100)
        for minor in (0, 1)
        for placement in range(7)
    ]
    return [*migs, *(gpu_device(node, minor, product=H100) for minor in range(2, 8))]


def make_slice(
    node: str,
    devices: Sequence[Mapping[str, Any]],
    *,
    name: str | None = None,
    driver: str = DRIVER,
    pool: str | None = None,
    generation: int = 1,
    slice_count: int = 1,
) -> dict[str, Any]:
    """A node-local ResourceSlice; the pool is named after the node, as NVIDIA's driver does."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceSlice",
        "metadata": {"name": name or f"{node}-{driver}"},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {
                "name": pool or node,
                "generation": generation,
                "resourceSliceCount": slice_count,
            },
            "devices": [dict(d) for d in devices],
        },
    }


def gpu_classes() -> list[dict[str, Any]]:
    """NVIDIA's DeviceClasses for its GPU driver (the Helm chart's, resource.k8s.io/v1)."""

    def device_class(name: str, kind: str, resource: str | None = None) -> dict[str, Any]:
        expression = (
            f"device.driver == '{DRIVER}' && device.attributes['{DRIVER}'].type == '{kind}'"
        )
        spec: dict[str, Any] = {"selectors": [{"cel": {"expression": expression}}]}
        if resource is not None:
            spec["extendedResourceName"] = resource
        return {
            "apiVersion": API_VERSION,
            "kind": "DeviceClass",
            "metadata": {"name": name},
            "spec": spec,
        }

    return [
        device_class("gpu.nvidia.com", "gpu", "nvidia.com/gpu"),
        device_class("mig.nvidia.com", "mig"),
        device_class("vfio.gpu.nvidia.com", "vfio"),
    ]


def make_claim(
    name: str,
    namespace: str,
    count: int = 1,
    *,
    device_class: str = "gpu.nvidia.com",
    admin_access: bool = False,
    subrequests: Sequence[str] = (),
) -> dict[str, Any]:
    """A ResourceClaim asking for `count` devices in one request `gpus`, without a status; with
    `subrequests`, a prioritized list of them (DRAPrioritizedList)."""
    exactly: dict[str, Any] = {"deviceClassName": device_class, "count": count}
    if admin_access:
        exactly["adminAccess"] = True
    request: dict[str, Any] = {"name": "gpus", "exactly": exactly}
    if subrequests:
        request = {
            "name": "gpus",
            "firstAvailable": [
                {"name": sub, "deviceClassName": device_class, "count": count}
                for sub in subrequests
            ],
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"devices": {"requests": [request]}},
    }


def allocation(
    node: str,
    devices: Sequence[str],
    *,
    pool: str | None = None,
    driver: str = DRIVER,
    request: str = "gpus",
    admin_access: bool = False,
) -> dict[str, Any]:
    """`status.allocation` as the scheduler writes it for node-local devices: one result per
    device, and a node selector that pins the claim's consumers to the node."""
    results = []
    for device in devices:
        result: dict[str, Any] = {
            "request": request,
            "driver": driver,
            "pool": pool or node,
            "device": device,
        }
        if admin_access:
            result["adminAccess"] = True
        results.append(result)
    return {
        "devices": {"results": results},
        "nodeSelector": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]
        },
    }


def reserved_for(*pods: Mapping[str, Any]) -> list[dict[str, str]]:
    """`status.reservedFor` naming each pod (name and uid) as its consumer."""
    return [
        {"resource": "pods", "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}
        for p in pods
    ]


def extended_resource_claim_status(
    claim: str, mappings: Sequence[tuple[str, str, str]]
) -> dict[str, Any]:
    """A pod's `status.extendedResourceClaimStatus` as the scheduler's PreBind records it:
    (container, resource name, request name) per mapped request."""
    return {
        "resourceClaimName": claim,
        "requestMappings": [
            {"containerName": c, "resourceName": r, "requestName": q} for c, r, q in mappings
        ],
    }


# --- Partitionable devices: NVIDIA's dynamic MIG on Kubernetes 1.34 -----------------------------

A100_MIG_PROFILES: tuple[tuple[str, int, tuple[int, ...], int, dict[str, int], int], ...] = (
    # (profile, profile id, placement starts, memory slices, engines, memory MiB): A100-SXM4-80GB
    # as `nvidia-smi mig -lgip` / `-lgipp` lists it (NVIDIA MIG user guide, "A100 MIG Profiles").
    ("1g.10gb", 19, (0, 1, 2, 3, 4, 5, 6), 1, {"multiprocessors": 14, "copyEngines": 1}, 9856),
    (
        "1g.10gb+me",
        20,
        (0, 1, 2, 3, 4, 5, 6),
        1,
        {"multiprocessors": 14, "copyEngines": 1, "decoders": 1, "jpegEngines": 1, "ofaEngines": 1},
        9856,
    ),
    (
        "1g.20gb",
        15,
        (0, 2, 4, 6),
        2,
        {"multiprocessors": 14, "copyEngines": 1, "decoders": 1},
        19968,
    ),
    ("2g.20gb", 14, (0, 2, 4), 2, {"multiprocessors": 28, "copyEngines": 2, "decoders": 1}, 19968),
    ("3g.40gb", 9, (0, 4), 4, {"multiprocessors": 42, "copyEngines": 3, "decoders": 2}, 40192),
    ("4g.40gb", 5, (0,), 4, {"multiprocessors": 56, "copyEngines": 4, "decoders": 2}, 40192),
    (
        "7g.80gb",
        0,
        (0,),
        8,
        {"multiprocessors": 98, "copyEngines": 7, "decoders": 5, "jpegEngines": 1, "ofaEngines": 1},
        80896,
    ),
)
_ENGINES = ("multiprocessors", "copyEngines", "decoders", "encoders", "jpegEngines", "ofaEngines")


def _dns(name: str) -> str:
    """A capacity name as a counter name (partitions.go camelToDNSName): copyEngines ->
    copy-engines."""
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name)


def _capacities(engines: Mapping[str, int], memory_mib: int) -> dict[str, int]:
    """CommonCapacitiesMig: every engine (0 when absent) and memory in bytes."""
    return {**{e: engines.get(e, 0) for e in _ENGINES}, "memory": memory_mib * 1024 * 1024}


def _consumes(counter_set: str, capacities: Mapping[str, int], slices: range) -> dict[str, Any]:
    """PartConsumesCounters: the capacities as counters plus one `memory-slice-<i>` each."""
    counters = {_dns(k): {"value": str(v)} for k, v in capacities.items()}
    counters.update({f"memory-slice-{i}": {"value": "1"} for i in slices})
    return {"counterSet": counter_set, "counters": counters}


def placement_name(minor: int, profile: str, profile_id: int, start: int) -> str:
    """mig.go ToCanonicalName: `gpu-0-mig-3g40gb-9-0`; `+` is not RFC 1123, so `1g10gb-me`."""
    compact = profile.replace(".", "").replace("+", "-")
    return f"gpu-{minor}-mig-{compact}-{profile_id}-{start}"


def dynamic_mig_slice(
    node: str, minor: int, *, generation: int = 1, slice_count: int = 1, product: str = A100
) -> dict[str, Any]:
    """One GPU as NVIDIA's driver publishes it with DynamicMIG on Kubernetes 1.34
    (driver.go generateCombinedResourceSlices): a slice of its own, with the GPU's counter set
    (`gpu-<minor>-counter-set`: the largest profile's capacities and every memory slice), the
    whole GPU consuming all of it, and every MIG placement consuming its share; placements
    carry `parentUUID` and `profile` but no `uuid` (mig.go CommonAttributesMig)."""
    counter_set = f"gpu-{minor}-counter-set"
    largest = _capacities(A100_MIG_PROFILES[-1][4], A100_MIG_PROFILES[-1][5])
    whole = gpu_device(node, minor, product=product)
    whole["capacity"] = {k: {"value": str(v)} for k, v in largest.items()}
    whole["consumesCounters"] = [_consumes(counter_set, largest, range(8))]
    devices = [whole]
    for profile, profile_id, starts, size, engines, memory in A100_MIG_PROFILES:
        capacities = _capacities(engines, memory)
        for start in starts:
            devices.append(
                {
                    "name": placement_name(minor, profile, profile_id, start),
                    "attributes": {
                        "type": {"string": "mig"},
                        "parentUUID": {"string": gpu_uuid(node, minor)},
                        "profile": {"string": profile},
                        **_product_attributes(product),
                    },
                    "capacity": {k: {"value": str(v)} for k, v in capacities.items()},
                    "consumesCounters": [
                        _consumes(counter_set, capacities, range(start, start + size))
                    ],
                }
            )
    body = make_slice(
        node,
        devices,
        name=f"{node}-gpu-{minor}",
        generation=generation,
        slice_count=slice_count,
    )
    own = _consumes(counter_set, largest, range(8))["counters"]
    body["spec"]["sharedCounters"] = [{"name": counter_set, "counters": own}]
    return body
