"""The writer against an in-memory API: which writes a change causes, none when nothing changed,
and what each API failure leads to. Kubernetes behaviour itself is covered by the integration
tests; here the fake applies merge patches and resourceVersion preconditions like the server."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from gpu_inventory.operator import projections
from gpu_inventory.operator.config import OperatorConfig
from gpu_inventory.operator.kubeapi import ApiError, UnavailableError
from gpu_inventory.operator.metrics import Metrics
from gpu_inventory.operator.projections import PodProjection
from gpu_inventory.operator.store import Kind, Projections
from gpu_inventory.operator.writer import Writer
from gpu_inventory.testing.builders import make_node

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
GPU = "nvidia.com/gpu"


def apply_merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            apply_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeApi:
    """Objects in dicts, a resourceVersion counter, and failures queued per method."""

    def __init__(self) -> None:
        self.inventory: dict[str, Any] | None = None
        self.gpunodes: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.failures: dict[str, list[Exception]] = {}
        self.keys: dict[Kind, set[str]] = {}
        self._rv = itertools.count(1)

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        queued = self.failures.get(method)
        if queued:
            raise queued.pop(0)

    def _version(self, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(body)

    def get_inventory(self) -> dict[str, Any] | None:
        self._enter("get_inventory")
        return copy.deepcopy(self.inventory)

    def create_inventory(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._enter("create_inventory")
        if self.inventory is not None:
            raise ApiError(409, "already exists", "create gpuinventories")
        self.inventory = copy.deepcopy(dict(body))
        self.inventory["metadata"].update(uid="inv", generation=1)
        return self._version(self.inventory)

    def patch_inventory_status(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        self._enter("patch_inventory_status")
        if self.inventory is None:
            raise ApiError(404, "not found", "patch gpuinventories/status")
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != self.inventory["metadata"]["resourceVersion"]:
            raise ApiError(409, "the object has been modified", "patch gpuinventories/status")
        apply_merge(self.inventory.setdefault("status", {}), patch["status"])
        return self._version(self.inventory)

    def create_gpunode(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._enter("create_gpunode")
        name = body["metadata"]["name"]
        if name in self.gpunodes:
            raise ApiError(409, "already exists", "create gpunodes")
        self.gpunodes[name] = copy.deepcopy(dict(body))
        self.gpunodes[name]["metadata"]["uid"] = f"g-{name}"
        return self._version(self.gpunodes[name])

    def patch_gpunode_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self._enter("patch_gpunode_status")
        if name not in self.gpunodes:
            raise ApiError(404, "not found", "patch gpunodes/status")
        apply_merge(self.gpunodes[name].setdefault("status", {}), patch["status"])
        return self._version(self.gpunodes[name])

    def has_any(self, kind: Kind) -> bool:
        self._enter("has_any")
        return False

    def list_keys(self, kind: Kind, *, chunk: int = 500) -> set[str]:
        self._enter("list_keys")
        return set(self.keys.get(kind, set()))

    def iter_objects(
        self, kind: Kind, *, chunk: int = 500, metadata_only: bool = False
    ) -> Iterator[dict[str, Any]]:
        self._enter("iter_objects")
        return iter(())


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Projections:
    store = Projections(now=clock.t)
    for kind in Kind:
        store.expect(kind, False)
    return store


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def writer(store: Projections, api: FakeApi, clock: Clock) -> Writer:
    return Writer(
        store,
        api,
        OperatorConfig(metrics_port=0, resync_interval=60),
        metrics=Metrics(),
        clock=clock,
        wallclock=lambda: NOW,
    )


def add_node(store: Projections, name: str, gpus: int) -> None:
    body = make_node(name, gpus=gpus)
    body["metadata"].update(uid=f"uid-{name}", creationTimestamp="2026-06-01T11:59:00Z")
    store.node_event(
        name, f"uid-{name}", projections.project_node(body, store.labels), listing=False, now=0
    )


def add_pod(store: Projections, key: str, node: str, gpus: int) -> None:
    store.pod_event(key, PodProjection(node, True, ((GPU, gpus),)), listing=False, now=0)


async def converge(writer: Writer, passes: int = 3) -> None:
    for _ in range(passes):
        await writer.run_pass()


async def test_first_passes_create_the_inventory_and_gpunodes_then_write_their_status(
    writer: Writer, store: Projections, api: FakeApi
) -> None:
    add_node(store, "a", 4)
    add_node(store, "cpu", 0)
    add_pod(store, "p1", "a", 2)
    first = await writer.run_pass()
    assert first.created_inventory
    assert first.created_gpunodes == ["a"]  # not the CPU node
    assert api.inventory is not None
    assert api.inventory["status"]["summary"]["allocated"] == 2
    second = await writer.run_pass()
    assert second.gpunode_patches == {
        "a": {
            "status": {
                "kubernetes": {
                    "labels": {
                        "kubernetes.io/os": "linux",
                        "nvidia.com/gpu.count": "4",
                        "nvidia.com/gpu.product": "Tesla-T4",
                    },
                    "conditions": {"Ready": True},
                    "gpuResources": [
                        {"name": GPU, "capacity": 4, "allocatable": 4, "allocated": 2}
                    ],
                    "allocated": 2,
                    "agentState": "Missing",
                }
            }
        }
    }


async def test_nothing_changed_nothing_written(
    writer: Writer, store: Projections, api: FakeApi, clock: Clock
) -> None:
    add_node(store, "a", 4)
    await converge(writer)
    before = list(api.calls)
    clock.t += 120  # a periodic full re-evaluation, still nothing to change
    report = await writer.run_pass()
    assert (report.inventory_patches, report.gpunode_patches, report.created_gpunodes) == (
        [],
        {},
        [],
    )
    assert api.calls == before


async def test_one_pod_patches_only_the_numbers_it_moved(
    writer: Writer, store: Projections
) -> None:
    add_node(store, "a", 4)
    add_node(store, "b", 4)
    add_pod(store, "p1", "a", 1)
    await converge(writer)
    add_pod(store, "p2", "a", 2)
    report = await writer.run_pass()
    [patch] = report.inventory_patches
    assert set(patch) == {"status", "metadata"}
    assert patch["status"] == {
        "summary": {"allocated": 3, "available": 5},
        "resources": [
            {"name": GPU, "capacity": 8, "allocatable": 8, "allocated": 3, "available": 5}
        ],
        "products": [
            {
                "product": "Tesla-T4",
                "nodes": 2,
                "gpus": 8,
                "allocatable": 8,
                "allocated": 3,
                "available": 5,
            }
        ],
        "nodes": patch["status"]["nodes"],  # a list is always sent whole
    }
    assert [(r["name"], r["allocated"]) for r in patch["status"]["nodes"]] == [("a", 3), ("b", 0)]
    assert report.gpunode_patches == {
        "a": {
            "status": {
                "kubernetes": {
                    "gpuResources": [
                        {"name": GPU, "capacity": 4, "allocatable": 4, "allocated": 3}
                    ],
                    "allocated": 3,
                }
            }
        }
    }


async def test_with_the_budget_spent_patches_go_before_creations(
    store: Projections, api: FakeApi, clock: Clock
) -> None:
    writer = Writer(
        store,
        api,
        OperatorConfig(metrics_port=0, resync_interval=60, gpunode_writes_per_pass=2),
        clock=clock,
        wallclock=lambda: NOW,
    )
    add_node(store, "a", 4)
    await converge(writer)  # GPUNode/a exists and is current
    for name in ("b", "c", "d"):  # a cold start: more creations than one pass may write
        add_node(store, name, 4)
    add_pod(store, "p1", "a", 1)
    report = await writer.run_pass()
    assert list(report.gpunode_patches) == ["a"]  # the live row is not kept waiting
    assert report.created_gpunodes == ["b"]
    later = await writer.run_pass()  # b, just created, gets its numbers; c is created
    assert (list(later.gpunode_patches), later.created_gpunodes) == (["b"], ["c"])
    await converge(writer)
    assert sorted(api.gpunodes) == ["a", "b", "c", "d"]
    assert all(g["status"]["kubernetes"]["allocated"] >= 0 for g in api.gpunodes.values())


async def test_a_conflict_re_reads_and_retries(
    writer: Writer, store: Projections, api: FakeApi
) -> None:
    add_node(store, "a", 4)
    await converge(writer)
    assert api.inventory is not None
    api.inventory["metadata"]["resourceVersion"] = "changed-behind-our-back"
    add_pod(store, "p1", "a", 1)
    await writer.run_pass()
    assert api.calls[-4:-1] == ["patch_inventory_status", "get_inventory", "patch_inventory_status"]
    assert api.inventory["status"]["summary"]["allocated"] == 1


async def test_forbidden_gpunode_writes_stall_the_inventory_and_clear_when_allowed(
    writer: Writer, store: Projections, api: FakeApi
) -> None:
    add_node(store, "a", 4)
    api.failures["create_gpunode"] = [ApiError(403, "gpunodes is forbidden", "create gpunodes")]
    await converge(writer)
    assert api.inventory is not None
    got = {c["type"]: c for c in api.inventory["status"]["conditions"]}
    assert (got["Stalled"]["status"], got["Stalled"]["reason"]) == ("True", "Forbidden")
    assert "create gpunodes" in got["Stalled"]["message"]
    assert (got["Ready"]["status"], got["Ready"]["reason"]) == ("False", "WriteFailed")
    writer._last_full = -1e18  # the next full pass retries the refused write
    await converge(writer)
    got = {c["type"]: c for c in api.inventory["status"]["conditions"]}
    assert (got["Stalled"]["status"], got["Ready"]["status"]) == ("False", "True")
    assert "a" in api.gpunodes


async def test_a_refused_status_is_reported_in_the_conditions_alone(
    writer: Writer, store: Projections, api: FakeApi
) -> None:
    add_node(store, "a", 4)
    await converge(writer)
    api.failures["patch_inventory_status"] = [
        ApiError(422, "status.nodes: Too many: 10001", "patch gpuinventories/status")
    ]
    add_pod(store, "p1", "a", 1)
    await writer.run_pass()
    assert api.inventory is not None
    ready = next(c for c in api.inventory["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "WriteFailed")
    assert "Too many" in ready["message"]
    assert api.inventory["status"]["summary"]["allocated"] == 0  # numbers untouched


async def test_when_the_api_server_is_down_changes_are_kept_for_the_next_pass(
    writer: Writer, store: Projections, api: FakeApi
) -> None:
    add_node(store, "a", 4)
    await converge(writer)
    api.failures["patch_inventory_status"] = [UnavailableError("connection refused")]
    add_pod(store, "p1", "a", 1)
    with pytest.raises(UnavailableError):
        await writer.run_pass()
    assert store.dirty
    await writer.run_pass()
    assert api.inventory is not None
    assert api.inventory["status"]["summary"]["allocated"] == 1


async def test_a_failed_relist_after_widening_the_label_prefixes_is_retried(
    writer: Writer, store: Projections, api: FakeApi
) -> None:
    add_node(store, "a", 4)
    await converge(writer)
    assert api.inventory is not None
    api.inventory["spec"] = {"labelPrefixes": ["nvidia.com/", "team"]}
    store.inventory_read(projections.project_inventory(api.inventory))
    api.failures["iter_objects"] = [UnavailableError("connection refused")]
    with pytest.raises(UnavailableError):
        await writer.run_pass()
    await writer.run_pass()
    assert api.calls.count("iter_objects") == 2
    await writer.run_pass()
    assert api.calls.count("iter_objects") == 2  # once it succeeded, no more LISTs


async def test_an_inventory_deleted_by_hand_is_recreated(
    writer: Writer, store: Projections, api: FakeApi
) -> None:
    add_node(store, "a", 4)
    await converge(writer)
    api.inventory = None
    store.inventory_event(None, listing=False, now=0)  # the DELETED event
    report = await writer.run_pass()
    assert report.created_inventory
    assert api.inventory is not None
    assert api.inventory["status"]["summary"]["nodes"] == 1


async def test_after_a_relist_objects_gone_meanwhile_are_dropped(
    writer: Writer, store: Projections, api: FakeApi, clock: Clock
) -> None:
    add_node(store, "a", 4)
    add_pod(store, "still-there", "a", 1)
    add_pod(store, "ghost", "a", 2)
    await converge(writer)
    store.pod_event("still-there", PodProjection("a", True, ((GPU, 1),)), listing=True, now=clock.t)
    clock.t += 5
    api.keys[Kind.PODS] = {"still-there"}
    report = await writer.run_pass()
    assert report.swept == {"pods": ["ghost"]}
    assert api.inventory is not None
    assert api.inventory["status"]["summary"]["allocated"] == 1


async def test_a_replica_that_does_not_hold_the_lease_writes_nothing(
    store: Projections, api: FakeApi, clock: Clock
) -> None:
    leader = False
    standby = Writer(
        store,
        api,
        OperatorConfig(metrics_port=0, resync_interval=60),
        metrics=Metrics(),
        is_leader=lambda: leader,
        clock=clock,
    )
    add_node(store, "a", 4)
    add_pod(store, "p1", "a", 1)
    await standby.run_pass()
    assert api.calls == []
    assert not store.dirty  # nothing to do until it leads: its loop waits instead of spinning
    clock.t += 3 * 3600  # hours as a standby
    leader = True
    report = await standby.run_pass()  # the first pass as leader is full
    assert report.created_inventory
    assert report.created_gpunodes == ["a"]
    assert api.inventory is not None
    assert api.inventory["status"]["summary"]["allocated"] == 1
    assert standby.metrics is not None
    latency = standby.metrics.registry.get_sample_value(
        "gpu_inventory_operator_pod_event_to_status_seconds_count"
    )
    assert latency in (None, 0.0), "a standby's old events are not a latency"


async def test_metrics_count_writes_and_the_pod_to_status_latency(
    writer: Writer, store: Projections, clock: Clock
) -> None:
    add_node(store, "a", 4)
    await converge(writer)
    store.pod_event("p", PodProjection("a", True, ((GPU, 1),)), listing=False, now=clock.t)
    clock.t += 0.7
    await writer.run_pass()
    assert writer.metrics is not None
    registry = writer.metrics.registry
    ok = registry.get_sample_value(
        "gpu_inventory_operator_status_writes_total", {"kind": "GPUInventory", "result": "ok"}
    )
    assert ok is not None
    assert ok >= 2
    assert registry.get_sample_value(
        "gpu_inventory_operator_pod_event_to_status_seconds_sum"
    ) == pytest.approx(0.7)
    assert registry.get_sample_value("gpu_inventory_operator_objects", {"kind": "nodes"}) == 1


async def test_cancelling_the_writer_stops_its_background_gpunode_writes(
    store: Projections, api: FakeApi, clock: Clock
) -> None:
    writer = Writer(store, api, OperatorConfig(metrics_port=0, write_window=0.001), clock=clock)
    add_node(store, "a", 4)
    task = asyncio.create_task(writer.run())
    for _ in range(1000):
        await asyncio.sleep(0.001)
        if "create_gpunode" in api.calls:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert writer._node_task is None
    writer.close()
