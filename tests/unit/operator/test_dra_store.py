"""DRA through the store and both writers: a DRA node beside a device-plugin node in one
inventory, claims counted once, pods served through DRAExtendedResource not counted twice,
republished and incomplete pools, taints, and a phase that waits only for what is watched."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpu_inventory.api.models import GPUInventorySpec, GPUInventoryStatus
from gpu_inventory.operator import status
from gpu_inventory.operator.config import OperatorConfig
from gpu_inventory.operator.gpunode_writer import GPUNodeWriter
from gpu_inventory.operator.inventory_writer import InventoryWriter
from gpu_inventory.operator.metrics import Metrics
from gpu_inventory.operator.store import Kind, Phase, Store
from gpu_inventory.operator.verdicts import OperatorHealth
from gpu_inventory.operator.writing import Shared
from gpu_inventory.testing import dra
from gpu_inventory.testing.builders import container, make_gpunode, make_node, make_pod
from gpu_inventory.testing.fakeapi import FakeApi
from gpu_inventory.testing.streams import (
    facts_cache_of,
    listing,
    synced_store,
    watch,
    with_uid,
)

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
GPU = "nvidia.com/gpu"
XID = {"key": "gpu.nvidia.com/xid", "value": "79", "effect": "NoSchedule"}


def node(name: str, gpus: int = 0) -> dict[str, Any]:
    body = make_node(name, gpus=gpus)
    body["metadata"]["uid"] = f"uid-{name}"
    body["metadata"]["creationTimestamp"] = (NOW - timedelta(days=1)).isoformat()
    return body


def gpu_slice(node_name: str, gpus: int, **kwargs: Any) -> dict[str, Any]:
    devices = [dra.gpu_device(node_name, i) for i in range(gpus)]
    return with_uid(dra.make_slice(node_name, devices, **kwargs))


def claim(name: str, devices: list[str], node_name: str = "dra", **kwargs: Any) -> dict[str, Any]:
    body = with_uid(dra.make_claim(name, "ml", len(devices)))
    body["status"] = {"allocation": dra.allocation(node_name, devices, **kwargs)}
    return body


def served_pod(name: str, node_name: str, claim_name: str) -> dict[str, Any]:
    """A pod asking for one nvidia.com/gpu that the scheduler served through DRA."""
    pod = with_uid(make_pod(name, namespace="ml", node=node_name, gpus=1))
    pod["status"] = {
        "phase": "Running",
        "extendedResourceClaimStatus": dra.extended_resource_claim_status(
            claim_name, [("main", GPU, "container-0-request-0")]
        ),
    }
    return pod


def mixed_cluster() -> Store:
    """`dp`: 4 device-plugin GPUs, one pod holds 1. `dra`: 4 DRA GPUs; a claim shared by two
    pods holds gpu-0 and gpu-1, an admin-access claim looks at gpu-2, and a pod asking for
    nvidia.com/gpu is served through DRA with gpu-3."""
    return synced_store(
        nodes=[node("dp", gpus=4), node("dra")],
        pods=[
            with_uid(make_pod("dp-job", namespace="ml", node="dp", gpus=1)),
            served_pod("served", "dra", "served-extended-resources-x"),
        ],
        classes=dra.gpu_classes(),
        slices=[gpu_slice("dra", 4)],
        claims=[
            claim("shared", ["gpu-0", "gpu-1"]),
            claim("monitor", ["gpu-2"], admin_access=True),
            claim("served-extended-resources-x", ["gpu-3"], request="container-0-request-0"),
        ],
    )


def desired(store: Store, spec: GPUInventorySpec | None = None) -> GPUInventoryStatus:
    spec = spec or GPUInventorySpec()
    return status.desired_status(
        facts_cache_of(store, spec=spec, now=NOW),
        spec,
        generation=1,
        existing=None,
        health=OperatorHealth(),
        malformed_pods=store.malformed_pods(),
        skipped_pods=store.skipped_pods(),
        last_sync_time=None,
        now=NOW,
    )


def rows(got: GPUInventoryStatus) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    return {
        (r.name, r.source): (r.capacity, r.allocatable, r.allocated, r.available)
        for r in got.resources
    }


def test_a_dra_node_and_a_device_plugin_node_in_one_inventory() -> None:
    got = desired(mixed_cluster())
    assert rows(got) == {(GPU, "DevicePlugin"): (4, 4, 1, 3), (GPU, "DRA"): (4, 4, 3, 1)}
    summary = got.summary
    assert (summary.nodes, summary.gpus) == (2, 8)
    assert (summary.capacity, summary.allocatable, summary.allocated, summary.available) == (
        8,
        8,
        4,
        4,
    )
    assert summary.products == [dra.A100_LABEL, "Tesla-T4"]
    dra_row = next(r for r in got.nodes if r.name == "dra")
    assert (dra_row.source, dra_row.product, dra_row.gpus) == ("DRA", dra.A100_LABEL, 4)
    assert (dra_row.allocatable, dra_row.allocated) == (4, 3)
    assert next(r for r in got.nodes if r.name == "dp").source == "DevicePlugin"
    by_product = {p.product: (p.nodes, p.gpus, p.allocated) for p in got.products}
    assert by_product == {dra.A100_LABEL: (1, 4, 3), "Tesla-T4": (1, 4, 1)}


def test_a_pod_served_through_dra_is_counted_through_its_claim_only() -> None:
    store = mixed_cluster()
    assert store.allocated.get("dra", {}) == {}  # its nvidia.com/gpu request is not a request
    # The same pod without the mapping (a device-plugin node would serve it) is counted.
    plain = with_uid(make_pod("plain", namespace="ml", node="dp", gpus=2))
    watch(store, Kind.PODS, "ADDED", plain)
    assert store.allocated["dp"] == {GPU: 3}


def test_a_pod_keeps_the_requests_dra_does_not_serve() -> None:
    pod = served_pod("two", "dra", "c")
    pod["spec"]["containers"].append(
        container("sidecar", resources={"nvidia.com/mig-1g.10gb": "1"})
    )
    store = synced_store(nodes=[node("dra")], pods=[pod], dra=True)
    assert store.allocated["dra"] == {"nvidia.com/mig-1g.10gb": 1}


def test_claim_events_move_the_counts_and_mark_only_their_node() -> None:
    store = mixed_cluster()
    store.take_facts_dirty()
    shared = claim("shared", ["gpu-0", "gpu-1"])
    watch(store, Kind.RESOURCE_CLAIMS, "DELETED", shared)
    assert store.take_facts_dirty() == {"dra"}
    assert rows(desired(store))[(GPU, "DRA")] == (4, 4, 1, 3)
    # A second claim on a device another claim holds changes nothing: a device is in use once.
    watch(store, Kind.RESOURCE_CLAIMS, "ADDED", claim("again", ["gpu-3"]))
    assert store.take_facts_dirty() == set()
    assert rows(desired(store))[(GPU, "DRA")] == (4, 4, 1, 3)
    # Its reservation changing (a pod more or less) is not a change of what it holds.
    shared_by_three = claim("shared", ["gpu-0", "gpu-1"])
    shared_by_three["status"]["reservedFor"] = [{"resource": "pods", "name": "p", "uid": "u"}]
    watch(store, Kind.RESOURCE_CLAIMS, "ADDED", shared)
    store.take_facts_dirty()
    watch(store, Kind.RESOURCE_CLAIMS, "MODIFIED", shared_by_three)
    assert store.take_facts_dirty() == set()


def test_a_republished_pool_counts_its_newest_generation() -> None:
    store = mixed_cluster()
    store.take_facts_dirty()
    watch(store, Kind.RESOURCE_SLICES, "MODIFIED", gpu_slice("dra", 5, generation=2))
    assert store.take_facts_dirty() == {"dra"}
    assert rows(desired(store))[(GPU, "DRA")] == (5, 5, 3, 2)


def test_an_incomplete_pool_keeps_its_node_but_counts_nothing_until_complete() -> None:
    store = mixed_cluster()
    first = gpu_slice("dra", 2, name="dra-a", generation=3, slice_count=2)
    watch(store, Kind.RESOURCE_SLICES, "DELETED", gpu_slice("dra", 4))
    watch(store, Kind.RESOURCE_SLICES, "ADDED", first)
    got = desired(store)
    assert (GPU, "DRA") not in rows(got)
    assert next(r for r in got.nodes if r.name == "dra").source == "DRA"
    second = dra.make_slice(
        "dra",
        [dra.gpu_device("dra", 2), dra.gpu_device("dra", 3)],
        name="dra-b",
        generation=3,
        slice_count=2,
    )
    watch(store, Kind.RESOURCE_SLICES, "ADDED", with_uid(second))
    assert rows(desired(store))[(GPU, "DRA")] == (4, 4, 3, 1)


def two_slice_pool(generation: int, first: range, second: range) -> list[dict[str, Any]]:
    """Node `dra`'s pool as two slices `dra-a` and `dra-b` of one generation."""
    return [
        gpu_range(name, generation, minors)
        for name, minors in (("dra-a", first), ("dra-b", second))
    ]


