"""The operator's /metrics is the inventory, and the chart's alerts read it right.

The whole system runs (installed with Helm into a non-default namespace); its operator's real
/metrics is scraped while the fleet is healthy, then with a GPU made unhealthy by a scripted XID
and a node whose pods hold more GPUs than it advertises, then once more at least a status
refresh period after the first. The recorded series go through Prometheus' own
`promtool test rules` with the chart's PrometheusRule: the gauges held as scraped, the last-write
time replayed from the two scrapes a refresh period apart, at their real spacing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.api import constants
from gpu_inventory.testing import alerts
from gpu_inventory.testing.builders import make_pod
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.metrics import Samples, scrape
from gpu_inventory.testing.system import GPUInventorySystem, create_workload, running_system
from gpu_inventory.testing.wait import eventually

pytestmark = pytest.mark.cluster

G, V = constants.GROUP, constants.VERSION
HELD_MINUTES = 30
LAST_WRITE = "gpu_inventory_status_last_write_timestamp_seconds"


@dataclass(frozen=True)
class Scrape:
    at: float
    """Unix time just after the scrape."""
    samples: Samples


@pytest.fixture
def system(cluster: ControlPlane) -> Iterator[GPUInventorySystem]:
    with running_system(
        cluster, method="helm", namespace="gpu-metrics", write_floor_seconds=1.0
    ) as running:
        yield running


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"not exported: {key}"
    return samples[key]


def inventory_status(system: GPUInventorySystem) -> dict[str, Any]:
    system.check_alive()
    try:
        body = client.CustomObjectsApi(system.plane.api_client()).get_cluster_custom_object(
            G, V, constants.INVENTORY_PLURAL, constants.INVENTORY_NAME
        )
    except client.ApiException as error:
        raise AssertionError(f"no GPUInventory yet: {error.status}") from error
    status: dict[str, Any] = body.get("status") or {}
    return status


def scrape_when(system: GPUInventorySystem, check: Any, what: str) -> Scrape:
    """The operator's samples once `check(samples, status)` passes on one scrape and status."""

    def attempt() -> Scrape:
        try:
            samples = scrape(system.operator_metrics_port)
        except OSError as error:
            raise AssertionError(f"/metrics not served yet: {error}") from error
        at = time.time()
        check(samples, inventory_status(system))
        return Scrape(at, samples)

    return eventually(attempt, timeout=90, what=what)


def every_agent_reports(status: dict[str, Any]) -> None:
    """The recorded series are held for HELD_MINUTES: an agent not yet Reporting in a scrape
    (Missing until its first write, which may come after the first complete inventory on a busy
    machine) would fire GPUNodeAgentStale, which the expected alerts do not list."""
    agents = {row["name"]: row["agent"] for row in status["nodes"]}
    assert set(agents.values()) == {"Reporting"}, agents


def the_metrics_are_the_status(samples: Samples, status: dict[str, Any]) -> None:
    summary = status["summary"]
    assert value(samples, "gpu_inventory_gpus", state="allocated") == summary["allocated"]
    assert value(samples, "gpu_inventory_gpus", state="physical") == summary["gpus"]
    assert value(samples, "gpu_inventory_gpus", state="unhealthy") == summary["unhealthyGPUs"]
    assert value(samples, "gpu_inventory_nodes") == summary["nodes"]
    for row in status["nodes"]:
        source = row.get("source", "DevicePlugin")  # written only for DRA nodes
        labels = {"node": row["name"], "product": row["product"], "source": source}
        assert (
            value(samples, "gpu_inventory_node_gpus", **labels, state="allocated")
            == (row["allocated"])
        )
        assert (
            value(samples, "gpu_inventory_node_gpus", **labels, state="unhealthy")
            == (row["unhealthy"])
        )
        assert value(samples, "gpu_inventory_node_agent", node=row["name"], state=row["agent"])
    for condition in status["conditions"]:
        assert (
            value(
                samples,
                "gpu_inventory_condition",
                type=condition["type"],
                status=condition["status"],
            )
            == 1
        )
    assert value(samples, LAST_WRITE) > 0


@dataclass(frozen=True)
class Recording:
    """Input series for promtool, one sample every `step` seconds (promtool's clock starts at
    0), long enough to evaluate at HELD_MINUTES."""

    step: int
    series: list[dict[str, str]]


def recorded(gauges: Scrape, first: Scrape, later: Scrape) -> Recording:
    """`gauges` held as scraped; the last write as old as the older of its two real ages (each
    scrape saw a write at most a refresh period old, and `later` a newer write than `first`), so
    the recording is an operator that keeps writing at the cadence it was seen to keep."""
    step = round(later.at - first.at)
    steps = math.ceil(HELD_MINUTES * 60 / step)
    series = alerts.held(gauges.samples, steps, skip=(LAST_WRITE,))
    age = max(scrape.at - scrape.samples[(LAST_WRITE, ())] for scrape in (first, later))
    series.append({"series": LAST_WRITE, "values": f"{-age:.3f}+{step}x{steps}"})
    return Recording(step, series)


