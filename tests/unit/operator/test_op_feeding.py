"""Watch events -> store: bad input is logged once and skipped, never raised into kopf."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gpu_inventory.operator import feeding
from gpu_inventory.operator.store import Kind, Projections
from gpu_inventory.testing.builders import make_node, make_pod

LOG = logging.getLogger("test")


def event(type_: str | None, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, "object": body}


@pytest.fixture
def store() -> Projections:
    store = Projections(now=0.0)
    for kind in Kind:
        store.expect(kind, False)
    return store


def pod(name: str, **kwargs: Any) -> dict[str, Any]:
    body = make_pod(name, **kwargs)
    body["metadata"]["uid"] = f"uid-{name}"
    return body


def test_pods_are_added_and_deleted(store: Projections) -> None:
    feeding.pod(store, event(None, pod("a", node="n1", gpus=2)), LOG, now=1)
    feeding.pod(store, event("ADDED", pod("b", node="n1", gpus=1)), LOG, now=1)
    assert store.allocated == {"n1": {"nvidia.com/gpu": 3}}
    feeding.pod(store, event("DELETED", pod("a", node="n1", gpus=2)), LOG, now=2)
    assert store.allocated == {"n1": {"nvidia.com/gpu": 1}}


def test_an_unreadable_pod_is_logged_once_and_never_counted(
    store: Projections, caplog: pytest.LogCaptureFixture
) -> None:
    bad = pod("bad", namespace="team", node="n1", resources={"nvidia.com/gpu": "1T"})
    with caplog.at_level(logging.WARNING):
        for type_ in ("ADDED", "MODIFIED", "MODIFIED"):
            feeding.pod(store, event(type_, bad), LOG, now=1)
    assert [r.getMessage() for r in caplog.records] == [
        "pod team/bad skipped: invalid quantity '1T': container 'main', resource "
        "nvidia.com/gpu: absurd: more than 1000000 in one container; not counted until fixed"
    ]
    assert store.allocated == {}
    assert store.skipped_pods == {"uid-bad"}


def test_a_node_with_an_unreadable_capacity_is_left_out(
    store: Projections, caplog: pytest.LogCaptureFixture
) -> None:
    body = make_node("n1", resources={"nvidia.com/gpu": "1T"})
    body["metadata"]["uid"] = "u1"
    with caplog.at_level(logging.WARNING):
        feeding.node(store, event("ADDED", body), LOG, now=1)
    assert store.nodes == {}
    assert "node n1 skipped" in caplog.text


def test_a_broken_agent_is_logged_once_per_distinct_problem(
    store: Projections, caplog: pytest.LogCaptureFixture
) -> None:
    body = {
        "metadata": {"name": "n1", "uid": "g1"},
        "status": {"agent": {"heartbeatTime": "yesterday"}},
    }
    with caplog.at_level(logging.WARNING):
        feeding.gpunode(store, event("ADDED", body), LOG, now=1)
        feeding.gpunode(store, event("MODIFIED", body), LOG, now=2)
    assert caplog.text.count("agent data of GPUNode n1 ignored") == 1
    assert store.gpunodes["n1"].agent_error


def test_the_inventory_deleted_by_hand_is_noted_for_the_writer(store: Projections) -> None:
    body = {"metadata": {"name": "cluster", "uid": "i1", "generation": 1}, "spec": {}}
    feeding.inventory(store, event("ADDED", body), LOG, now=1)
    added = store.inventory
    assert added is not None
    assert added.uid == "i1"
    feeding.inventory(store, event("DELETED", body), LOG, now=2)
    assert (store.inventory_known, store.inventory) == (True, None)


def test_the_echo_of_our_own_inventory_write_is_not_projected_again(store: Projections) -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "cluster", "uid": "i1", "generation": 1, "resourceVersion": "7"},
        "spec": {},
    }
    feeding.inventory(store, event("ADDED", body), LOG, now=1)
    written = store.inventory
    body["spec"] = {"agentStaleAfterSeconds": 60}  # (a change that cannot come at the same rv)
    feeding.inventory(store, event("MODIFIED", body), LOG, now=2)
    assert store.inventory is written
    body["metadata"]["resourceVersion"] = "8"
    feeding.inventory(store, event("MODIFIED", body), LOG, now=3)
    assert store.inventory is not None
    assert store.inventory.spec.agent_stale_after_seconds == 60