def gpu_range(name: str, generation: int, minors: range) -> dict[str, Any]:
    devices = [dra.gpu_device("dra", i) for i in minors]
    body = dra.make_slice("dra", devices, name=name, generation=generation, slice_count=2)
    body["metadata"]["uid"] = f"uid-{name}"
    return body


def test_a_pool_republished_one_slice_at_a_time_counts_its_last_complete_generation() -> None:
    # The kubelet rewrites a pool one slice per API call after a generation bump; the scheduler
    # keeps allocating from it meanwhile (allocator_stable.go refuses an incomplete pool only for
    # allocationMode All), so its GPUs are counted as the last complete generation had them.
    store = mixed_cluster()
    watch(store, Kind.RESOURCE_SLICES, "DELETED", gpu_slice("dra", 4))
    for body in two_slice_pool(1, range(0, 2), range(2, 4)):
        watch(store, Kind.RESOURCE_SLICES, "ADDED", body)
    assert rows(desired(store))[(GPU, "DRA")] == (4, 4, 3, 1)
    store.take_facts_dirty()
    grown = two_slice_pool(2, range(0, 3), range(3, 6))
    watch(store, Kind.RESOURCE_SLICES, "MODIFIED", grown[0])
    assert rows(desired(store))[(GPU, "DRA")] == (4, 4, 3, 1)
    assert store.take_facts_dirty() == {"dra"}  # its `why_not` changed
    assert store.dra.why_not("dra") == (
        "pool gpu.nvidia.com/dra: incomplete: 1 of 2 slices at generation 2;"
        " counting the last complete one (generation 1) meanwhile",
    )
    watch(store, Kind.RESOURCE_SLICES, "MODIFIED", grown[1])
    assert rows(desired(store))[(GPU, "DRA")] == (6, 6, 3, 3)
    assert store.take_facts_dirty() == {"dra"}
    assert store.dra.why_not("dra") == ()


