"""Each health rule, table-driven: readings in, status and reasons out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpu_inventory.api import models
from gpu_inventory.nodeagent import health

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def gpu(**fields: Any) -> models.GPU:
    """A healthy Hopper GPU with a driver that reports its recovery action."""
    base: dict[str, Any] = {
        "uuid": "GPU-1",
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "temperature": 40,
        "slowdown_temperature": 89,
        "shutdown_temperature": 92,
        "ecc": {"enabled": True, "volatile_uncorrected": 0},
        "remapped_rows": {"correctable": 0, "uncorrectable": 0, "pending": False, "failure": False},
        "recovery_action": "None",
    }
    base.update(fields)
    return models.GPU.model_validate(base)


def xids(*events: tuple[int, datetime]) -> list[dict[str, Any]]:
    return [{"xid": code, "time": at} for code, at in events]


CASES: list[tuple[str, models.GPU, dict[str, Any], str, list[str]]] = [
    ("healthy", gpu(), {}, "Healthy", []),
    # --- lost GPUs (NVML GpuIsLost / ResetRequired; gone from the device list)
    ("gpu-is-lost", gpu(), {"lost": "GpuIsLost"}, "Unhealthy", ["GPU is lost"]),
    ("reset-required", gpu(), {"lost": "ResetRequired"}, "Unhealthy", ["needs a reset"]),
    ("vanished", gpu(), {"lost": "Vanished"}, "Unhealthy", ["no longer listed by NVML"]),
    ("unreadable-is-unknown", gpu(), {"lost": "Unreadable"}, "Unknown", ["cannot read"]),
    # --- the driver's recovery action
    ("recovery-gpu-reset", gpu(recovery_action="GpuReset"), {}, "Unhealthy", ["GpuReset"]),
    ("recovery-node-reboot", gpu(recovery_action="NodeReboot"), {}, "Unhealthy", ["NodeReboot"]),
    ("recovery-bus-reset", gpu(recovery_action="BusReset"), {}, "Unhealthy", ["BusReset"]),
    ("recovery-system-reboot", gpu(recovery_action="SystemReboot"), {}, "Unhealthy", ["reboot"]),
    ("recovery-drain-reset", gpu(recovery_action="DrainAndReset"), {}, "Degraded", ["drain"]),
    ("recovery-drain-p2p", gpu(recovery_action="DrainP2P"), {}, "Degraded", ["peer-to-peer"]),
    ("recovery-imex", gpu(recovery_action="RecoverImexDomain"), {}, "Degraded", ["IMEX"]),
    # --- XIDs, without a driver verdict (older drivers)
    (
        "xid-79-unhealthy",
        gpu(recovery_action=None, xids=xids((79, NOW - HOUR))),
        {},
        "Unhealthy",
        ["XID 79 (GPU has fallen off the bus) at 2026-11-01T11:00:00Z: drain and reboot"],
    ),
    (
        "application-xids-never-count",
        gpu(recovery_action=None, xids=xids(*((c, NOW) for c in (13, 31, 43, 45, 68, 109)))),
        {},
        "Healthy",
        [],
    ),
    (
        "contained-ecc-xid-94-degrades",
        gpu(recovery_action=None, xids=xids((94, NOW))),
        {},
        "Degraded",
        ["XID 94"],
    ),
    (
        "repeated-xids-share-one-reason",
        gpu(recovery_action=None, xids=xids((48, NOW - 2 * HOUR), (48, NOW - HOUR))),
        {},
        "Unhealthy",
        ["XID 48 (double-bit ECC error) x2, last 2026-11-01T11:00:00Z"],
    ),
    (
        "xids-outside-the-window-no-longer-count",
        gpu(recovery_action=None, xids=xids((79, NOW - 25 * HOUR))),
        {},
        "Healthy",
        [],
    ),
    (
        "unknown-xid-is-unhealthy",
        gpu(recovery_action=None, xids=xids((4242, NOW))),
        {},
        "Unhealthy",
        ["XID 4242 (not in the catalogue)"],
    ),
    # --- XIDs when the driver reports a recovery action: the driver's verdict is preferred
    (
        "driver-verdict-read-after-the-xid-wins",
        gpu(recovery_action="None", xids=xids((48, NOW - HOUR))),
        {"read_at": NOW},
        "Healthy",
        [],
    ),
    (
        "xid-newer-than-the-reading-still-counts",
        gpu(recovery_action="None", xids=xids((48, NOW))),
        {"read_at": NOW - timedelta(seconds=5)},
        "Unhealthy",
        ["XID 48"],
    ),
    # --- uncorrectable ECC (volatile: since the driver loaded)
    (
        "uncorrectable-ecc-without-driver-verdict",
        gpu(recovery_action=None, ecc={"enabled": True, "volatile_uncorrected": 2}),
        {},
        "Unhealthy",
        ["2 uncorrectable ECC errors since the driver loaded: drain and reset the GPU"],
    ),
    (
        "uncorrectable-ecc-with-driver-verdict-none",
        gpu(ecc={"enabled": True, "volatile_uncorrected": 1}),
        {},
        "Degraded",
        ["1 uncorrectable ECC errors since the driver loaded (driver recovery action None)"],
    ),
    (
        "corrected-ecc-is-fine",
        gpu(ecc={"enabled": True, "volatile_corrected": 5000, "volatile_uncorrected": 0}),
        {},
        "Healthy",
        [],
    ),
    # --- row remapping (Ampere+) and page retirement (before)
    (
        "remap-pending",
        gpu(remapped_rows={"correctable": 1, "pending": True}),
        {},
        "Degraded",
        ["row remapping pending: reset the GPU when convenient"],
    ),
    (
        "remap-failure",
        gpu(remapped_rows={"uncorrectable": 9, "failure": True}),
        {},
        "Unhealthy",
        ["row remapping failed"],
    ),
    (
        "page-retirement-pending",
        gpu(remapped_rows=None, retired_pages={"double_bit_ecc": 1, "pending": True}),
        {},
        "Degraded",
        ["page retirement pending"],
    ),
    # --- thermal, against the device's own thresholds
    ("below-slowdown", gpu(temperature=88), {}, "Healthy", []),
    (
        "at-slowdown",
        gpu(temperature=89),
        {},
        "Degraded",
        ["temperature at or above the slowdown threshold (89 C)"],
    ),
    (
        "at-shutdown",
        gpu(temperature=95),
        {},
        "Unhealthy",
        ["temperature at or above the shutdown threshold (92 C)"],
    ),
    (
        "thresholds-unknown-means-no-thermal-verdict",
        gpu(temperature=120, slowdown_temperature=None, shutdown_temperature=None),
        {},
        "Healthy",
        [],
    ),
    (
        "hardware-thermal-slowdown",
        gpu(clocks_event_reasons=["HwThermalSlowdown"]),
        {},
        "Degraded",
        ["hardware thermal slowdown"],
    ),
    ("power-brake", gpu(clocks_event_reasons=["HwPowerBrakeSlowdown"]), {}, "Degraded", ["brake"]),
    ("software-power-cap-is-normal", gpu(clocks_event_reasons=["SwPowerCap"]), {}, "Healthy", []),
    # --- several findings: the worst wins, the worst reasons first
    (
        "worst-first",
        gpu(temperature=90, recovery_action="GpuReset"),
        {},
        "Unhealthy",
        ["driver recovery action GpuReset", "temperature at or above the slowdown"],
    ),
]


@pytest.mark.parametrize(
    ("reading", "kwargs", "want_status", "want_reasons"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_assess(
    reading: models.GPU, kwargs: dict[str, Any], want_status: str, want_reasons: list[str]
) -> None:
    verdict = health.assess(reading, now=NOW, **kwargs)
    assert verdict.status == want_status
    assert len(verdict.reasons) == len(want_reasons), verdict.reasons
    for got, want in zip(verdict.reasons, want_reasons, strict=True):
        assert want in got


def test_reasons_are_bounded_by_the_schema() -> None:
    many = gpu(
        recovery_action=None,
        xids=xids(*((code, NOW) for code in (48, 62, 64, 74, 79, 95, 119, 120, 140, 4242))),
    )
    verdict = health.assess(many, now=NOW)
    assert len(verdict.reasons) == models.MAX_REASONS
    assert verdict.reasons[-1] == "and 3 more"
    models.Health.model_validate(verdict.model_dump())  # fits the API


def test_the_xid_window_is_configurable() -> None:
    reading = gpu(recovery_action=None, xids=xids((79, NOW - HOUR)))
    short = health.HealthPolicy(xid_window_seconds=60)
    assert health.assess(reading, now=NOW, policy=short).status == "Healthy"
    assert health.assess(reading, now=NOW).status == "Unhealthy"


@pytest.mark.parametrize(
    ("statuses", "want"),
    [
        ([], "Unknown"),
        (["Healthy", "Healthy"], "Healthy"),
        (["Healthy", "Unknown"], "Unknown"),
        (["Unknown", "Degraded"], "Degraded"),
        (["Degraded", "Unhealthy", "Healthy"], "Unhealthy"),
    ],
)
def test_worst(statuses: list[models.HealthStatus], want: str) -> None:
    assert health.worst(statuses) == want
