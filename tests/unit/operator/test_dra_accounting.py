"""DRA accounting: pools gathered as the scheduler gathers them, and one node's devices counted
per resource name, physical GPU and product."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_inventory.operator.accounting import ResourceCounts
from gpu_inventory.operator.dra import accounting, projections
from gpu_inventory.operator.dra.projections import DeviceKey, SliceProjection
from gpu_inventory.testing import dra
from gpu_inventory.testing.builders import make_node
from gpu_inventory.testing.streams import synced_store

GPU, MIG = "nvidia.com/gpu", "nvidia.com/mig-1g.10gb"
XID = {"key": "gpu.nvidia.com/xid", "value": "79", "effect": "NoSchedule"}
DRAIN = {"key": "example.com/drain", "effect": "NoExecute"}


def piece(
    devices: Sequence[dict[str, Any]], *, generation: int = 1, count: int = 1, node: str = "n"
) -> SliceProjection:
    body = dra.make_slice(node, devices, generation=generation, slice_count=count)
    projected = projections.project_slice(body, {dra.DRIVER})
    assert projected is not None
    return projected


# --- pools ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slices", "want_devices", "want_counted", "want_why"),
    [
        ([piece([dra.gpu_device("n", 0)])], ["gpu-0"], True, ""),
        (
            # Republished: generation 2 replaces every slice of generation 1.
            [
                piece([dra.gpu_device("n", 0)], generation=1),
                piece([dra.gpu_device("n", 1)], generation=2),
            ],
            ["gpu-1"],
            True,
            "",
        ),
        (
            # Out-dated slices are ignored, whatever the order they arrive in.
            [
                piece([dra.gpu_device("n", 1)], generation=2),
                piece([dra.gpu_device("n", 0)], generation=1),
            ],
            ["gpu-1"],
            True,
            "",
        ),
        (
            # One of two slices of generation 3 published so far.
            [piece([dra.gpu_device("n", 0)], generation=3, count=2)],
            ["gpu-0"],
            False,
            "incomplete: 1 of 2 slices",
        ),
        (
            [
                piece([dra.gpu_device("n", 0)], count=2),
                piece([dra.gpu_device("n", 1)], count=2),
            ],
            ["gpu-0", "gpu-1"],
            True,
            "",
        ),
        (
            [piece([dra.gpu_device("n", 0)], count=2), piece([dra.gpu_device("n", 0)], count=2)],
            ["gpu-0", "gpu-0"],
            False,
            "invalid: duplicate device name",
        ),
        (
            [piece([dra.gpu_device("n", 0)], count=1), piece([dra.gpu_device("n", 1)], count=2)],
            ["gpu-0", "gpu-1"],
            False,
            "incomplete: its slices disagree on resourceSliceCount [1, 2]",
        ),
    ],
    ids=[
        "one-slice",
        "republished",
        "outdated-last",
        "incomplete",
        "two-slices",
        "duplicate",
        "disagreeing-counts",
    ],
)
def test_gathering_keeps_the_newest_generation_of_complete_valid_pools(
    slices: list[SliceProjection], want_devices: list[str], want_counted: bool, want_why: str
) -> None:
    pool = accounting.gather_pool(slices)
    assert pool is not None
    assert sorted(d.name for d in pool.devices) == want_devices
    assert (pool.counted, pool.why_not) == (want_counted, want_why)
    assert pool.node_of(want_devices[0]) == ("n" if want_counted else None)


# --- one node ------------------------------------------------------------------------------------


def count(
    devices: Sequence[dict[str, Any]],
    allocated: Collection[str] = (),
    classes: Sequence[dict[str, Any]] = (),
    selected: Collection[str] | None = None,
) -> accounting.NodeCounts:
    pool = accounting.gather_pool([piece(devices)])
    assert pool is not None
    assert pool.counted
    keys: set[DeviceKey] = {(dra.DRIVER, "n", name) for name in allocated}
    class_projections = {
        body["metadata"]["name"]: c
        for body in classes
        if (c := projections.project_class(body)) is not None
    }
    name_of = accounting.naming(
        class_projections, (lambda _: True) if selected is None else selected.__contains__
    )
    return accounting.node_counts(
        ((pool.driver, pool.name, d) for d in pool.devices), keys, name_of
    )


def rc(capacity: int, allocatable: int, allocated: int) -> ResourceCounts:
    return ResourceCounts(capacity, allocatable, allocated, max(0, allocatable - allocated))


FOUR_GPUS = [dra.gpu_device("n", i) for i in range(4)]
MIG_NODE = [dra.mig_device("n", g, p) for g in range(2) for p in range(3)]


@pytest.mark.parametrize(
    ("devices", "allocated", "want_resources", "want_gpus", "want_unhealthy"),
    [
        (FOUR_GPUS, [], {GPU: rc(4, 4, 0)}, 4, 0),
        (FOUR_GPUS, ["gpu-1", "gpu-3"], {GPU: rc(4, 4, 2)}, 4, 0),
        # Static MIG: only the MIG devices are published; their parents are the GPUs.
        (MIG_NODE, ["gpu-1-mig-1g10gb-19-2"], {MIG: rc(6, 6, 1)}, 2, 0),
        # A MIG node that also published its whole GPUs (driver bug #719): GPUs counted once,
        # and a GPU with an allocated MIG device cannot be handed out whole.
        (
            [*MIG_NODE, dra.gpu_device("n", 0), dra.gpu_device("n", 1)],
            ["gpu-1-mig-1g10gb-19-0"],
            {GPU: rc(2, 2, 1), MIG: rc(6, 6, 1)},
            2,
            0,
        ),
        # The whole GPU allocated: its MIG devices are in use too.
        (
            [*MIG_NODE[:3], dra.gpu_device("n", 0)],
            ["gpu-0"],
            {GPU: rc(1, 1, 1), MIG: rc(3, 3, 3)},
            1,
            0,
        ),
        # Taints: unavailable either way; only the driver's health taints make it unhealthy.
        (
            [
                dra.gpu_device("n", 0, taints=[XID]),
                dra.gpu_device("n", 1, taints=[DRAIN]),
                *FOUR_GPUS[2:],
            ],
            [],
            {GPU: rc(4, 2, 0)},
            4,
            1,
        ),
        # A tainted device a claim tolerates is still in use (allocated above allocatable).
        ([dra.gpu_device("n", 0, taints=[XID])], ["gpu-0"], {GPU: rc(1, 0, 1)}, 1, 1),
    ],
    ids=[
        "full-gpus",
        "two-allocated",
        "static-mig",
        "mig-and-whole",
        "whole-holds-mig",
        "taints",
        "tolerated-taint",
    ],
)
def test_a_nodes_devices_are_counted_per_resource_and_physical_gpu(
    devices: list[dict[str, Any]],
    allocated: list[str],
    want_resources: dict[str, ResourceCounts],
    want_gpus: int,
    want_unhealthy: int,
) -> None:
    got = count(devices, allocated)
    assert dict(got.resources) == want_resources
    assert (got.gpus, got.unhealthy) == (want_gpus, want_unhealthy)


def test_passthrough_siblings_of_one_gpu_are_one_unit() -> None:
    # NVIDIA publishes a GPU that can be passed through twice, as `gpu-0` and `gpu-vfio-0` of
    # one UUID, allocatable one way at a time (allocatable.go RemoveSiblingDevices).
    vfio = dra.gpu_device("n", 0)
    vfio["name"] = "gpu-vfio-0"
    vfio["attributes"]["type"] = {"string": "vfio"}
    got = count([dra.gpu_device("n", 0), vfio], ["gpu-vfio-0"])
    assert dict(got.resources) == {GPU: rc(1, 1, 1)}
    assert got.gpus == 1


def test_a_class_that_maps_a_name_decides_the_resource() -> None:
    ordinary = dra.gpu_classes()
    assert dict(count(MIG_NODE[:2], classes=ordinary).resources) == {MIG: rc(2, 2, 0)}
    mapped = dra.gpu_classes()[1]
    mapped["spec"]["extendedResourceName"] = "example.com/mig-slice"
    got = count(MIG_NODE[:2], classes=[*ordinary, mapped])
    assert dict(got.resources) == {"example.com/mig-slice": rc(2, 2, 0)}


def test_of_two_classes_selecting_a_device_the_first_by_name_names_it() -> None:
    first, second = dra.gpu_classes()[0], dra.gpu_classes()[0]
    first["metadata"]["name"], second["metadata"]["name"] = "b-gpus", "a-gpus"
    second["spec"]["extendedResourceName"] = "example.com/gpu"
    twin = dra.gpu_classes()[0]
    twin["metadata"]["name"] = "c-gpus"  # one name mapped by two classes is no error either
    got = count(FOUR_GPUS, classes=[first, second, twin])
    assert dict(got.resources) == {"example.com/gpu": rc(4, 4, 0)}


def test_only_selected_resource_names_are_counted_but_every_gpu_is() -> None:
    got = count([*MIG_NODE[:3], dra.gpu_device("n", 1)], selected={GPU})
    assert dict(got.resources) == {GPU: rc(1, 1, 0)}
    assert got.gpus == 2


def test_the_product_is_the_most_common_one() -> None:
    devices = [
        dra.gpu_device("n", 0, product="NVIDIA H100 80GB HBM3"),
        dra.gpu_device("n", 1),
        dra.gpu_device("n", 2),
    ]
    assert count(devices).product == dra.A100_LABEL
    assert count([]).product == ""


def test_a_mig_profile_with_attributes_gets_the_device_plugins_name() -> None:
    # go-nvlib names a profile with the media extensions `1g.10gb+me`; the device plugin
    # advertises it as `nvidia.com/mig-1g.10gb.me` (a resource name is a DNS subdomain:
    # k8s-device-plugin api/config/v1/resources.go NewResourceName).
    got = count([dra.mig_device("n", 0, 0, profile="1g.10gb+me", profile_id=20)])
    assert dict(got.resources) == {"nvidia.com/mig-1g.10gb.me": rc(1, 1, 0)}


# --- partitionable devices (dynamic MIG) --------------------------------------------------------


def dynamic_mig_counts(allocated: Collection[str]) -> dict[str, tuple[int, int, int, int]]:
    """Two A100s published as NVIDIA's driver does with DynamicMIG on 1.34 (one slice per GPU,
    each with its counter set), counted through the store as the operator counts a node."""
    claims = []
    for index, name in enumerate(allocated):
        body = dra.make_claim(f"c{index}", "ml", device_class="mig.nvidia.com")
        body["metadata"]["uid"] = f"claim-{index}"
        body["status"] = {"allocation": dra.allocation("n", [name])}
        claims.append(body)
    slices = [dra.dynamic_mig_slice("n", minor, slice_count=2) for minor in (0, 1)]
    store = synced_store(nodes=[make_node("n")], slices=slices, claims=claims)
    got = store.dra.counts("n", lambda _: True)
    assert got is not None
    assert got.gpus == 2  # placements carry parentUUID and no uuid: no extra GPUs
    return {
        name: (c.capacity, c.allocatable, c.allocated, c.available)
        for name, c in got.resources.items()
    }


PER_GPU = {
    "nvidia.com/gpu": 1,
    "nvidia.com/mig-1g.10gb": 7,
    "nvidia.com/mig-1g.10gb.me": 7,
    "nvidia.com/mig-1g.20gb": 4,
    "nvidia.com/mig-2g.20gb": 3,
    "nvidia.com/mig-3g.40gb": 2,
    "nvidia.com/mig-4g.40gb": 1,
    "nvidia.com/mig-7g.80gb": 1,
}


def test_idle_partitionable_gpus_offer_every_placement() -> None:
    assert dynamic_mig_counts([]) == {r: (2 * n, 2 * n, 0, 2 * n) for r, n in PER_GPU.items()}


def test_an_allocated_partition_leaves_only_what_its_counters_allow() -> None:
    # 3g.40gb at placement 0 of gpu-0 takes memory slices 0-3 and 42 of 98 SMs
    # (allocator_stable.go checkAvailableCounters): on gpu-0 only placements within slices
    # 4-7 still fit; gpu-1 is whole.
    got = dynamic_mig_counts([dra.placement_name(0, "3g.40gb", 9, 0)])
    assert got == {
        "nvidia.com/gpu": (2, 2, 1, 1),  # gpu-0 is carved
        "nvidia.com/mig-1g.10gb": (14, 14, 0, 3 + 7),
        "nvidia.com/mig-1g.10gb.me": (14, 14, 0, 3 + 7),
        "nvidia.com/mig-1g.20gb": (8, 8, 0, 2 + 4),
        "nvidia.com/mig-2g.20gb": (6, 6, 0, 1 + 3),
        "nvidia.com/mig-3g.40gb": (4, 4, 1, 1 + 2),
        "nvidia.com/mig-4g.40gb": (2, 2, 0, 0 + 1),
        "nvidia.com/mig-7g.80gb": (2, 2, 0, 0 + 1),
    }


def test_a_small_partition_blocks_the_whole_gpu_and_its_largest_profile() -> None:
    got = dynamic_mig_counts([dra.placement_name(1, "1g.10gb", 19, 0)])
    assert got["nvidia.com/mig-7g.80gb"] == (2, 2, 0, 1)
    assert got["nvidia.com/gpu"] == (2, 2, 1, 1)
    # Placement 0 of 1g.10gb and of 1g.10gb+me share memory slice 0: both gone on gpu-1.
    assert got["nvidia.com/mig-1g.10gb"] == (14, 14, 1, 13)
    assert got["nvidia.com/mig-1g.10gb.me"] == (14, 14, 0, 13)


def test_the_whole_gpu_allocated_leaves_no_partition_of_it() -> None:
    got = dynamic_mig_counts(["gpu-0"])
    assert got["nvidia.com/gpu"] == (2, 2, 1, 1)
    assert got["nvidia.com/mig-1g.10gb"] == (14, 14, 7, 7)
    assert got["nvidia.com/mig-7g.80gb"] == (2, 2, 1, 1)


PLACEMENTS = [
    (minor, profile, profile_id, start, size, engines, memory)
    for minor in (0, 1)
    for profile, profile_id, starts, size, engines, memory in dra.A100_MIG_PROFILES
    for start in starts
]


def free_placements(held: set[int]) -> dict[str, int]:
    """The reference, from the A100's hardware rules rather than from counters: a free
    placement can be created when none of its memory slices is taken and the engines and
    memory the held placements of its GPU leave suffice; a GPU held beyond what it has
    (over-allocated) offers nothing."""
    whole = dict(dra.A100_MIG_PROFILES[-1][4], memory=dra.A100_MIG_PROFILES[-1][5])
    free: dict[str, int] = {}
    for minor in (0, 1):
        mine = [(i, p) for i, p in enumerate(PLACEMENTS) if p[0] == minor]
        taken = [p for i, p in mine if i in held]
        slices = [s for p in taken for s in range(p[3], p[3] + p[4])]
        left = {
            k: v - sum(dict(p[5], memory=p[6]).get(k, 0) for p in taken) for k, v in whole.items()
        }
        broken = len(slices) != len(set(slices)) or any(v < 0 for v in left.values())
        for i, (_, profile, _, start, size, engines, memory) in mine:
            name = "nvidia.com/mig-" + profile.replace("+", ".")
            need = dict(engines, memory=memory)
            fits = not broken and not set(range(start, start + size)) & set(slices)
            fits = fits and all(left.get(k, 0) >= v for k, v in need.items())
            free[name] = free.get(name, 0) + (1 if fits and i not in held else 0)
    return free


@settings(max_examples=60, deadline=None)
@given(held=st.sets(st.integers(0, len(PLACEMENTS) - 1), max_size=6))
def test_available_partitions_match_the_hardware_rules(held: set[int]) -> None:
    names = [dra.placement_name(m, p, pid, s) for m, p, pid, s, *_ in (PLACEMENTS[i] for i in held)]
    got = dynamic_mig_counts(names)
    assert {r: c[3] for r, c in got.items() if r != "nvidia.com/gpu"} == free_placements(held)