def test_a_pool_never_seen_complete_counts_nothing_and_says_why() -> None:
    store = mixed_cluster()
    watch(store, Kind.RESOURCE_SLICES, "DELETED", gpu_slice("dra", 4))
    watch(store, Kind.RESOURCE_SLICES, "ADDED", gpu_range("dra-a", 1, range(0, 2)))
    got = desired(store)
    assert (GPU, "DRA") not in rows(got)
    assert next(r for r in got.nodes if r.name == "dra").source == "DRA"
    assert store.dra.why_not("dra") == ("pool gpu.nvidia.com/dra: incomplete: 1 of 2 slices",)


def test_a_pool_with_a_duplicate_device_name_counts_nothing_and_says_why() -> None:
    store = mixed_cluster()
    watch(store, Kind.RESOURCE_SLICES, "DELETED", gpu_slice("dra", 4))
    for body in two_slice_pool(1, range(0, 2), range(1, 3)):
        watch(store, Kind.RESOURCE_SLICES, "ADDED", body)
    assert (GPU, "DRA") not in rows(desired(store))
    assert store.dra.why_not("dra") == ("pool gpu.nvidia.com/dra: invalid: duplicate device name",)


def test_a_pools_problem_is_logged_once_per_generation(caplog: pytest.LogCaptureFixture) -> None:
    store = mixed_cluster()
    watch(store, Kind.RESOURCE_SLICES, "DELETED", gpu_slice("dra", 4))
    with caplog.at_level(logging.WARNING):
        watch(store, Kind.RESOURCE_SLICES, "ADDED", gpu_range("dra-a", 1, range(0, 2)))
        watch(store, Kind.RESOURCE_SLICES, "MODIFIED", gpu_range("dra-a", 1, range(0, 1)))
        watch(store, Kind.RESOURCE_SLICES, "MODIFIED", gpu_range("dra-a", 2, range(0, 2)))
    assert [r.getMessage() for r in caplog.records] == [
        "pool gpu.nvidia.com/dra: incomplete: 1 of 2 slices (DRA devices)",
        "pool gpu.nvidia.com/dra: incomplete: 1 of 2 slices (DRA devices)",
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        watch(store, Kind.RESOURCE_SLICES, "ADDED", gpu_range("dra-b", 2, range(2, 4)))
        # Republished at generation 3: routine, the complete generation 2 counts meanwhile.
        watch(store, Kind.RESOURCE_SLICES, "MODIFIED", gpu_range("dra-b", 3, range(2, 4)))
        watch(store, Kind.RESOURCE_SLICES, "MODIFIED", gpu_range("dra-a", 3, range(0, 2)))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.INFO,
            "pool gpu.nvidia.com/dra: incomplete: 1 of 2 slices at generation 3;"
            " counting the last complete one (generation 2) meanwhile (DRA devices)",
        )
    ]
    assert store.dra.why_not("dra") == ()


