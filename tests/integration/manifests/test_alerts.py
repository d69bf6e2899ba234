"""The chart's alert rules, judged by Prometheus' own promtool (check rules, test rules).

Series here are written by hand, one firing and one quiet case per alert; e2e/test_metrics.py
runs the same rules on series recorded from the real operator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpu_inventory.testing import alerts

H100 = 'node="h100-a",product="NVIDIA-H100-80GB-HBM3",source="DevicePlugin"'
H100_LABELS = {"node": "h100-a", "product": "NVIDIA-H100-80GB-HBM3", "source": "DevicePlugin"}


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    return alerts.write_rules(tmp_path)


def run(tmp_path: Path, rules: Path, tests: list[dict[str, Any]]) -> None:
    result = alerts.promtool_test(tmp_path, rules, tests)
    assert result.returncode == 0, result.stdout + result.stderr


def case(
    series: dict[str, str], alert: str, at: str, fired: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": fired}],
    }


def test_promtool_accepts_the_rules(rules: Path) -> None:
    checked = alerts.promtool_check(rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout
    assert alerts.alert_names() == [
        "GPUInventoryNotReady",
        "GPUInventoryStatusStale",
        "GPUInventoryOperatorAbsent",
        "GPUClusterNearlyFull",
        "GPUNodeOvercommitted",
        "GPUsUnhealthy",
        "GPUNodeAgentStale",
        "GPUNodeNVMLUnavailable",
    ]


def test_not_ready_fires_after_ten_minutes_and_not_before(tmp_path: Path, rules: Path) -> None:
    ready = {
        'gpu_inventory_condition{type="Ready",status="True"}': "1 1 1 0x20",
        'gpu_inventory_condition{type="Ready",status="False"}': "0 0 0 1x20",
    }
    quiet = case(ready, "GPUInventoryNotReady", "12m", [])
    fired = case(ready, "GPUInventoryNotReady", "14m", [{"exp_labels": {"severity": "warning"}}])
    for test in (quiet, fired):
        test["alert_rule_test"][0]["exp_alerts"] = [
            {
                **alert,
                "exp_annotations": {
                    "summary": "The GPU inventory is not complete and current.",
                    "description": "GPUInventory/cluster has not been Ready for 10 minutes; its "
                    "Ready condition says why (kubectl describe gpuinventory cluster).",
                },
            }
            for alert in test["alert_rule_test"][0]["exp_alerts"]
        ]
    run(tmp_path, rules, [quiet, fired])


def test_a_status_nobody_refreshes_is_stale_and_a_missing_operator_is_absent(
    tmp_path: Path, rules: Path
) -> None:
    last_write = "gpu_inventory_status_last_write_timestamp_seconds"
    refreshed = case({last_write: "0+60x40"}, "GPUInventoryStatusStale", "30m", [])
    stuck = case({last_write: "0x40"}, "GPUInventoryStatusStale", "10m", [])
    stuck["alert_rule_test"].append(
        {
            "eval_time": "30m",
            "alertname": "GPUInventoryStatusStale",
            "exp_alerts": [
                {
                    "exp_labels": {"severity": "critical"},
                    "exp_annotations": {
                        "summary": "Nobody has written the GPU inventory for 10 minutes.",
                        "description": "The operator refreshes the status at least every minute;"
                        " readers treat it as not current. The operator is stopped, cannot "
                        "reach the API server, or is refused.",
                    },
                }
            ],
        }
    )
    absent = case({"gpu_inventory_nodes": "3x40"}, "GPUInventoryOperatorAbsent", "15m", [])
    absent["alert_rule_test"][0]["exp_alerts"] = [
        {
            "exp_labels": {"severity": "critical"},
            "exp_annotations": {
                "summary": "No gpu-inventory operator replica reports a status write.",
                "description": "No scraped operator has written the GPUInventory status: it is "
                "not running, not scraped, or has never been allowed to write.",
            },
        }
    ]
    present = case({last_write: "0+60x40"}, "GPUInventoryOperatorAbsent", "30m", [])
    run(tmp_path, rules, [refreshed, stuck, absent, present])


def test_nearly_full_uses_the_primary_resource_and_waits_thirty_minutes(
    tmp_path: Path, rules: Path
) -> None:
    def cluster(available: int) -> dict[str, str]:
        return {
            'gpu_inventory_gpus{state="allocatable"}': "100x60",
            'gpu_inventory_gpus{state="available"}': f"{available}x60",
        }

    full = {
        "exp_labels": {"severity": "info"},
        "exp_annotations": {
            "summary": "Less than 10% of the cluster's GPUs are free.",
            "description": "5% of allocatable GPUs are free; new GPU jobs may not schedule.",
        },
    }
    run(
        tmp_path,
        rules,
        [
            case(cluster(5), "GPUClusterNearlyFull", "25m", []),
            case(cluster(5), "GPUClusterNearlyFull", "40m", [full]),
            case(cluster(10), "GPUClusterNearlyFull", "40m", []),
        ],
    )


def test_overcommitted_unhealthy_and_stale_name_their_node(tmp_path: Path, rules: Path) -> None:
    series = {
        f'gpu_inventory_node_gpus{{{H100},state="allocatable"}}': "6x60",
        f'gpu_inventory_node_gpus{{{H100},state="allocated"}}': "8x60",
        f'gpu_inventory_node_gpus{{{H100},state="unhealthy"}}': "0 0 2x60",
        'gpu_inventory_node_agent{node="h100-a",state="Stale"}': "1x60",
        'gpu_inventory_node_agent{node="t4-a",state="Reporting"}': "1x60",
        'gpu_inventory_node_agent{node="a100-a",state="NVMLUnavailable"}': "0x5 1x60",
    }
    over = {
        "exp_labels": {"severity": "warning", **H100_LABELS},
        "exp_annotations": {
            "summary": "Node h100-a has more GPUs allocated than allocatable.",
            "description": "Pods bound to h100-a hold more GPUs than the device plugin now "
            "advertises: GPUs were lost (XID, driver, or plugin restart) under running pods.",
        },
    }
    sick = {
        "exp_labels": {"severity": "warning", **H100_LABELS},
        "exp_annotations": {
            "summary": "2 unhealthy GPU(s) on h100-a.",
            "description": "The node agent reports unhealthy NVIDIA-H100-80GB-HBM3 GPUs on "
            "h100-a (kubectl get gpunode h100-a -o yaml says which and why).",
        },
    }
    stale = {
        "exp_labels": {"severity": "warning", "node": "h100-a", "state": "Stale"},
        "exp_annotations": {
            "summary": "The agent on h100-a is Stale.",
            "description": "The GPU readings of h100-a are not current: its agent pod is not "
            "running, not reporting, or reports nonsense.",
        },
    }
    blind = {
        "exp_labels": {"severity": "warning", "node": "a100-a", "state": "NVMLUnavailable"},
        "exp_annotations": {
            "summary": "The agent on a100-a cannot read its GPUs through NVML.",
            "description": "The agent runs but NVML does not load or sees no GPU, so the health "
            "of a100-a's GPUs is unknown (kubectl get gpunode a100-a -o yaml says why): no "
            "driver, or the container runtime gives the agent no GPU access "
            '(agent.runtimeClassName, agent.gpuAccess; README, "Deploy to a real cluster").',
        },
    }
    run(
        tmp_path,
        rules,
        [
            case(series, "GPUNodeOvercommitted", "10m", []),
            case(series, "GPUNodeOvercommitted", "20m", [over]),
            case(series, "GPUsUnhealthy", "6m", []),
            case(series, "GPUsUnhealthy", "8m", [sick]),
            case(series, "GPUNodeAgentStale", "10m", []),
            case(series, "GPUNodeAgentStale", "20m", [stale]),
            case(series, "GPUNodeNVMLUnavailable", "15m", []),
            case(series, "GPUNodeNVMLUnavailable", "25m", [blind]),
        ],
    )


def test_alerts_keep_each_clusters_labels_and_drop_the_scrapes(tmp_path: Path, rules: Path) -> None:
    """Two clusters' series in one Prometheus (Thanos, federation), each scraped from two
    operator replicas during a handover: one alert per cluster, without pod or instance."""
    series = {}
    for cluster, unhealthy in (("east", 2), ("west", 0)):
        for pod in ("operator-0", "operator-1"):
            scrape = f'cluster="{cluster}",pod="{pod}",instance="{pod}:9090",job="gpu-inventory"'
            series[f'gpu_inventory_node_gpus{{{H100},{scrape},state="unhealthy"}}'] = (
                f"{unhealthy}x20"
            )
            series[f'gpu_inventory_gpus{{{scrape},state="allocatable"}}'] = "100x60"
            series[f'gpu_inventory_gpus{{{scrape},state="available"}}'] = "5x60"
    sick = {
        "exp_labels": {"severity": "warning", "cluster": "east", **H100_LABELS},
        "exp_annotations": {
            "summary": "2 unhealthy GPU(s) on h100-a.",
            "description": "The node agent reports unhealthy NVIDIA-H100-80GB-HBM3 GPUs on "
            "h100-a (kubectl get gpunode h100-a -o yaml says which and why).",
        },
    }
    full = [
        {
            "exp_labels": {"severity": "info", "cluster": cluster},
            "exp_annotations": {
                "summary": "Less than 10% of the cluster's GPUs are free.",
                "description": "5% of allocatable GPUs are free; new GPU jobs may not schedule.",
            },
        }
        for cluster in ("east", "west")
    ]
    run(
        tmp_path,
        rules,
        [
            case(series, "GPUsUnhealthy", "10m", [sick]),
            case(series, "GPUClusterNearlyFull", "40m", full),
        ],
    )
