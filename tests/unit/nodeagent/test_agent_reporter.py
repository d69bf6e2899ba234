"""When the agent writes: meaningful changes, heartbeats, the floor, deadbands, backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpu_inventory.api import models
from gpu_inventory.nodeagent.reporter import Reporter, ReportPolicy, changes
from gpu_inventory.nodeagent.status import NodeReport, summarize

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = ReportPolicy(write_floor_seconds=10, heartbeat_seconds=60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def report(*gpus: models.GPU, nvml: bool = True, message: str = "") -> NodeReport:
    return NodeReport(
        summary=summarize(gpus),
        agent=models.AgentInfo(version="0.1.0", nvml_available=nvml, message=message),
        driver=models.DriverInfo(driver_version="570"),
        gpus=gpus,
    )


def gpu(index: int = 0, **fields: Any) -> models.GPU:
    base: dict[str, Any] = {
        "uuid": f"GPU-{index}",
        "index": index,
        "memory_used": 1 << 30,
        "temperature": 40,
        "utilization_gpu": 0,
        "power_draw_watts": 70.0,
        "ecc": {"volatile_corrected": 0},
    }
    return models.GPU.model_validate({**base, **fields})


def test_the_first_report_is_written_at_once() -> None:
    assert Reporter(POLICY).due(report(gpu()), at(0)) == "first report"


def test_nothing_changed_means_only_heartbeats() -> None:
    reporter = Reporter(POLICY)
    same = report(gpu())
    reporter.written(same, at(0))
    assert [s for s in range(0, 60) if reporter.due(same, at(s))] == []
    assert reporter.due(same, at(60)) == "heartbeat"
    reporter.written(same, at(60))
    assert [s for s in range(60, 120) if reporter.due(same, at(s))] == []
    assert reporter.due(same, at(120)) == "heartbeat"


def test_a_change_waits_for_the_floor() -> None:
    reporter = Reporter(POLICY)
    reporter.written(report(gpu()), at(0))
    hot = report(gpu(ecc={"volatile_corrected": 3}))
    assert reporter.due(hot, at(9.9)) is None
    assert reporter.due(hot, at(10)) == "changed: gpus[0].ecc"
    assert reporter.seconds_until_due(hot, at(4)) == pytest.approx(6)


def test_live_numbers_never_cause_a_write() -> None:
    reporter = Reporter(POLICY)
    reporter.written(report(gpu()), at(0))
    busy = report(
        gpu(
            utilization_gpu=100,
            utilization_memory=80,
            power_draw_watts=650.0,
            clocks={"sm": 1980},
            clocks_event_reasons=["SwPowerCap"],
        )
    )
    assert reporter.due(busy, at(30)) is None
    assert reporter.seconds_until_due(busy, at(30)) == pytest.approx(30)


CHANGES = [
    ("memory-within-deadband", gpu(memory_used=(1 << 30) + (255 << 20)), []),
    ("memory-beyond-deadband", gpu(memory_used=(1 << 30) + (256 << 20)), ["gpus[0].memory_used"]),
    ("memory-now-unknown", gpu(memory_used=None), ["gpus[0].memory_used"]),
    ("temperature-within-deadband", gpu(temperature=44), []),
    ("temperature-beyond-deadband", gpu(temperature=35), ["gpus[0].temperature"]),
    (
        "health",
        gpu(health={"status": "Degraded", "reasons": ["x"]}),
        ["gpus[0].health"],
    ),
    (
        "xid",
        gpu(xids=[{"xid": 79, "time": T0}]),
        ["gpus[0].xids"],
    ),
    ("remap", gpu(remapped_rows={"pending": True}), ["gpus[0].remapped_rows"]),
    ("recovery-action", gpu(recovery_action="GpuReset"), ["gpus[0].recovery_action"]),
    ("mig", gpu(mig={"enabled": True}), ["gpus[0].mig"]),
]


@pytest.mark.parametrize(("new", "want"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_what_counts_as_a_change(new: models.GPU, want: list[str]) -> None:
    assert changes(report(gpu()), report(new), POLICY) == want


def test_node_level_changes() -> None:
    base = report(gpu(0))
    assert changes(base, report(gpu(0), gpu(1)), POLICY) == ["gpu set"]
    assert changes(base, report(gpu(0), nvml=False, message="gone"), POLICY) == ["agent"]
    other_driver = report(gpu(0))
    other_driver = NodeReport(
        base.summary, base.agent, models.DriverInfo(driver_version="575"), base.gpus
    )
    assert changes(base, other_driver, POLICY) == ["driver"]


def test_deadbands_are_configurable() -> None:
    strict = ReportPolicy(memory_deadband_bytes=0, temperature_deadband_celsius=0)
    assert changes(report(gpu()), report(gpu(temperature=41)), strict) == ["gpus[0].temperature"]


def test_failed_writes_back_off_exponentially_up_to_a_cap() -> None:
    policy = ReportPolicy(
        write_floor_seconds=1, heartbeat_seconds=60, retry_initial_seconds=2, retry_max_seconds=10
    )
    reporter = Reporter(policy)
    first = report(gpu())
    waits = [reporter.failed(at(0)) for _ in range(5)]
    assert waits == [2, 4, 8, 10, 10]
    assert reporter.due(first, at(9.9)) is None
    assert reporter.due(first, at(10)) == "first report"
    reporter.written(first, at(10))
    assert reporter.failed(at(20)) == 2  # success resets the backoff


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"write_floor_seconds": 0}, "--write-floor must be > 0"),
        ({"write_floor_seconds": 30, "heartbeat_seconds": 10}, "must not be shorter"),
        ({"memory_deadband_bytes": -1}, "--memory-deadband-mib and --temperature-deadband"),
        ({"retry_initial_seconds": 20, "retry_max_seconds": 10}, "retry"),
    ],
)
def test_bad_policies_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReportPolicy(**options)
