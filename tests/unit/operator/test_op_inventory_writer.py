"""The inventory writer against an in-memory API: which writes a change causes, none when nothing
changed, and what each failure leads to (conflict, gone, refused, too large, unavailable)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpu_inventory.api.models import GPUInventorySpec
from gpu_inventory.operator.config import OperatorConfig
from gpu_inventory.operator.inventory_writer import InventoryWriter
from gpu_inventory.operator.kubeapi import ApiError, UnavailableError
from gpu_inventory.operator.metrics import Metrics
from gpu_inventory.operator.store import Kind, Store
from gpu_inventory.operator.tables import Stream
from gpu_inventory.operator.verdicts import Refusals
from gpu_inventory.operator.writing import Shared
from gpu_inventory.testing.builders import make_gpunode, make_node, make_pod
from gpu_inventory.testing.fakeapi import FakeApi
from gpu_inventory.testing.streams import feed, listing, raw, synced_store, watch, with_uid

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
GPU = "nvidia.com/gpu"


class Clocks:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = NOW

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def node(name: str, gpus: int = 4) -> dict[str, Any]:
    body = make_node(name, gpus=gpus)
    body["metadata"]["creationTimestamp"] = (NOW - timedelta(days=1)).isoformat()
    return body


def agent(name: str, gpus: int = 4) -> dict[str, Any]:
    return make_gpunode(name, gpus=gpus, heartbeat=NOW.isoformat())


def pod(name: str, node_name: str, gpus: int) -> dict[str, Any]:
    return with_uid(make_pod(name, node=node_name, gpus=gpus))


class Setup:
    def __init__(self, store: Store | None = None, **config: Any) -> None:
        self.clocks = Clocks()
        self.api = FakeApi()
        self.store = store or synced_store(
            nodes=[node("a")], gpunodes=[agent("a")], pods=[pod("p", "a", 1)]
        )
        self.refusals = Refusals()
        self.leader = True
        self.writer = InventoryWriter(
            Shared(
                self.store,
                OperatorConfig(**config),
                refusals=self.refusals,
                metrics=Metrics(),
                is_leader=lambda: self.leader,
                clock=lambda: self.clocks.mono,
                wallclock=lambda: self.clocks.wall,
            ),
            self.api,
        )

    async def pass_(self) -> Any:
        return await self.writer.run_pass()

    def status(self) -> dict[str, Any]:
        assert self.api.inventory is not None
        return dict(self.api.inventory.get("status") or {})

    def condition(self, type_: str) -> tuple[str, str]:
        found = next(c for c in self.status()["conditions"] if c["type"] == type_)
        return found["status"], found["reason"]


async def test_creates_the_inventory_and_writes_the_whole_status_once() -> None:
    s = Setup()
    report = await s.pass_()
    assert report.created
    assert len(report.patches) == 1
    assert s.status()["summary"]["allocated"] == 1
    assert s.condition("Ready") == ("True", "InventoryCurrent")
    assert s.status()["lastSyncTime"] == "2026-06-01T12:00:00Z"
    assert (await s.pass_()).patches == []  # nothing changed, nothing sent


async def test_a_pod_change_is_one_patch_of_the_difference() -> None:
    s = Setup()
    await s.pass_()
    watch(s.store, Kind.PODS, "ADDED", pod("q", "a", 2))
    s.clocks.advance(1)
    (patch,) = (await s.pass_()).patches
    assert patch["status"]["summary"] == {"allocated": 3, "available": 1}
    assert patch["metadata"]["resourceVersion"]  # conditional on what it diffed against


async def test_last_sync_time_is_refreshed_once_a_minute_when_nothing_changes() -> None:
    s = Setup()
    await s.pass_()
    s.clocks.advance(30)
    assert (await s.pass_()).patches == []
    s.clocks.advance(31)
    (patch,) = (await s.pass_()).patches
    assert patch["status"] == {"lastSyncTime": "2026-06-01T12:01:01Z"}


async def test_a_conflict_is_re_read_and_retried() -> None:
    s = Setup()
    await s.pass_()
    s.api.touch_inventory()  # someone else wrote; our resourceVersion is old
    watch(s.store, Kind.PODS, "ADDED", pod("q", "a", 1))
    report = await s.pass_()
    assert s.api.count("get_inventory") == 1
    assert len(report.patches) == 1
    assert s.status()["summary"]["allocated"] == 2


async def test_a_deleted_inventory_is_created_again() -> None:
    s = Setup()
    await s.pass_()
    s.api.inventory = None
    watch(s.store, Kind.PODS, "ADDED", pod("q", "a", 1))
    await s.pass_()  # 404
    assert s.store.inventory is None
    report = await s.pass_()
    assert report.created
    assert s.status()["summary"]["allocated"] == 2


async def test_a_forbidden_write_backs_off_exponentially_and_recovers() -> None:
    """The bug: 60 forbidden PATCHes in 30 s. Now 1 s, 2 s, 4 s ... up to five minutes."""
    s = Setup()
    await s.pass_()
    forbidden = ApiError(403, "gpuinventories/status is forbidden", "patch gpuinventories/status")
    s.api.fail("patch_inventory_status", forbidden, forbidden, forbidden)
    began = s.clocks.mono
    tried_at = []
    for _ in range(40):  # a pass every 0.25 s for 10 s, each with a new number to write
        watch(s.store, Kind.PODS, "ADDED", pod(f"x{s.clocks.mono}", "a", 1))
        before = s.api.count("patch_inventory_status")
        await s.pass_()
        if s.api.count("patch_inventory_status") > before:
            tried_at.append(s.clocks.mono - began)
        if tried_at and s.refusals.all() == ():
            break
        assert s.condition("Stalled") == ("False", "NotStalled")  # cannot be written: 403
        s.clocks.advance(0.25)
    assert tried_at == [0, 1, 3, 7]  # refused three times, then RBAC was fixed
    assert s.writer.backoff.failures("patch gpuinventories/status") == 0
    assert s.condition("Ready") == ("True", "InventoryCurrent")


async def test_a_status_too_large_for_etcd_is_stalled_with_the_reason() -> None:
    s = Setup()
    await s.pass_()
    too_large = ApiError(500, "etcdserver: request is too large", "patch gpuinventories/status")
    s.api.fail("patch_inventory_status", too_large)
    watch(s.store, Kind.PODS, "ADDED", pod("q", "a", 1))
    await s.pass_()
    assert s.condition("Stalled") == ("True", "TooLarge")
    assert s.condition("Ready") == ("False", "WriteFailed")
    assert s.status()["summary"]["allocated"] == 1  # the old numbers, with the reason beside


async def test_an_outage_raises_for_the_loop_to_back_off_and_keeps_the_latency_clock() -> None:
    s = Setup()
    await s.pass_()
    watch(s.store, Kind.PODS, "ADDED", pod("q", "a", 1), now=5.0)
    s.api.fail("patch_inventory_status", UnavailableError("down"))
    with pytest.raises(UnavailableError):
        await s.pass_()
    assert s.store.first_pod_event == 5.0


async def test_a_standby_writes_nothing_and_a_new_leader_recomputes_everything() -> None:
    s = Setup()
    s.leader = False
    assert (await s.pass_()).patches == []
    assert s.api.calls == []
    s.leader = True
    report = await s.pass_()
    assert report.created
    assert s.status()["summary"]["nodes"] == 1


async def test_while_indexing_only_conditions_are_written() -> None:
    store = Store()
    listing(store, Kind.INVENTORY, [])
    listing(store, Kind.NODES, [node("a")])
    s = Setup(store)
    await s.pass_()
    assert s.condition("Ready") == ("False", "Indexing")
    assert s.condition("Reconciling") == ("True", "InitialSync")
    assert "summary" not in s.status() or s.status()["summary"]["nodes"] == 0
    assert "lastSyncTime" not in s.status()
    listing(store, Kind.GPUNODES, [agent("a")])
    listing(store, Kind.PODS, [pod("p", "a", 2)])
    await s.pass_()
    assert s.condition("Ready") == ("True", "InventoryCurrent")
    assert s.status()["summary"]["allocated"] == 2


async def test_a_spec_change_is_announced_then_read_again_then_published() -> None:
    s = Setup()
    await s.pass_()
    amd_node = make_node("amd", resources={"amd.com/gpu": "8"})
    amd_pod = with_uid(make_pod("m", node="amd", resources={"amd.com/gpu": "2"}))
    s.api.listed[Kind.NODES] = [node("a"), amd_node]
    s.api.listed[Kind.PODS] = [pod("p", "a", 1), amd_pod]
    assert s.api.inventory is not None
    changed = {
        **s.api.inventory,
        "spec": GPUInventorySpec(resource_names=["nvidia.com/gpu", "amd.com/gpu"]).to_wire(),
    }
    changed["metadata"] = {**changed["metadata"], "generation": 2, "resourceVersion": "99"}
    s.api.inventory = changed
    watch(s.store, Kind.INVENTORY, "MODIFIED", changed)
    report = await s.pass_()
    assert sorted(report.refreshed) == ["nodes", "pods"]
    assert s.condition("Reconciling") == ("True", "SpecChanged")
    await s.pass_()
    assert s.condition("Reconciling") == ("False", "Reconciled")
    resources = {r["name"]: r["allocated"] for r in s.status()["resources"]}
    assert resources == {"amd.com/gpu": 2, GPU: 1}
    assert s.status()["observedGeneration"] == 2


async def test_the_metrics_status_follows_a_relist_with_the_old_numbers_said_to_be_old() -> None:
    """The collector reads `latest_status`: during a relist it must not keep showing Ready."""
    s = Setup()
    await s.pass_()
    latest = s.writer.latest_status
    assert latest is not None
    assert latest.summary.allocated == 1
    feed(s.store, Kind.PODS, raw(None, pod("p", "a", 1), Stream(2, listing=True)))  # relisting
    await s.pass_()
    latest = s.writer.latest_status
    assert latest is not None
    ready = next(c for c in latest.conditions if c.type == "Ready")
    assert (ready.status, ready.reason, latest.summary.allocated) == ("False", "Relisting", 1)


async def test_the_metrics_never_show_numbers_the_cr_does_not_hold() -> None:
    """A refused write leaves the metrics on the CR's numbers; a new leader that finds the CR
    current reports its `lastSyncTime` as the last write until it writes itself."""
    s = Setup()
    await s.pass_()
    first = s.writer.latest_status
    assert first is not None
    assert first.summary.allocated == 1
    forbidden = ApiError(403, "gpuinventories/status is forbidden", "patch gpuinventories/status")
    s.api.fail("patch_inventory_status", forbidden)
    watch(s.store, Kind.PODS, "ADDED", pod("q", "a", 2))
    s.clocks.advance(1)
    await s.pass_()
    assert s.status()["summary"]["allocated"] == 1
    assert s.writer.latest_status is first

    successor = Setup(store=s.store)
    successor.api = s.api
    successor.writer.api = s.api
    successor.clocks.wall = NOW + timedelta(seconds=5)
    assert successor.writer.last_written() == NOW.timestamp()