def expect(recording: Recording, firing: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A promtool test: at the end, exactly `firing` fire and every other alert is quiet."""
    return {
        "interval": f"{recording.step}s",
        "input_series": recording.series,
        "alert_rule_test": [
            {"eval_time": f"{HELD_MINUTES}m", "alertname": name, "exp_alerts": firing.get(name, [])}
            for name in alerts.alert_names()
        ],
    }


def test_the_real_operators_metrics_drive_the_charts_alerts(
    system: GPUInventorySystem, k8s: client.ApiClient, tmp_path: Path
) -> None:
    create_workload(k8s)

    def healthy(samples: Samples, status: dict[str, Any]) -> None:
        assert value(samples, "gpu_inventory_gpus", state="allocated") == 9
        assert value(samples, "gpu_inventory_stale_agents") == 0
        assert value(samples, "gpu_inventory_condition", type="Ready", status="True") == 1
        every_agent_reports(status)
        the_metrics_are_the_status(samples, status)

    quiet = scrape_when(system, healthy, "metrics of a complete, healthy inventory")
    assert (
        value(
            quiet.samples,
            "gpu_inventory_resource_gpus",
            resource="nvidia.com/mig-1g.10gb",
            source="DevicePlugin",
            state="allocated",
        )
        == 3
    )
    assert value(quiet.samples, "gpu_inventory_product_nodes", product="NVIDIA-H100-80GB-HBM3") == 3
    dra_gpus = {"resource": "nvidia.com/gpu", "source": "DRA"}
    assert value(quiet.samples, "gpu_inventory_resource_gpus", **dra_gpus, state="allocated") == 2

    node_b = system.nodes[2]
    system.start_agent(node_b, scenario="h100-8x-events")  # XID 79 on GPU 3 after 10 s
    # The T4 node's device plugin lost its GPU under a running pod: 3 held, 1 advertised.
    client.CoreV1Api(k8s).create_namespaced_pod(
        "ml", make_pod("held-over", namespace="ml", node="gpu-t4-a", gpus=2)
    )

    def troubled(samples: Samples, status: dict[str, Any]) -> None:
        labels = {"node": node_b.name, "product": node_b.product, "source": "DevicePlugin"}
        assert value(samples, "gpu_inventory_node_gpus", **labels, state="unhealthy") >= 1
        t4 = {"node": "gpu-t4-a", "product": "Tesla-T4", "source": "DevicePlugin"}
        assert value(samples, "gpu_inventory_node_gpus", **t4, state="allocated") == 3
        every_agent_reports(status)
        the_metrics_are_the_status(samples, status)

    loud = scrape_when(system, troubled, "metrics of an unhealthy GPU and an overcommitted node")
    unhealthy = value(
        loud.samples,
        "gpu_inventory_node_gpus",
        node=node_b.name,
        product=node_b.product,
        source="DevicePlugin",
        state="unhealthy",
    )
    firing = {
        "GPUsUnhealthy": [
            {
                "exp_labels": {
                    "severity": "warning",
                    "node": node_b.name,
                    "product": node_b.product,
                    "source": "DevicePlugin",
                },
                "exp_annotations": {
                    "summary": f"{unhealthy:g} unhealthy GPU(s) on {node_b.name}.",
                    "description": f"The node agent reports unhealthy {node_b.product} GPUs on "
                    f"{node_b.name} (kubectl get gpunode {node_b.name} -o yaml says which and "
                    "why).",
                },
            }
        ],
        "GPUNodeOvercommitted": [
            {
                "exp_labels": {
                    "severity": "warning",
                    "node": "gpu-t4-a",
                    "product": "Tesla-T4",
                    "source": "DevicePlugin",
                },
                "exp_annotations": {
                    "summary": "Node gpu-t4-a has more GPUs allocated than allocatable.",
                    "description": "Pods bound to gpu-t4-a hold more GPUs than the device plugin "
                    "now advertises: GPUs were lost (XID, driver, or plugin restart) under "
                    "running pods.",
                },
            }
        ],
    }
    # A status refresh period after the first scrape, the operator has written again.
    time.sleep(max(0.0, quiet.at + constants.STATUS_REFRESH_SECONDS + 5 - time.time()))
    later = scrape_when(system, the_metrics_are_the_status, "a scrape a refresh period later")
    assert later.samples[(LAST_WRITE, ())] > quiet.samples[(LAST_WRITE, ())], (
        f"no status write in the {later.at - quiet.at:.0f} s between two scrapes"
    )
    rules = alerts.write_rules(tmp_path)
    tests = [
        expect(recorded(quiet, quiet, later), {}),
        expect(recorded(loud, quiet, later), firing),
    ]
    result = alerts.promtool_test(tmp_path, rules, tests)
    assert result.returncode == 0, result.stdout + result.stderr
