"""The GPUNode writer against an in-memory API: each GPU node's `status.kubernetes`, conditional
on the GPUNode's resourceVersion, within a budget, with its own refusals and fencing."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest

from gpu_inventory.operator.config import OperatorConfig
from gpu_inventory.operator.gpunode_writer import GPUNodeWriter
from gpu_inventory.operator.kubeapi import ApiError, FencedError
from gpu_inventory.operator.metrics import Metrics
from gpu_inventory.operator.store import Kind, Store
from gpu_inventory.operator.verdicts import Refusals
from gpu_inventory.operator.writing import Shared
from gpu_inventory.testing.builders import make_gpunode, make_node, make_pod
from gpu_inventory.testing.fakeapi import FakeApi
from gpu_inventory.testing.streams import listing, synced_store, watch, with_uid
from gpu_inventory.testing.wait import eventually_async, holds

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


class Setup:
    def __init__(self, store: Store, **config: Any) -> None:
        self.now = 1000.0
        self.api = FakeApi()
        self.store = store
        self.refusals = Refusals()
        self.leader = True
        for name, body in store_gpunodes(store).items():
            self.api.gpunodes[name] = body
        self.writer = GPUNodeWriter(
            Shared(
                self.store,
                OperatorConfig(**config),
                refusals=self.refusals,
                metrics=Metrics(),
                is_leader=lambda: self.leader,
                clock=lambda: self.now,
                wallclock=lambda: NOW,
            ),
            self.api,
        )

    async def pass_(self) -> Any:
        return await self.writer.run_pass()


def store_gpunodes(store: Store) -> dict[str, dict[str, Any]]:
    """The server's copies of the GPUNodes the store was listed with."""
    return {
        name: {"metadata": {"name": name, "uid": g.uid, "resourceVersion": g.resource_version}}
        for name, g in store.gpunodes.live.items()
    }


def agent(name: str) -> dict[str, Any]:
    return make_gpunode(name, gpus=4, heartbeat=NOW.isoformat())


def pod(name: str, node: str, gpus: int) -> dict[str, Any]:
    return with_uid(make_pod(name, node=node, gpus=gpus))


def cluster(nodes: int = 2, *, gpunodes: int | None = None) -> Store:
    names = [f"n{i}" for i in range(nodes)]
    return synced_store(
        nodes=[make_node(n, gpus=4) for n in names],
        gpunodes=[agent(n) for n in names[: nodes if gpunodes is None else gpunodes]],
        pods=[pod(f"p-{n}", n, 1) for n in names],
    )


async def test_writes_each_view_once_conditionally_then_nothing() -> None:
    s = Setup(cluster())
    report = await s.pass_()
    assert sorted(report.patches) == ["n0", "n1"]
    assert report.patches["n0"]["metadata"] == {"resourceVersion": "1"}
    assert s.api.gpunodes["n0"]["status"]["kubernetes"]["allocated"] == 1
    assert (await s.pass_()).patches == {}


async def test_a_pod_change_rewrites_only_its_node() -> None:
    s = Setup(cluster())
    await s.pass_()
    watch(s.store, Kind.PODS, "ADDED", pod("extra", "n1", 2))
    report = await s.pass_()
    assert list(report.patches) == ["n1"]
    assert report.patches["n1"]["status"]["kubernetes"]["allocated"] == 3


async def test_gpu_nodes_without_a_gpunode_get_one_and_cpu_nodes_none() -> None:
    store = synced_store(nodes=[make_node("gpu", gpus=2), make_node("cpu")])
    s = Setup(store)
    report = await s.pass_()
    assert report.created == ["gpu"]
    assert s.api.gpunodes["gpu"]["metadata"]["ownerReferences"][0]["kind"] == "Node"


async def test_at_most_the_budget_per_pass_the_rest_next() -> None:
    s = Setup(cluster(5), gpunode_writes_per_pass=2)
    first = await s.pass_()
    assert (len(first.patches), first.deferred) == (2, 3)
    second = await s.pass_()
    third = await s.pass_()
    assert len(second.patches) + len(third.patches) == 3


