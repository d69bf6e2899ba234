"""The desired GPUInventory status from node facts: totals, rows (and the row limit), skipped
objects, conditions that carry the generation, and the waiting status while listings run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpu_inventory.api.models import GPUInventorySpec, GPUInventoryStatus, KubernetesView
from gpu_inventory.operator import status
from gpu_inventory.operator.facts import node_facts
from gpu_inventory.operator.store import Phase, Store
from gpu_inventory.operator.verdicts import OperatorHealth, Refusal
from gpu_inventory.testing.builders import make_gpunode, make_node, make_pod
from gpu_inventory.testing.streams import facts_cache_of, synced_store, with_uid

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
GPU = "nvidia.com/gpu"
FRESH = (NOW - timedelta(seconds=5)).isoformat()


def node(name: str, gpus: int = 4, **kwargs: Any) -> dict[str, Any]:
    body = make_node(name, gpus=gpus, **kwargs)
    body["metadata"]["creationTimestamp"] = (NOW - timedelta(days=1)).isoformat()
    return body


def agent(name: str, gpus: int = 4, **kwargs: Any) -> dict[str, Any]:
    return make_gpunode(name, gpus=gpus, heartbeat=kwargs.pop("heartbeat", FRESH), **kwargs)


def pod(name: str, node_name: str, gpus: int, **kwargs: Any) -> dict[str, Any]:
    return with_uid(make_pod(name, node=node_name, gpus=gpus, **kwargs))


def compute(
    store: Store,
    *,
    spec: GPUInventorySpec | None = None,
    health: OperatorHealth | None = None,
    existing: GPUInventoryStatus | None = None,
    now: datetime = NOW,
) -> GPUInventoryStatus:
    spec = spec or GPUInventorySpec()
    cache = facts_cache_of(store, spec=spec, now=now)
    return status.desired_status(
        cache,
        spec,
        generation=3,
        existing=existing,
        health=health or OperatorHealth(),
        malformed_pods=store.malformed_pods(),
        skipped_pods=store.skipped_pods(),
        last_sync_time=None,
        now=now,
    )


def conditions(got: GPUInventoryStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in got.conditions}


def test_totals_rows_and_products_of_a_small_cluster() -> None:
    store = synced_store(
        nodes=[
            node("a", 4, product="Tesla-T4"),
            node("b", 8, product="NVIDIA-H100", resources={"nvidia.com/mig-1g.10gb": "7"}),
            node("cpu", 0),
        ],
        gpunodes=[agent("a", 4, product="Tesla T4"), agent("b", 8, unhealthy=1)],
        pods=[
            pod("p1", "a", 3),
            pod("p2", "b", 2),
            pod("p3", "b", 0, resources={"nvidia.com/mig-1g.10gb": "1"}),
        ],
    )
    got = compute(store).to_wire()
    assert got["summary"] == {
        "nodes": 2,
        "readyNodes": 2,
        "gpus": 12,
        "capacity": 12,
        "allocatable": 12,
        "allocated": 5,
        "available": 7,
        "unhealthyGPUs": 1,
        "staleAgents": 0,
        "products": ["NVIDIA-H100", "Tesla-T4"],
    }
    assert got["resources"] == [
        {
            "name": GPU,
            "source": "DevicePlugin",
            "capacity": 12,
            "allocatable": 12,
            "allocated": 5,
            "available": 7,
        },
        {
            "name": "nvidia.com/mig-1g.10gb",
            "source": "DevicePlugin",
            "capacity": 7,
            "allocatable": 7,
            "allocated": 1,
            "available": 6,
        },
    ]
    assert [r["name"] for r in got["nodes"]] == ["a", "b"]
    assert got["nodes"][1] == {
        "name": "b",
        "product": "NVIDIA-H100",
        "ready": True,
        "allocatable": 8,
        "allocated": 2,
        "gpus": 8,
        "unhealthy": 1,
        "agent": "Reporting",
    }
    assert got["products"][1] == {
        "product": "Tesla-T4",
        "nodes": 1,
        "gpus": 4,
        "allocatable": 4,
        "allocated": 3,
        "available": 1,
    }
    assert got["skipped"] == {"pods": 0, "nodes": 0}
    assert got["nodesOmitted"] == 0
    assert conditions(compute(store))["Degraded"] == ("True", "UnhealthyGPUs")


def test_an_over_allocated_node_floors_available_and_frees_nothing_elsewhere() -> None:
    store = synced_store(
        nodes=[node("a", 2), node("b", 4)],
        gpunodes=[agent("a", 2), agent("b", 4)],
        pods=[pod("p1", "a", 3)],
    )
    summary = compute(store).summary
    assert (summary.allocatable, summary.allocated, summary.available) == (6, 3, 4)


def test_beyond_max_node_rows_only_nodes_that_need_attention_are_listed() -> None:
    nodes = [node(f"n{i:02d}", 1) for i in range(12)]
    nodes[3]["status"]["conditions"][0]["status"] = "False"  # NotReady
    agents = [agent(f"n{i:02d}", 1) for i in range(12) if i != 7]  # n07 has no agent
    store = synced_store(nodes=nodes, gpunodes=agents)
    got = compute(store, spec=GPUInventorySpec(max_node_rows=5))
    assert [r.name for r in got.nodes] == ["n03", "n07"]
    assert got.nodes_omitted == 10
    assert got.summary.nodes == 12  # totals always count every node
    everything = compute(store, spec=GPUInventorySpec(max_node_rows=12))
    assert (len(everything.nodes), everything.nodes_omitted) == (12, 0)


def test_malformed_objects_are_counted_and_degrade_the_inventory() -> None:
    bad_node = node("bad", 4, resources={"nvidia.com/mig-1g.10gb": "1T"})
    bad_pod = pod("p", "bad", 0, resources={GPU: "lots"})
    store = synced_store(nodes=[bad_node], gpunodes=[agent("bad", 4)], pods=[bad_pod])
    got = compute(store)
    assert got.skipped.model_dump() == {"pods": 1, "nodes": 1}
    degraded = next(c for c in got.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "MalformedObjects")
    assert "pod default/p" in degraded.message
    assert "node bad" in degraded.message
    assert got.summary.allocatable == 4  # the node's readable GPUs still count


@pytest.mark.parametrize(
    ("case", "health", "want"),
    [
        (
            "all is well",
            OperatorHealth(),
            {
                "Ready": ("True", "InventoryCurrent"),
                "Degraded": ("False", "AllHealthy"),
                "Reconciling": ("False", "Reconciled"),
                "Stalled": ("False", "NotStalled"),
            },
        ),
        (
            "forbidden to write GPUNodes",
            OperatorHealth(refusals=(Refusal("patch gpunodes/status", "Forbidden", "no"),)),
            {
                "Ready": ("False", "WriteFailed"),
                "Degraded": ("False", "AllHealthy"),
                "Reconciling": ("False", "Reconciled"),
                "Stalled": ("True", "Forbidden"),
            },
        ),
        (
            "the status is too large for etcd",
            OperatorHealth(refusals=(Refusal("patch gpuinventories/status", "TooLarge", "x"),)),
            {
                "Ready": ("False", "WriteFailed"),
                "Degraded": ("False", "AllHealthy"),
                "Reconciling": ("False", "Reconciled"),
                "Stalled": ("True", "TooLarge"),
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
    assert conditions(compute(synced_store(), health=health)) == want, case


def test_dra_served_but_not_readable_degrades_the_inventory_and_says_what_is_missing() -> None:
    """RBAC without the DRA rule (an older chart) on a 1.34 cluster: every DRA GPU is missing
    from the numbers, so the inventory cannot call itself complete."""
    refused = ("list resourceclaims", "watch resourceclaims")
    store = synced_store(nodes=[node("gpu-1")], gpunodes=[agent("gpu-1")])
    got = compute(store, health=OperatorHealth(dra_refused=refused))
    by_type = {c.type: c for c in got.conditions}
    assert (by_type["Degraded"].status, by_type["Degraded"].reason) == ("True", "DRANotCounted")
    assert "list resourceclaims, watch resourceclaims" in by_type["Degraded"].message
    assert "restart the operator" in by_type["Degraded"].message
    assert by_type["Ready"].status == "True"  # the operator reconciles; the fleet view is short
    assert "complete" not in by_type["Ready"].message


def test_every_condition_carries_the_status_generation() -> None:
    got = compute(synced_store())
    assert got.observed_generation == 3
    assert {c.observed_generation for c in got.conditions} == {3}


@pytest.mark.parametrize(
    ("phase", "ready", "reconciling"),
    [
        (Phase.INDEXING, ("False", "Indexing"), ("True", "InitialSync")),
        (Phase.RELISTING, ("False", "Relisting"), ("True", "Relisting")),
        (Phase.REFRESHING, ("False", "SpecChanged"), ("True", "SpecChanged")),
    ],
)
def test_while_listing_only_conditions_move_and_the_numbers_stay(
    phase: Phase, ready: tuple[str, str], reconciling: tuple[str, str]
) -> None:
    store = synced_store(nodes=[node("a", 4)], gpunodes=[agent("a", 4)], pods=[pod("p", "a", 1)])
    previous = compute(store, now=NOW - timedelta(hours=1))
    got = status.waiting_status(
        previous, generation=4, health=OperatorHealth(phase=phase, waiting_for=("pods",)), now=NOW
    )
    assert (got.summary, got.nodes, got.resources) == (
        previous.summary,
        previous.nodes,
        previous.resources,
    )
    assert conditions(got)["Ready"] == ready
    assert conditions(got)["Reconciling"] == reconciling
    assert conditions(got)["Degraded"] == conditions(previous)["Degraded"]
    assert {c.observed_generation for c in got.conditions} == {4} == {got.observed_generation}
    ready_condition = next(c for c in got.conditions if c.type == "Ready")
    assert ready_condition.last_transition_time == NOW


def test_before_any_numbers_degraded_is_unknown() -> None:
    got = status.waiting_status(
        None, generation=1, health=OperatorHealth(phase=Phase.INDEXING), now=NOW
    )
    assert conditions(got)["Degraded"] == ("Unknown", "Indexing")
    assert got.summary.nodes == 0


def test_recomputing_an_unchanged_state_gives_an_equal_status() -> None:
    store = synced_store(nodes=[node("a", 4)], gpunodes=[agent("a", 4)])
    first = compute(store)
    later = compute(store, existing=first, now=NOW + timedelta(seconds=30))
    assert later.to_wire() == first.to_wire()


def test_the_spec_decides_the_headline() -> None:
    store = synced_store(
        nodes=[node("a", 2, resources={"nvidia.com/gpu.shared": "20"})],
        gpunodes=[agent("a", 2)],
        pods=[pod("p", "a", 0, resources={"nvidia.com/gpu.shared": "3"})],
    )
    got = compute(store, spec=GPUInventorySpec(primary_resource="nvidia.com/gpu.shared"))
    assert (got.summary.allocatable, got.summary.allocated) == (20, 3)


def test_node_view_has_labels_every_condition_resources_and_agent_state() -> None:
    store = synced_store(
        nodes=[node("a", 4, resources={"nvidia.com/mig-1g.10gb": "7"}, labels={"team": "ml"})],
        gpunodes=[agent("a", 4)],
        pods=[pod("p", "a", 2)],
    )
    n = store.nodes.live["a"]
    facts = node_facts(
        n, store.gpunodes.live["a"], store.allocated["a"], GPUInventorySpec(), now=NOW
    )
    view = status.node_view(facts, labels=n.labels, conditions=n.conditions)
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
