"""The inventory itself as Prometheus gauges, read from the operator's memory at scrape time.

A custom collector (prometheus-client's `Collector` protocol) instead of gauges set by the
writer: a scrape sees one consistent status, a node that leaves the status leaves the metrics
with it (no stale series to remove), and nothing is computed between scrapes. The same idea as
kube-state-metrics' CustomResourceState, without needing it.

Every family, its labels and their bounds (the README's "Metrics" table says the same):

| family | labels | series |
| --- | --- | --- |
| `gpu_inventory_gpus` | state | 6 |
| `gpu_inventory_resource_gpus` | resource, source, state | 4 per resource row (<= 512) |
| `gpu_inventory_product_gpus` | product, state | 4 per product (<= 128) |
| `gpu_inventory_product_nodes` | product | 1 per product |
| `gpu_inventory_node_gpus` | node, product, source, state | 5 per row of `status.nodes` |
| `gpu_inventory_node_ready` | node | 1 per row |
| `gpu_inventory_node_agent` | node, state | 1 per row (the current state) |
| `gpu_inventory_nodes`, `_ready_nodes`, `_stale_agents` | | 1 each |
| `gpu_inventory_skipped_objects` | kind | 2 |
| `gpu_inventory_condition` | type, status | 3 per condition (<= 16) |
| `gpu_inventory_condition_reason` | type, reason | 1 per condition |
| `gpu_inventory_status_last_write_timestamp_seconds` | | 1 |

States: `physical` and `unhealthy` count physical GPUs (from the agents); `capacity`,
`allocatable`, `allocated` and `available` count units of the resource as the scheduler does
(the primary resource, `nvidia.com/gpu` by default, except in `resource_gpus`). Rows in
`status.nodes` are bounded by the operator (every node up to about a thousand, beyond that only
the rows that need attention), so per-node series are too; use the cluster and product families
for totals. `source` says who advertises the GPUs: `DevicePlugin` (Node allocatable) or `DRA`
(ResourceSlices); the status has one resource row per name and source.

Pure: no I/O; the two callables are the operator's own state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gpu_inventory.api.models import GPUInventoryStatus

PREFIX: Final = "gpu_inventory"
CONDITION_STATUSES: Final = ("True", "False", "Unknown")


class InventoryCollector(Collector):
    """Reads `status()` (the operator's latest complete status, None before the first complete
    sync or on a standby) and `last_write()` (unix time of the last successful status write)."""

    def __init__(
        self,
        status: Callable[[], GPUInventoryStatus | None],
        last_write: Callable[[], float | None],
    ) -> None:
        self._status = status
        self._last_write = last_write

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The families without samples, so the registry can refuse duplicate names without
        calling `collect()` at registration."""
        return list(_families().values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = _families()
        last_write = self._last_write()
        if last_write is not None:
            families["last_write"].add_metric([], last_write)
        status = self._status()
        if status is not None:
            _fill(families, status)
        for family in families.values():
            if family.samples:
                yield family


def _families() -> dict[str, GaugeMetricFamily]:
    def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=list(labels))

    return {
        "gpus": gauge(
            "gpus",
            "GPUs in the cluster by state: physical and unhealthy GPUs (agents), and capacity, "
            "allocatable, allocated, available units of the primary resource (scheduler).",
            ("state",),
        ),
        "resource": gauge(
            "resource_gpus",
            "Units of each GPU extended resource by source (DevicePlugin, DRA) and state "
            "(capacity, allocatable, allocated, available).",
            ("resource", "source", "state"),
        ),
        "product": gauge(
            "product_gpus",
            "GPUs of each product by state (physical; allocatable, allocated, available units "
            "of the primary resource).",
            ("product", "state"),
        ),
        "product_nodes": gauge("product_nodes", "GPU nodes of each product.", ("product",)),
        "node": gauge(
            "node_gpus",
            "GPUs of each node row of the status by state (physical, unhealthy; allocatable, "
            "allocated, available units of the primary resource).",
            ("node", "product", "source", "state"),
        ),
        "node_ready": gauge("node_ready", "1 if the GPU node is Ready, else 0.", ("node",)),
        "node_agent": gauge(
            "node_agent",
            "1 for the node agent's current state (Reporting, Stale, Missing, NVMLUnavailable, "
            "Invalid); one series per node.",
            ("node", "state"),
        ),
        "nodes": gauge("nodes", "GPU nodes in the cluster."),
        "ready_nodes": gauge("ready_nodes", "GPU nodes that are Ready."),
        "stale_agents": gauge(
            "stale_agents", "GPU nodes whose agent is stale, invalid, or missing past its grace."
        ),
        "skipped": gauge(
            "skipped_objects",
            "Objects left out of the totals because a GPU quantity on them is malformed.",
            ("kind",),
        ),
        "condition": gauge(
            "condition",
            "GPUInventory conditions: 1 for the current status of each type, else 0.",
            ("type", "status"),
        ),
        "condition_reason": gauge(
            "condition_reason",
            "1 for the current reason of each condition type.",
            ("type", "reason"),
        ),
        "last_write": gauge(
            "status_last_write_timestamp_seconds",
            "Unix time of the GPUInventory status' last write, exported by the Lease holder "
            "only: its own last write, or after a takeover the CR's lastSyncTime.",
        ),
    }


def _fill(families: dict[str, GaugeMetricFamily], status: GPUInventoryStatus) -> None:
    summary = status.summary
    _states(
        families["gpus"],
        [],
        physical=summary.gpus,
        unhealthy=summary.unhealthy_gpus,
        capacity=summary.capacity,
        allocatable=summary.allocatable,
        allocated=summary.allocated,
        available=summary.available,
    )
    families["nodes"].add_metric([], summary.nodes)
    families["ready_nodes"].add_metric([], summary.ready_nodes)
    families["stale_agents"].add_metric([], summary.stale_agents)
    families["skipped"].add_metric(["pods"], status.skipped.pods)
    families["skipped"].add_metric(["nodes"], status.skipped.nodes)
    for r in status.resources:
        _states(
            families["resource"],
            [r.name, r.source],
            capacity=r.capacity,
            allocatable=r.allocatable,
            allocated=r.allocated,
            available=r.available,
        )
    for p in status.products:
        families["product_nodes"].add_metric([p.product], p.nodes)
        _states(
            families["product"],
            [p.product],
            physical=p.gpus,
            allocatable=p.allocatable,
            allocated=p.allocated,
            available=p.available,
        )
    for row in status.nodes:
        _states(
            families["node"],
            [row.name, row.product, row.source],
            physical=row.gpus,
            unhealthy=row.unhealthy,
            allocatable=row.allocatable,
            allocated=row.allocated,
            available=max(0, row.allocatable - row.allocated),
        )
        families["node_ready"].add_metric([row.name], 1 if row.ready else 0)
        families["node_agent"].add_metric([row.name, row.agent], 1)
    for condition in status.conditions:
        for value in CONDITION_STATUSES:
            families["condition"].add_metric(
                [condition.type, value], 1 if condition.status == value else 0
            )
        families["condition_reason"].add_metric([condition.type, condition.reason], 1)


def _states(family: GaugeMetricFamily, labels: list[str], **states: int) -> None:
    """One sample per state, the state as the last label."""
    for state, count in states.items():
        family.add_metric([*labels, state], count)
