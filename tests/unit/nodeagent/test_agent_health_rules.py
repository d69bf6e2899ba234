"""Each health rule, table-driven: readings in, status and reasons out. Each case names the
source the rule follows (NVIDIA's XID catalog, DCGM's health watches, NVML, NVIDIA's memory
error management guides)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpu_inventory.api import models
from gpu_inventory.nodeagent import health, status
from gpu_inventory.nodeagent.backend import DeviceReading, NodeReading, XidWatch

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def gpu(**fields: Any) -> models.GPU:
    """A healthy Hopper GPU whose driver reports its recovery action (R565+): "None"."""
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


def xids(*entries: tuple[int, datetime] | tuple[int, datetime, int]) -> list[dict[str, Any]]:
    """Per-code XID entries: (code, last seen[, count])."""
    return [{"xid": e[0], "time": e[1], "count": e[2] if len(e) > 2 else 1} for e in entries]


CASES: list[tuple[str, models.GPU, dict[str, Any], str, list[str]]] = [
    ("healthy", gpu(), {}, "Healthy", []),
    # --- lost GPUs (NVML GpuIsLost / ResetRequired; gone from the device list)
    ("gpu-is-lost", gpu(), {"lost": "GpuIsLost"}, "Unhealthy", ["GPU is lost"]),
    ("reset-required", gpu(), {"lost": "ResetRequired"}, "Unhealthy", ["needs a reset"]),
    ("vanished", gpu(), {"lost": "Vanished"}, "Unhealthy", ["no longer listed by NVML"]),
    ("unreadable-is-unknown", gpu(), {"lost": "Unreadable"}, "Unknown", ["cannot read"]),
    # --- the driver's recovery action (NVML_FI_DEV_GET_GPU_RECOVERY_ACTION)
    ("recovery-gpu-reset", gpu(recovery_action="GpuReset"), {}, "Unhealthy", ["GpuReset"]),
    ("recovery-node-reboot", gpu(recovery_action="NodeReboot"), {}, "Unhealthy", ["NodeReboot"]),
    ("recovery-bus-reset", gpu(recovery_action="BusReset"), {}, "Unhealthy", ["BusReset"]),
    ("recovery-system-reboot", gpu(recovery_action="SystemReboot"), {}, "Unhealthy", ["reboot"]),
    # DCGM v4.6.0 MonitorGpuRecoveryAction: DRAIN_AND_RESET -> DCGM_HEALTH_RESULT_FAIL.
    ("recovery-drain-reset", gpu(recovery_action="DrainAndReset"), {}, "Unhealthy", ["drain"]),
    ("recovery-drain-p2p", gpu(recovery_action="DrainP2P"), {}, "Degraded", ["peer-to-peer"]),
    ("recovery-imex", gpu(recovery_action="RecoverImexDomain"), {}, "Degraded", ["IMEX"]),
    # A code newer than this agent: the driver asks for something it cannot name.
    (
        "recovery-unknown-code",
        gpu(recovery_action=None),
        {"unknown_recovery_action": 9},
        "Degraded",
        ["unknown recovery action 9"],
    ),
    # --- XID events that cannot be watched: unknown, not healthy (S6); none at all: no verdict
    (
        "xids-unwatched",
        gpu(),
        {"xids_unwatched": XidWatch("Unknown", fault=True)},
        "Unknown",
        ["XID events cannot be watched on this GPU (NVML Unknown)"],
    ),
    (
        "xids-not-supported",
        gpu(),
        {"xids_unwatched": XidWatch("NotSupported", False)},
        "Healthy",
        [],
    ),
    # --- NVML as a whole unavailable: the GPU is listed from memory, not read
    ("not-read", gpu(), {"lost": "NotRead"}, "Unknown", ["not read"]),
    # --- XIDs: NVIDIA's catalog, resolution bucket (Immediate Action)
    (
        "xid-79-restart-bm",
        gpu(recovery_action=None, xids=xids((79, NOW - HOUR))),
        {},
        "Unhealthy",
        [
            "XID 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS (GPU has fallen off the bus) at "
            "2026-11-01T11:00:00Z: RESTART_BM, drain and reboot the node"
        ],
    ),
    (
        # Catalog: 13, 31, 68 RESTART_APP; 43 IGNORE; 45 WORKFLOW_XID_45 ("follow other Xid").
        "application-xids-never-count",
        gpu(xids=xids(*((c, NOW) for c in (13, 31, 43, 45, 68)))),
        {},
        "Healthy",
        [],
    ),
    (
        # Catalog: 109 ROBUST_CHANNEL_CTXSW_TIMEOUT_ERROR -> RESET_GPU; the device plugin's
        # skip list (internal/rm/health.go) calls it an application error: the catalog wins.
        "xid-109-is-reset-gpu-not-an-application-error",
        gpu(xids=xids((109, NOW))),
        {},
        "Unhealthy",
        ["XID 109 ROBUST_CHANNEL_CTXSW_TIMEOUT_ERROR (Context Switch Timeout Error) at"],
    ),
    (
        # Catalog: RESTART_APP ("RESET_GPU or RESTART_BM is not deemed necessary").
        "restart-app-codes-leave-the-gpu-healthy",
        gpu(xids=xids(*((c, NOW) for c in (8, 11, 25, 32, 39, 40, 41, 69)))),
        {},
        "Healthy",
        [],
    ),
    (
        # Catalog: IGNORE ("No Action required").
        "ignore-codes-leave-the-gpu-healthy",
        gpu(xids=xids(*((c, NOW) for c in (14, 37, 38, 44, 121, 92, 157)))),
        {},
        "Healthy",
        [],
    ),
    (
        # Catalog: 155 NVLINK_SW_DEFINED_ERROR -> RESET_GPU.
        "xid-155-is-reset-gpu",
        gpu(xids=xids((155, NOW))),
        {},
        "Unhealthy",
        ["XID 155 NVLINK_SW_DEFINED_ERROR"],
    ),
    (
        # DCGM BuildXidMappings, m_devastatingXids: 94 -> WARN (reset "when convenient").
        "contained-ecc-xid-94-degrades",
        gpu(xids=xids((94, NOW))),
        {},
        "Degraded",
        ["XID 94 ROBUST_CHANNEL_CONTAINED_ERROR"],
    ),
    (
        "repeated-xids-share-one-reason",
        gpu(xids=xids((48, NOW - HOUR, 2))),
        {},
        "Unhealthy",
        ["XID 48 ROBUST_CHANNEL_GPU_ECC_DBE (Double Bit ECC Error) x2, last 2026-11-01T11:00:00Z"],
    ),
    (
        "xids-outside-the-window-no-longer-count",
        gpu(xids=xids((79, NOW - 25 * HOUR))),
        {},
        "Healthy",
        [],
    ),
    (
        "unknown-xid-is-degraded-with-reason-unknownxid",
        gpu(xids=xids((4242, NOW))),
        {},
        "Degraded",
        ["UnknownXID: XID 4242 at 2026-11-01T12:00:00Z is not in the NVIDIA Xid catalog"],
    ),
    (
        # Codes 162-172 have no resolution in the 2025-10-29 catalog: a person looks.
        "a-code-without-a-resolution-is-degraded",
        gpu(xids=xids((167, NOW))),
        {},
        "Degraded",
        ["XID 167 PCIE_FATAL_TIMEOUT"],
    ),
    # --- uncorrectable ECC: DCGM MonitorMemVolatileDbes, "Fail for any volatile DBEs"
    (
        "volatile-dbe-is-unhealthy-even-when-the-driver-says-none",
        gpu(ecc={"enabled": True, "volatile_uncorrected": 1}),
        {},
        "Unhealthy",
        ["1 uncorrectable (double-bit) ECC errors since the driver loaded: drain the GPU"],
    ),
    (
        "volatile-dbe-on-a-driver-without-recovery-action",
        gpu(recovery_action=None, ecc={"enabled": True, "volatile_uncorrected": 2}),
        {},
        "Unhealthy",
        ["2 uncorrectable (double-bit) ECC errors"],
    ),
    (
        "corrected-ecc-is-fine",
        gpu(ecc={"enabled": True, "volatile_corrected": 5000, "volatile_uncorrected": 0}),
        {},
        "Healthy",
        [],
    ),
    # --- DCGM v4.6.0 MonitorMemUnrepairableFlag: FAIL when the flag is non-zero
    (
        "unrepairable-memory",
        gpu(unrepairable_memory=True),
        {},
        "Unhealthy",
        ["unrepairable memory"],
    ),
    ("repairable-memory", gpu(unrepairable_memory=False), {}, "Healthy", []),
    # --- row remapping (Ampere+): A100/H100 memory error management; DCGM row remap watches
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
        # DCGM MonitorMemRowRemapUncorrectable: WARN at DCGM_LIMIT_MAX_ROW_REMAP_UNCORRECTABLE.
        "remapped-uncorrectable-rows-at-dcgms-limit",
        gpu(remapped_rows={"uncorrectable": 512}),
        {},
        "Degraded",
        ["512 rows remapped for uncorrectable errors (DCGM warns at 512)"],
    ),
    (
        "remapped-uncorrectable-rows-below-the-limit",
        gpu(remapped_rows={"uncorrectable": 511}),
        {},
        "Healthy",
        [],
    ),
    # --- page retirement (before Ampere): DCGM MonitorMemSbeDbeRetiredPages / RetiredPending
    (
        "retired-pages-at-dcgms-limit",
        gpu(remapped_rows=None, retired_pages={"single_bit_ecc": 60, "double_bit_ecc": 3}),
        {},
        "Unhealthy",
        ["63 retired pages (DCGM fails at 63)"],
    ),
    (
        "retired-pages-below-the-limit",
        gpu(remapped_rows=None, retired_pages={"single_bit_ecc": 50, "double_bit_ecc": 12}),
        {},
        "Healthy",
        [],
    ),
    (
        "dbe-retired-pages-above-dcgms-soft-limit",
        gpu(remapped_rows=None, retired_pages={"double_bit_ecc": 16}),
        {},
        "Degraded",
        ["16 pages retired for double-bit errors (DCGM soft limit 15"],
    ),
    (
        "page-retirement-pending",
        gpu(remapped_rows=None, retired_pages={"double_bit_ecc": 1, "pending": True}),
        {},
        "Degraded",
        ["page retirement pending"],
    ),
    # --- thermal, against the device's own thresholds (NVML temperature thresholds)
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


# Catalog resolution RESET_GPU / RESTART_BM / WORKFLOW_* (a reset or reboot): 74 NVLINK_ERROR,
# 119 GSP_RPC_TIMEOUT, 120 GSP_ERROR, 62 PMU_HALT_ERROR, 95 ROBUST_CHANNEL_UNCONTAINED_ERROR,
# 140 UNRECOVERABLE_ECC_ERROR_ESCAPE, 79 and 48. On R565+ drivers the recovery-action field
# is always present, and its "None" means "no driver action needed", not "healthy" (the
# recovery action answers uncorrectable memory errors: A100/H100 memory error management).
@pytest.mark.parametrize("code", [74, 119, 120, 62, 95, 140, 79, 48])
def test_a_recovery_action_of_none_never_erases_a_reset_or_reboot_xid(code: int) -> None:
    seen_at = NOW - timedelta(seconds=30)
    reading = NodeReading(
        driver=models.DriverInfo(), devices=(DeviceReading(gpu(recovery_action="None")),)
    )
    event = models.XidEvent(xid=code, time=seen_at)
    for turn in range(3):  # read after the XID, turn after turn, the driver says None
        report = status.build_report(reading, now=NOW + turn * HOUR, xids={"GPU-1": [event]})
        verdict = report.gpus[0].health
        assert verdict.status == "Unhealthy", verdict.reasons
        assert f"XID {code} " in verdict.reasons[0]


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
    reading = gpu(xids=xids((79, NOW - HOUR)))
    short = health.HealthPolicy(xid_window_seconds=60)
    assert health.assess(reading, now=NOW, policy=short).status == "Healthy"
    assert health.assess(reading, now=NOW).status == "Unhealthy"


def test_the_verdict_comes_from_todays_catalog_not_from_what_an_entry_says() -> None:
    """A restored entry may carry an older class or action; the code decides."""
    stale = [{"xid": 109, "time": NOW, "class": "Application", "action": "RestartApplication"}]
    assert health.assess(gpu(xids=stale), now=NOW).status == "Unhealthy"


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