async def test_a_conflict_is_retried_when_the_agents_write_arrives() -> None:
    s = Setup(cluster(1))
    s.api.gpunodes["n0"]["metadata"]["resourceVersion"] = "7"  # the agent wrote meanwhile
    assert (await s.pass_()).patches == {}
    assert s.api.count("patch_gpunode_status") == 1
    newer = agent("n0")
    newer["metadata"]["resourceVersion"] = "7"
    watch(s.store, Kind.GPUNODES, "MODIFIED", newer)
    assert list((await s.pass_()).patches) == ["n0"]


async def test_a_forbidden_write_backs_off_and_is_reported_once() -> None:
    s = Setup(cluster(1))
    s.api.fail("patch_gpunode_status", ApiError(403, "forbidden", "patch gpunodes/status"))
    await s.pass_()
    (refusal,) = s.refusals.all()
    assert (refusal.what, refusal.reason) == ("patch gpunodes/status", "Forbidden")
    await s.pass_()
    assert s.api.count("patch_gpunode_status") == 1  # within the backoff: not tried again
    s.now += 1.5
    report = await s.pass_()
    assert list(report.patches) == ["n0"]
    assert s.refusals.all() == ()


async def test_nothing_is_written_before_every_listing_is_complete() -> None:
    store = Store()
    listing(store, Kind.INVENTORY, [])
    listing(store, Kind.NODES, [make_node("n0", gpus=4)])
    s = Setup(store)
    assert (await s.pass_()).created == []
    listing(store, Kind.GPUNODES, [])
    listing(store, Kind.PODS, [])
    assert (await s.pass_()).created == ["n0"]


async def test_a_standby_writes_nothing_and_compares_every_view_on_taking_over() -> None:
    s = Setup(cluster(3))
    s.leader = False
    await s.pass_()
    assert s.api.calls == []
    s.store.take_views_dirty()  # what it missed while standing by
    s.leader = True
    assert len((await s.pass_()).patches) == 3


async def test_losing_the_lease_mid_batch_stops_the_remaining_writes() -> None:
    """The fence is checked before every write (kubeapi); what it refuses is kept for later."""
    s = Setup(cluster(4), write_concurrency=1)
    sent: list[int] = []

    def fenced() -> None:
        sent.append(1)
        if len(sent) > 2:
            raise FencedError("not the Lease holder")

    s.api.before["patch_gpunode_status"] = fenced
    report = await s.pass_()
    assert len(report.patches) == 2
    assert len(s.store.take_views_dirty()) == 2  # kept for the next leader pass


class RefusingOne(FakeApi):
    """Refuses every status patch of one GPUNode (an admission policy, a stale schema)."""

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused
        self.refusals = 0

    def patch_gpunode_status(self, name: str, patch: Any) -> dict[str, Any]:
        if name == self.refused:
            self.refusals += 1
            raise ApiError(422, "denied by a policy", "patch gpunodes/status")
        return super().patch_gpunode_status(name, patch)


async def test_one_refused_node_backs_off_on_its_own_while_others_are_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The review's bug: a global backoff key, reset by every other node's success, retried the
    refused node every pass (26 PATCHes in 31 s) with an ERROR line each time."""
    store = cluster(2)
    s = Setup(store)
    s.api = RefusingOne("n0")
    s.writer.api = s.api
    for name, body in store_gpunodes(store).items():
        s.api.gpunodes[name] = body
    churn = 0
    for _ in range(40):  # a pass every 0.25 s for 10 s; n1 changes every pass
        churn += 1
        watch(s.store, Kind.PODS, "ADDED", pod(f"c{churn}", "n1", 1))
        s.store.mark_views(["n0"])
        await s.pass_()
        s.now += 0.25
    assert s.api.refusals == 4  # at 0, 1, 3 and 7 s
    assert s.api.gpunodes["n1"]["status"]["kubernetes"]["allocated"] == 1 + churn
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    (refusal,) = s.refusals.all()
    assert refusal.what == "patch gpunodes/status of n0"


async def test_writes_left_over_by_the_budget_go_on_without_waiting_for_a_resync() -> None:
    """The review's bug: deferred writes waited a whole resync interval (5,000 changed views
    took about 250 s in a quiet cluster). The loop itself is run here, not one pass."""
    s = Setup(cluster(5), gpunode_writes_per_pass=2, write_window=0.01, resync_interval=60)
    task = asyncio.create_task(s.writer.run())

    async def all_written() -> None:
        holds(s.api.count("patch_gpunode_status") == 5, s.api.calls)

    try:
        await eventually_async(all_written, timeout=5, what="every view within a few passes")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