def test_a_fatal_xid_taint_makes_a_gpu_unavailable_and_unhealthy() -> None:
    store = mixed_cluster()
    tainted = gpu_slice("dra", 4)
    tainted["spec"]["devices"][3]["taints"] = [XID]  # gpu-3, which the served pod holds
    watch(store, Kind.RESOURCE_SLICES, "MODIFIED", tainted)
    got = desired(store)
    assert rows(got)[(GPU, "DRA")] == (4, 3, 3, 0)
    assert got.summary.unhealthy_gpus == 1
    assert next(r for r in got.nodes if r.name == "dra").unhealthy == 1
    degraded = next(c for c in got.conditions if c.type == "Degraded")
    assert degraded.status == "True"
    assert "1 unhealthy GPU" in degraded.message


def test_devices_of_other_drivers_are_not_gpus() -> None:
    imex = with_uid(
        dra.make_slice("dra", [{"name": "channel-0"}], driver="compute-domain.nvidia.com")
    )
    store = synced_store(nodes=[node("dra")], slices=[imex])
    assert not store.dra.slices.live
    assert desired(store).summary.nodes == 0


def test_the_phase_waits_for_dra_kinds_only_where_they_are_watched() -> None:
    plain = Store()
    for kind in (Kind.INVENTORY, Kind.NODES, Kind.GPUNODES, Kind.PODS):
        listing(plain, kind, [])
    assert plain.phase() is Phase.CURRENT
    watched = Store()
    watched.watch_dra()
    for kind in (Kind.INVENTORY, Kind.NODES, Kind.GPUNODES, Kind.PODS):
        listing(watched, kind, [])
    assert watched.phase() is Phase.INDEXING
    listing(watched, Kind.RESOURCE_SLICES, [gpu_slice("dra", 1)])
    listing(watched, Kind.DEVICE_CLASSES, [])
    assert watched.phase() is Phase.INDEXING
    listing(watched, Kind.RESOURCE_CLAIMS, [])
    assert watched.phase() is Phase.CURRENT


class Writers:
    def __init__(self, store: Store) -> None:
        self.api = FakeApi()
        shared = Shared(
            store,
            OperatorConfig(),
            metrics=Metrics(),
            clock=lambda: 1000.0,
            wallclock=lambda: NOW,
        )
        self.inventory = InventoryWriter(shared, self.api)
        self.gpunodes = GPUNodeWriter(shared, self.api)


