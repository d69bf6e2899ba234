"""The inventory collector: what a scrape sees for a status, read by prometheus-client's own
exposition and parser (the text Prometheus would ingest)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpu_inventory.api.models import (
    Condition,
    GPUInventoryStatus,
    InventorySummary,
    NodeRow,
    ProductTotals,
    ResourceTotals,
    SkippedObjects,
)
from gpu_inventory.operator.inventory_metrics import InventoryCollector

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def condition(kind: str, status: str, reason: str) -> Condition:
    return Condition(type=kind, status=status, reason=reason, last_transition_time=NOW)


STATUS = GPUInventoryStatus(
    observed_generation=1,
    summary=InventorySummary(
        nodes=2,
        ready_nodes=1,
        gpus=9,
        capacity=9,
        allocatable=8,
        allocated=10,
        available=1,
        unhealthy_gpus=1,
        stale_agents=1,
        products=["NVIDIA-H100-80GB-HBM3", "Tesla-T4"],
    ),
    resources=[
        ResourceTotals(name="nvidia.com/gpu", capacity=9, allocatable=8, allocated=10, available=1),
        ResourceTotals(
            name="nvidia.com/mig-1g.10gb", capacity=14, allocatable=14, allocated=3, available=11
        ),
    ],
    products=[
        ProductTotals(
            product="NVIDIA-H100-80GB-HBM3",
            nodes=1,
            gpus=8,
            allocatable=7,
            allocated=9,
            available=0,
        ),
        ProductTotals(product="Tesla-T4", nodes=1, gpus=1, allocatable=1, allocated=1, available=0),
    ],
    nodes=[
        NodeRow(
            name="h100-a",
            product="NVIDIA-H100-80GB-HBM3",
            ready=True,
            allocatable=7,
            allocated=9,
            gpus=8,
            unhealthy=1,
            agent="Reporting",
        ),
        NodeRow(
            name="t4-a",
            product="Tesla-T4",
            ready=False,
            allocatable=1,
            allocated=1,
            gpus=1,
            agent="Stale",
        ),
    ],
    skipped=SkippedObjects(pods=2, nodes=0),
    conditions=[
        condition("Ready", "True", "InventoryCurrent"),
        condition("Degraded", "True", "MultipleProblems"),
        condition("Reconciling", "False", "Reconciled"),
        condition("Stalled", "False", "NotStalled"),
    ],
)


def scrape(collector: InventoryCollector) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_a_scrape_exports_the_status_per_cluster_resource_product_and_node() -> None:
    samples = scrape(InventoryCollector(status=lambda: STATUS, last_write=lambda: 1_764_331_200.5))
    gpus = {
        state: value(samples, "gpu_inventory_gpus", state=state)
        for state in ("physical", "unhealthy", "capacity", "allocatable", "allocated", "available")
    }
    assert gpus == {
        "physical": 9,
        "unhealthy": 1,
        "capacity": 9,
        "allocatable": 8,
        "allocated": 10,
        "available": 1,
    }
    assert value(samples, "gpu_inventory_nodes") == 2
    assert value(samples, "gpu_inventory_ready_nodes") == 1
    assert value(samples, "gpu_inventory_stale_agents") == 1
    assert value(samples, "gpu_inventory_skipped_objects", kind="pods") == 2
    mig = "nvidia.com/mig-1g.10gb"
    assert (
        value(
            samples,
            "gpu_inventory_resource_gpus",
            resource=mig,
            source="DevicePlugin",
            state="available",
        )
        == 11
    )
    h100 = "NVIDIA-H100-80GB-HBM3"
    assert value(samples, "gpu_inventory_product_gpus", product=h100, state="physical") == 8
    assert value(samples, "gpu_inventory_product_nodes", product=h100) == 1
    node = {"node": "h100-a", "product": h100, "source": "DevicePlugin"}
    assert value(samples, "gpu_inventory_node_gpus", **node, state="allocated") == 9
    assert value(samples, "gpu_inventory_node_gpus", **node, state="unhealthy") == 1
    # Allocated above allocatable: available is floored at 0, as the status does.
    assert value(samples, "gpu_inventory_node_gpus", **node, state="available") == 0
    assert value(samples, "gpu_inventory_node_ready", node="t4-a") == 0
    assert value(samples, "gpu_inventory_node_agent", node="t4-a", state="Stale") == 1
    assert value(samples, "gpu_inventory_status_last_write_timestamp_seconds") == 1_764_331_200.5


def test_conditions_are_a_stateset_with_the_reason_beside_it() -> None:
    samples = scrape(InventoryCollector(status=lambda: STATUS, last_write=lambda: None))
    degraded = {
        status: value(samples, "gpu_inventory_condition", type="Degraded", status=status)
        for status in ("True", "False", "Unknown")
    }
    assert degraded == {"True": 1, "False": 0, "Unknown": 0}
    assert (
        value(samples, "gpu_inventory_condition_reason", type="Degraded", reason="MultipleProblems")
        == 1
    )
    assert ("gpu_inventory_status_last_write_timestamp_seconds", ()) not in samples


def test_before_the_first_complete_sync_nothing_about_the_inventory_is_exported() -> None:
    assert scrape(InventoryCollector(status=lambda: None, last_write=lambda: None)) == {}
    only_write = scrape(InventoryCollector(status=lambda: None, last_write=lambda: 5.0))
    assert only_write == {("gpu_inventory_status_last_write_timestamp_seconds", ()): 5.0}


def test_a_node_that_leaves_the_status_leaves_the_metrics() -> None:
    current = {"status": STATUS}
    collector = InventoryCollector(status=lambda: current["status"], last_write=lambda: None)
    assert any(labels and ("node", "t4-a") in labels for _, labels in scrape(collector))
    current["status"] = STATUS.model_copy(update={"nodes": STATUS.nodes[:1]})
    assert not any(("node", "t4-a") in labels for _, labels in scrape(collector))


def test_series_per_node_are_bounded_by_the_rows() -> None:
    rows = [NodeRow(name=f"n{i}", product="T4", allocatable=1, gpus=1) for i in range(1000)]
    samples = scrape(
        InventoryCollector(status=lambda: GPUInventoryStatus(nodes=rows), last_write=lambda: None)
    )
    per_node = [key for key in samples if ("node", "n7") in key[1]]
    assert len(per_node) == 7  # 5 states, ready, agent state
    assert len(samples) == 1000 * 7 + 6 + 3 + 2  # + cluster states, counts, skipped


def test_registering_twice_or_next_to_a_same_named_gauge_is_refused() -> None:
    registry = CollectorRegistry()
    registry.register(InventoryCollector(status=lambda: None, last_write=lambda: None))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Gauge("gpu_inventory_nodes", "clash", registry=registry)
