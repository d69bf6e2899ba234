"""Projections + spec -> desired status: table-driven, `now` injected, whole statuses compared
with lastTransitionTime left out (it is the conditions module's job, tested there)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpu_inventory.api.models import GPUInventorySpec, GPUInventoryStatus, KubernetesView
from gpu_inventory.operator import projections, status
from gpu_inventory.operator.projections import LabelFilter
from gpu_inventory.operator.status import ClusterState, OperatorHealth
from gpu_inventory.testing.builders import make_node

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
OLD = "2026-05-01T00:00:00Z"  # nodes older than any staleness grace period
GPU = "nvidia.com/gpu"


def node(name: str, *, created: str = OLD, **kwargs: Any) -> projections.NodeProjection:
    body = make_node(name, **kwargs)
    body["metadata"].update(uid=f"uid-{name}", creationTimestamp=created)
    return projections.project_node(body, LabelFilter())


def agent(
    name: str,
    *,
    age: float = 10,
    gpus: int = 4,
    unhealthy: int = 0,
    nvml: bool = True,
    product: str = "Tesla T4",
) -> projections.GPUNodeProjection:
    heartbeat = (NOW - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return projections.project_gpunode(
        {
            "metadata": {"name": name, "uid": f"g-{name}"},
            "status": {
                "agent": {"heartbeatTime": heartbeat, "nvmlAvailable": nvml},
                "summary": {"gpus": gpus, "unhealthy": unhealthy, "product": product},
            },
        }
    )


def state(
    nodes: list[projections.NodeProjection],
    gpunodes: list[projections.GPUNodeProjection] = (),  # type: ignore[assignment]
    allocated: dict[str, dict[str, int]] | None = None,
) -> ClusterState:
    return ClusterState(
        nodes={n.name: n for n in nodes},
        gpunodes={g.name: g for g in gpunodes},
        allocated=allocated or {},
    )


def compute(
    cluster: ClusterState,
    *,
    spec: GPUInventorySpec | None = None,
    health: OperatorHealth | None = None,
    existing: GPUInventoryStatus | None = None,
) -> dict[str, Any]:
    got = status.desired_status(
        cluster,
        spec or GPUInventorySpec(),
        generation=1,
        existing=existing,
        health=health or OperatorHealth(),
        now=NOW,
    ).to_wire()
    for condition in got.get("conditions", []):
        del condition["lastTransitionTime"]
    if got.get("skipped") == {"pods": 0, "nodes": 0}:
        del got["skipped"]  # nothing skipped: the cases below leave it out
    return got


def conditions(
    *, degraded: tuple[str, str, str] = ("False", "AllHealthy", "all GPU nodes are healthy")
) -> list[dict[str, Any]]:
    return [
        {
            "type": "Ready",
            "status": "True",
            "reason": "InventoryCurrent",
            "message": "inventory is complete and current",
            "observedGeneration": 1,
        },
        {
            "type": "Degraded",
            "status": degraded[0],
            "reason": degraded[1],
            "message": degraded[2],
            "observedGeneration": 1,
        },
        {
            "type": "Reconciling",
            "status": "False",
            "reason": "Reconciled",
            "message": "status reflects the cluster",
            "observedGeneration": 1,
        },
        {
            "type": "Stalled",
            "status": "False",
            "reason": "NotStalled",
            "message": "the operator is working",
            "observedGeneration": 1,
        },
    ]


def row(name: str, **fields: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "product": "Tesla-T4",
        "ready": True,
        "allocatable": 4,
        "allocated": 0,
        "gpus": 4,
        "unhealthy": 0,
        "agent": "Reporting",
    }
    return base | fields


def summary(**fields: Any) -> dict[str, Any]:
    base = {
        "nodes": 0,
        "readyNodes": 0,
        "gpus": 0,
        "capacity": 0,
        "allocatable": 0,
        "allocated": 0,
        "available": 0,
        "unhealthyGPUs": 0,
        "staleAgents": 0,
        "products": [],
    }
    return base | fields


def totals(name: str, cap: int, alloc: int, used: int, avail: int) -> dict[str, Any]:
    return {
        "name": name,
        "capacity": cap,
        "allocatable": alloc,
        "allocated": used,
        "available": avail,
    }


def product(name: str, *counts: int) -> dict[str, Any]:
    nodes, gpus, alloc, used, avail = counts
    return {
        "product": name,
        "nodes": nodes,
        "gpus": gpus,
        "allocatable": alloc,
        "allocated": used,
        "available": avail,
    }


CASES: list[tuple[str, ClusterState, dict[str, Any]]] = [
    (
        "empty cluster",
        state([]),
        {
            "observedGeneration": 1,
            "summary": summary(),
            "resources": [],
            "products": [],
            "nodes": [],
            "conditions": conditions(),
        },
    ),
    (
        "cpu nodes get no row",
        state([node("cpu-1")]),
        {
            "observedGeneration": 1,
            "summary": summary(),
            "resources": [],
            "products": [],
            "nodes": [],
            "conditions": conditions(),
        },
    ),
    (
        "two healthy nodes, pods allocated on one",
        state(
            [node("a", gpus=4), node("b", gpus=4)],
            [agent("a"), agent("b")],
            {"a": {GPU: 3}},
        ),
        {
            "observedGeneration": 1,
            "summary": summary(
                nodes=2,
                readyNodes=2,
                gpus=8,
                capacity=8,
                allocatable=8,
                allocated=3,
                available=5,
                products=["Tesla-T4"],
            ),
            "resources": [totals(GPU, 8, 8, 3, 5)],
            "products": [product("Tesla-T4", 2, 8, 8, 3, 5)],
            "nodes": [row("a", allocated=3), row("b")],
            "conditions": conditions(),
        },
    ),
    (
        "over-allocated node floors available at 0 and frees nothing elsewhere",
        state(
            [node("a", gpus=2), node("b", gpus=2)],
            [agent("a", gpus=2), agent("b", gpus=2)],
            {"a": {GPU: 3}},
        ),
        {
            "observedGeneration": 1,
            "summary": summary(
                nodes=2,
                readyNodes=2,
                gpus=4,
                capacity=4,
                allocatable=4,
                allocated=3,
                available=2,
                products=["Tesla-T4"],
            ),
            "resources": [totals(GPU, 4, 4, 3, 2)],
            "products": [product("Tesla-T4", 2, 4, 4, 3, 2)],
            "nodes": [
                row("a", allocatable=2, allocated=3, gpus=2),
                row("b", allocatable=2, gpus=2),
            ],
            "conditions": conditions(),
        },
    ),
    (
        "MIG and shared resources get their own totals; headline counts nvidia.com/gpu",
        state(
            [
                node("mig", resources={"nvidia.com/mig-1g.10gb": "7"}, product="H100"),
                node("shared", resources={"nvidia.com/gpu.shared": "40"}, product="T4-SHARED"),
            ],
            [agent("mig", gpus=1, product="H100"), agent("shared", gpus=4)],
            {"mig": {"nvidia.com/mig-1g.10gb": 2}, "shared": {"nvidia.com/gpu.shared": 5}},
        ),
        {
            "observedGeneration": 1,
            "summary": summary(nodes=2, readyNodes=2, gpus=5, products=["H100", "T4-SHARED"]),
            "resources": [
                totals("nvidia.com/gpu.shared", 40, 40, 5, 35),
                totals("nvidia.com/mig-1g.10gb", 7, 7, 2, 5),
            ],
            "products": [
                product("H100", 1, 1, 0, 0, 0),
                product("T4-SHARED", 1, 4, 0, 0, 0),
            ],
            "nodes": [
                row("mig", product="H100", allocatable=0, gpus=1),
                row("shared", product="T4-SHARED", allocatable=0),
            ],
            "conditions": conditions(),
        },
    ),
    (
        "unhealthy GPUs, a NotReady node and a stale agent: MultipleProblems",
        state(
            [node("a", gpus=4), node("b", gpus=4, ready=False), node("c", gpus=4)],
            [agent("a", unhealthy=2), agent("b"), agent("c", age=301)],
        ),
        {
            "observedGeneration": 1,
            "summary": summary(
                nodes=3,
                readyNodes=2,
                gpus=12,
                capacity=12,
                allocatable=12,
                available=12,
                unhealthyGPUs=2,
                staleAgents=1,
                products=["Tesla-T4"],
            ),
            "resources": [totals(GPU, 12, 12, 0, 12)],
            "products": [product("Tesla-T4", 3, 12, 12, 0, 12)],
            "nodes": [row("a", unhealthy=2), row("b", ready=False), row("c", agent="Stale")],
            "conditions": conditions(
                degraded=(
                    "True",
                    "MultipleProblems",
                    "2 unhealthy GPUs on a; 1 GPU node not Ready: b; "
                    "1 agent stale, missing or invalid on c",
                )
            ),
        },
    ),
    (
        "missing agents: a new node gets a grace period, an old one does not",
        state(
            [
                node("new", gpus=2, created=(NOW - timedelta(seconds=60)).isoformat()),
                node("old", gpus=2),
            ]
        ),
        {
            "observedGeneration": 1,
            "summary": summary(
                nodes=2,
                readyNodes=2,
                gpus=4,
                capacity=4,
                allocatable=4,
                available=4,
                staleAgents=1,
                products=["Tesla-T4"],
            ),
            "resources": [totals(GPU, 4, 4, 0, 4)],
            "products": [product("Tesla-T4", 2, 4, 4, 0, 4)],
            "nodes": [
                row("new", allocatable=2, gpus=2, agent="Missing"),
                row("old", allocatable=2, gpus=2, agent="Missing"),
            ],
            "conditions": conditions(
                degraded=("True", "AgentsStale", "1 agent stale, missing or invalid on old")
            ),
        },
    ),
    (
        "a heartbeat from the future is Invalid and its GPU count is not trusted",
        state([node("a", gpus=4)], [agent("a", age=-3600, gpus=99)]),
        {
            "observedGeneration": 1,
            "summary": summary(
                nodes=1,
                readyNodes=1,
                gpus=4,
                capacity=4,
                allocatable=4,
                available=4,
                staleAgents=1,
                products=["Tesla-T4"],
            ),
            "resources": [totals(GPU, 4, 4, 0, 4)],
            "products": [product("Tesla-T4", 1, 4, 4, 0, 4)],
            "nodes": [row("a", agent="Invalid")],
            "conditions": conditions(
                degraded=("True", "AgentsStale", "1 agent stale, missing or invalid on a")
            ),
        },
    ),
    (
        "no product label: the agent's product, else Unknown",
        state(
            [node("a", gpus=1, labels={"nvidia.com/gpu.product": ""}), node("b", gpus=1)],
            [agent("a", gpus=1, product="A100")],
        ),
        {
            "observedGeneration": 1,
            "summary": summary(
                nodes=2,
                readyNodes=2,
                gpus=2,
                capacity=2,
                allocatable=2,
                available=2,
                staleAgents=1,
                products=["A100", "Tesla-T4"],
            ),
            "resources": [totals(GPU, 2, 2, 0, 2)],
            "products": [product("A100", 1, 1, 1, 0, 1), product("Tesla-T4", 1, 1, 1, 0, 1)],
            "nodes": [
                row("a", product="A100", allocatable=1, gpus=1),
                row("b", allocatable=1, gpus=1, agent="Missing"),
            ],
            "conditions": conditions(
                degraded=("True", "AgentsStale", "1 agent stale, missing or invalid on b")
            ),
        },
    ),
]


@pytest.mark.parametrize(("case", "cluster", "want"), CASES, ids=[c[0] for c in CASES])
def test_desired_status(case: str, cluster: ClusterState, want: dict[str, Any]) -> None:
    assert compute(cluster) == want, case


def test_nodes_without_labels_and_the_unknown_product() -> None:
    bare = dataclasses.replace(node("x", gpus=1), labels=(), product="", gpu_count=None)
    got = compute(state([bare], [agent("x", gpus=0, product="")]))
    assert got["nodes"] == [row("x", product="Unknown", allocatable=1, gpus=0)]


@pytest.mark.parametrize(
    ("case", "health", "want"),
    [
        (
            "first listing under way",
            OperatorHealth(synced=False),
            {
                "Ready": ("False", "Indexing"),
                "Degraded": ("Unknown", "Indexing"),
                "Reconciling": ("True", "InitialSync"),
                "Stalled": ("False", "NotStalled"),
            },
        ),
        (
            "forbidden to write GPUNodes",
            OperatorHealth(forbidden=("patch gpunodes/status",)),
            {
                "Ready": ("False", "WriteFailed"),
                "Degraded": ("False", "AllHealthy"),
                "Reconciling": ("False", "Reconciled"),
                "Stalled": ("True", "Forbidden"),
            },
        ),
        (
            "invalid spec",
            OperatorHealth(spec_error="spec refused, defaults used: x"),
            {
                "Ready": ("True", "InventoryCurrent"),
                "Degraded": ("False", "AllHealthy"),
                "Reconciling": ("False", "Reconciled"),
                "Stalled": ("True", "InvalidSpec"),
            },
        ),
    ],
)
def test_conditions_follow_the_operator_health(
    case: str, health: OperatorHealth, want: dict[str, tuple[str, str]]
) -> None:
    got = compute(state([]), health=health)
    assert {c["type"]: (c["status"], c["reason"]) for c in got["conditions"]} == want, case


def test_before_the_first_sync_the_previous_numbers_stay_and_only_conditions_move() -> None:
    previous = status.desired_status(
        state([node("a", gpus=4)], [agent("a")], {"a": {GPU: 1}}),
        GPUInventorySpec(),
        generation=1,
        existing=None,
        health=OperatorHealth(),
        now=NOW - timedelta(hours=1),
    )
    got = status.desired_status(
        state([]),
        GPUInventorySpec(),
        generation=2,
        existing=previous,
        health=OperatorHealth(synced=False),
        now=NOW,
    )
    assert got.nodes == previous.nodes
    assert got.summary == previous.summary
    assert got.observed_generation == 1  # generation 2 is not reflected yet
    ready = next(c for c in got.conditions if c.type == "Ready")
    assert (ready.status, ready.last_transition_time) == ("False", NOW)


def test_recomputing_an_unchanged_state_gives_an_equal_status() -> None:
    cluster = state([node("a", gpus=4)], [agent("a")])
    first = status.desired_status(
        cluster,
        GPUInventorySpec(),
        generation=1,
        existing=None,
        health=OperatorHealth(),
        now=NOW,
    )
    later = status.desired_status(
        cluster,
        GPUInventorySpec(),
        generation=1,
        existing=first,
        health=OperatorHealth(),
        now=NOW + timedelta(seconds=30),
    )
    assert later.to_wire() == first.to_wire()


def test_the_spec_decides_what_counts_and_what_the_headline_is() -> None:
    cluster = state(
        [node("a", gpus=2, resources={"nvidia.com/gpu.shared": "20"})],
        [agent("a", gpus=2)],
        {"a": {"nvidia.com/gpu.shared": 3, GPU: 1}},
    )
    spec = GPUInventorySpec(
        resource_names=["nvidia.com/gpu.shared"], primary_resource="nvidia.com/gpu.shared"
    )
    got = compute(cluster, spec=spec)
    assert got["resources"] == [totals("nvidia.com/gpu.shared", 20, 20, 3, 17)]
    assert got["summary"]["allocated"] == 3
    assert got["nodes"][0]["allocatable"] == 20


# --- GPUNode views ------------------------------------------------------------------------------


def test_node_view_has_filtered_labels_conditions_resources_and_agent_state() -> None:
    n = node("a", gpus=4, resources={"nvidia.com/mig-1g.10gb": "7"}, labels={"team": "ml"})
    view = status.node_view(
        n, agent("a"), {GPU: 2, "example.com/fpga": 1}, GPUInventorySpec(), now=NOW
    )
    assert view == KubernetesView(
        labels={
            "kubernetes.io/os": "linux",
            "nvidia.com/gpu.count": "4",
            "nvidia.com/gpu.product": "Tesla-T4",
        },
        conditions={"Ready": True},
        gpu_resources=[
            {"name": GPU, "capacity": 4, "allocatable": 4, "allocated": 2},
            {"name": "nvidia.com/mig-1g.10gb", "capacity": 7, "allocatable": 7, "allocated": 0},
        ],
        allocated=2,
        agent_state="Reporting",
    )


@pytest.mark.parametrize(
    ("case", "gpunode", "want"),
    [
        ("no GPUNode", None, "Missing"),
        ("created by the operator, agent not there yet", "empty", "Missing"),
        ("fresh heartbeat", agent("a", age=5), "Reporting"),
        ("heartbeat older than the threshold", agent("a", age=301), "Stale"),
        ("NVML not available", agent("a", nvml=False), "NVMLUnavailable"),
        ("heartbeat an hour ahead", agent("a", age=-3600), "Invalid"),
    ],
)
def test_agent_state(case: str, gpunode: Any, want: str) -> None:
    if gpunode == "empty":
        gpunode = projections.project_gpunode({"metadata": {"name": "a"}})
    got = status.agent_state(gpunode, stale_after=timedelta(seconds=300), now=NOW)
    assert got == want, case