async def test_both_writers_publish_the_dra_node() -> None:
    writers = Writers(mixed_cluster())
    await writers.inventory.run_pass()
    assert writers.api.inventory is not None
    written = writers.api.inventory["status"]
    assert {(r["name"], r["source"]) for r in written["resources"]} == {
        (GPU, "DevicePlugin"),
        (GPU, "DRA"),
    }
    dra_row = next(r for r in written["nodes"] if r["name"] == "dra")
    assert dra_row["source"] == "DRA"
    assert "source" not in next(r for r in written["nodes"] if r["name"] == "dp")
    report = await writers.gpunodes.run_pass()  # creates the GPUNodes nobody created
    assert sorted(report.created) == ["dp", "dra"]
    await writers.gpunodes.run_pass()
    view = writers.api.gpunodes["dra"]["status"]["kubernetes"]
    assert view["source"] == "DRA"
    assert view["gpuResources"] == [{"name": GPU, "capacity": 4, "allocatable": 4, "allocated": 3}]
    assert view["allocated"] == 3


async def test_a_change_of_dra_drivers_reads_slices_and_claims_again() -> None:
    writers = Writers(mixed_cluster())
    store = writers.inventory.store
    await writers.inventory.run_pass()
    other = "gpu.example.com"
    example = with_uid(
        dra.make_slice("dp", [dra.gpu_device("dp", 0)], driver=other, name="dp-example")
    )
    writers.api.listed[Kind.RESOURCE_SLICES] = [gpu_slice("dra", 4), example]
    writers.api.listed[Kind.RESOURCE_CLAIMS] = [claim("shared", ["gpu-0", "gpu-1"])]
    assert writers.api.inventory is not None
    writers.api.inventory["spec"] = GPUInventorySpec(dra_drivers=[dra.DRIVER, other]).to_wire()
    writers.api.inventory["metadata"]["generation"] = 2
    writers.api.touch_inventory()
    watch(store, Kind.INVENTORY, "MODIFIED", writers.api.inventory)
    assert store.pending_refresh == {Kind.RESOURCE_SLICES, Kind.RESOURCE_CLAIMS}
    assert store.phase() is Phase.REFRESHING
    report = await writers.inventory.run_pass()
    assert sorted(report.refreshed) == ["resourceclaims", "resourceslices"]
    assert store.phase() is Phase.CURRENT
    assert set(store.dra.slices.live) == {"dra-gpu.nvidia.com", "dp-example"}
    await writers.inventory.run_pass()
    dp_row = next(r for r in writers.api.inventory["status"]["nodes"] if r["name"] == "dp")
    assert dp_row["source"] == "DRA"  # its devices now come from a GPU driver too


def test_the_last_listing_wakes_both_writers_even_when_it_changes_no_node() -> None:
    store = Store()
    store.watch_dra()
    woken: list[str] = []
    store.on_inventory_change = lambda: woken.append("inventory")
    store.on_views_change = lambda: woken.append("views")
    for kind in (Kind.INVENTORY, Kind.NODES, Kind.GPUNODES, Kind.PODS, Kind.RESOURCE_SLICES):
        listing(store, kind, [node("dp", gpus=4)] if kind is Kind.NODES else [])
    listing(store, Kind.RESOURCE_CLAIMS, [])
    woken.clear()
    listing(store, Kind.DEVICE_CLASSES, [])  # the last: no node changes, but the phase does
    assert store.phase() is Phase.CURRENT
    assert woken == ["inventory", "views"]


def test_an_agent_on_a_dra_node_is_believed_up_to_the_gpus_dra_publishes() -> None:
    # The agent cross-check bounds an agent's count by what Kubernetes says of the node; on a
    # DRA node that is the ResourceSlices (the Node advertises no GPU capacity).
    heartbeat = NOW.isoformat()
    store = synced_store(
        nodes=[node("dra"), node("liar")],
        gpunodes=[
            make_gpunode("dra", gpus=4, heartbeat=heartbeat),
            make_gpunode("liar", gpus=8, heartbeat=heartbeat),
        ],
        slices=[gpu_slice("dra", 4), gpu_slice("liar", 2)],
    )
    rows_by_name = {r.name: r for r in desired(store).nodes}
    assert (rows_by_name["dra"].agent, rows_by_name["dra"].gpus) == ("Reporting", 4)
    assert (rows_by_name["liar"].agent, rows_by_name["liar"].gpus) == ("Invalid", 2)
