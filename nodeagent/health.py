"""Per-GPU health from the readings: Healthy, Degraded or Unhealthy, with the reasons why.

Pure: no I/O; the caller passes `now`. Each rule names the NVIDIA document it comes from:
- XID catalog: https://docs.nvidia.com/deploy/xid-errors/ (via `xid.classify`).
- A100 (Ampere and later) memory error management:
  https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/ ("Error Recovery and Response Flags":
  row-remapping pending means "reset when convenient" and running work is unaffected; a
  row-remapping failure meets the RMA policy; the recovery action flag is the driver's verdict
  after an uncorrectable error).
- Dynamic page retirement (before Ampere): https://docs.nvidia.com/deploy/dynamic-page-retirement/
  (a retired page is pending until the driver reloads).
- NVML API reference: https://docs.nvidia.com/deploy/nvml-api/ (NVML_ERROR_GPU_IS_LOST,
  NVML_ERROR_RESET_REQUIRED, temperature thresholds, clocks-event reasons,
  NVML_FI_DEV_GET_GPU_RECOVERY_ACTION).

When the driver reports a recovery action, it is preferred to our XID table: an XID that
arrived before that reading was taken is already reflected in the driver's verdict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

from gpu_inventory.api import models
from gpu_inventory.nodeagent import xid
from gpu_inventory.nodeagent.backend import LostReason

_RANK: Final[dict[str, int]] = {"Healthy": 0, "Unknown": 1, "Degraded": 2, "Unhealthy": 3}


@dataclasses.dataclass(frozen=True, slots=True)
class HealthPolicy:
    """How long an XID keeps counting against a GPU when the driver gives no verdict."""

    xid_window_seconds: float = 86_400.0
    """Seconds an XID counts (default a day). The agent cannot see a GPU reset, so without the
    driver's recovery action an XID would otherwise count forever, as it does in the device
    plugin until it restarts."""


DEFAULT_POLICY: Final = HealthPolicy()


@dataclasses.dataclass(frozen=True, slots=True)
class _Finding:
    severity: models.HealthStatus
    reason: str


_LOST: Final[dict[LostReason, str]] = {
    # NVML_ERROR_GPU_IS_LOST: "The GPU has fallen off the bus or has otherwise become
    # inaccessible" (nvmlReturn_t); XID 79 is the usual cause, and the catalog says reboot.
    "GpuIsLost": "GPU is lost (NVML GpuIsLost: off the bus or inaccessible): reboot the node",
    # NVML_ERROR_RESET_REQUIRED: "The GPU requires a reset before it can be used again".
    "ResetRequired": "GPU needs a reset before it can be used again (NVML ResetRequired)",
    "Vanished": "GPU is no longer listed by NVML although this agent saw it earlier",
    "Unreadable": "NVML cannot read this GPU (see the agent log)",
}

# NVML_FI_DEV_GET_GPU_RECOVERY_ACTION, meanings from "Error Recovery and Response Flags".
_RECOVERY: Final[dict[models.RecoveryAction, _Finding]] = {
    "GpuReset": _Finding("Unhealthy", "driver recovery action GpuReset: reset the GPU"),
    "NodeReboot": _Finding("Unhealthy", "driver recovery action NodeReboot: reboot the node"),
    "BusReset": _Finding("Unhealthy", "driver recovery action BusReset: reset the PCIe bus"),
    "SystemReboot": _Finding("Unhealthy", "driver recovery action SystemReboot: reboot"),
    "DrainAndReset": _Finding(
        "Degraded", "driver recovery action DrainAndReset: drain the GPU, then reset it"
    ),
    "DrainP2P": _Finding(
        "Degraded", "driver recovery action DrainP2P: stop peer-to-peer work on this GPU"
    ),
    "RecoverImexDomain": _Finding(
        "Degraded", "driver recovery action RecoverImexDomain: recover the IMEX domain"
    ),
}

_ACTION_TEXT: Final[dict[models.XidAction, str]] = {
    "None": "no action needed",
    "RestartApplication": "restart the application; reset the GPU when convenient",
    "ResetGPU": "drain and reset the GPU",
    "RebootNode": "drain and reboot the node",
    "Investigate": "investigate (see the NVIDIA Xid catalog)",
}


def assess(
    gpu: models.GPU,
    *,
    now: datetime,
    read_at: datetime | None = None,
    lost: LostReason | None = None,
    policy: HealthPolicy = DEFAULT_POLICY,
) -> models.Health:
    """The health of one GPU at `now`, from its readings and recent XIDs.

    `read_at` is when the readings (notably the driver's recovery action) were taken; `lost`
    says the GPU gave no readings at all.
    """
    findings: list[_Finding] = []
    if lost is not None:
        findings.append(_Finding("Unknown" if lost == "Unreadable" else "Unhealthy", _LOST[lost]))
    if gpu.recovery_action is not None and gpu.recovery_action in _RECOVERY:
        findings.append(_RECOVERY[gpu.recovery_action])
    findings.extend(_xid_findings(gpu, now=now, read_at=read_at, policy=policy))
    findings.extend(_memory_findings(gpu))
    findings.extend(_thermal_findings(gpu))
    return _verdict(findings)


def _xid_findings(
    gpu: models.GPU, *, now: datetime, read_at: datetime | None, policy: HealthPolicy
) -> Iterable[_Finding]:
    since = now - timedelta(seconds=policy.xid_window_seconds)
    driver_verdict = gpu.recovery_action is not None and read_at is not None
    counted: dict[int, list[datetime]] = {}
    for event in gpu.xids:
        if event.time < since:
            continue
        if driver_verdict and read_at is not None and read_at >= event.time:
            continue  # the driver's recovery action, read after this XID, is the verdict
        counted.setdefault(event.xid, []).append(event.time)
    for code, times in sorted(counted.items()):
        info = xid.classify(code)
        if info.severity == "Healthy":
            continue
        seen = f"x{len(times)}, last" if len(times) > 1 else "at"
        yield _Finding(
            info.severity,
            f"XID {code} ({info.summary}) {seen} {_stamp(max(times))}: {_ACTION_TEXT[info.action]}",
        )


def _memory_findings(gpu: models.GPU) -> Iterable[_Finding]:
    uncorrected = gpu.ecc.volatile_uncorrected
    if uncorrected:
        if gpu.recovery_action is None:
            # No driver verdict: treat it as the catalog treats XID 48 (drain and reset).
            yield _Finding(
                "Unhealthy",
                f"{uncorrected} uncorrectable ECC errors since the driver loaded: "
                "drain and reset the GPU",
            )
        else:
            # The driver reports a recovery action after uncorrectable errors (A100 memory
            # error management); its finding above says whether a reset is needed.
            yield _Finding(
                "Degraded",
                f"{uncorrected} uncorrectable ECC errors since the driver loaded "
                f"(driver recovery action {gpu.recovery_action})",
            )
    rows = gpu.remapped_rows
    if rows is not None and rows.failure:
        yield _Finding(
            "Unhealthy", "row remapping failed: the GPU meets NVIDIA's RMA policy; replace it"
        )
    if rows is not None and rows.pending:
        yield _Finding("Degraded", "row remapping pending: reset the GPU when convenient")
    pages = gpu.retired_pages
    if pages is not None and pages.pending:
        yield _Finding(
            "Degraded",
            "page retirement pending: reset the GPU or reload the driver when convenient",
        )


def _thermal_findings(gpu: models.GPU) -> Iterable[_Finding]:
    temperature = gpu.temperature
    if temperature is not None:
        if gpu.shutdown_temperature is not None and temperature >= gpu.shutdown_temperature:
            yield _Finding(
                "Unhealthy",
                f"temperature at or above the shutdown threshold ({gpu.shutdown_temperature} C)",
            )
        elif gpu.slowdown_temperature is not None and temperature >= gpu.slowdown_temperature:
            yield _Finding(
                "Degraded",
                f"temperature at or above the slowdown threshold ({gpu.slowdown_temperature} C)",
            )
    # nvmlClocksEventReasonHwThermalSlowdown / HwPowerBrakeSlowdown: hardware has cut clocks.
    if "HwThermalSlowdown" in gpu.clocks_event_reasons:
        yield _Finding("Degraded", "hardware thermal slowdown is active")
    if "HwPowerBrakeSlowdown" in gpu.clocks_event_reasons:
        yield _Finding("Degraded", "hardware power brake slowdown is active")


def _verdict(findings: list[_Finding]) -> models.Health:
    if not findings:
        return models.Health(status="Healthy", reasons=[])
    ordered = sorted(findings, key=lambda f: -_RANK[f.severity])  # stable: rule order kept
    status = ordered[0].severity
    reasons = [_clip(f.reason) for f in ordered]
    limit = models.MAX_REASONS
    if len(reasons) > limit:
        reasons = [*reasons[: limit - 1], f"and {len(reasons) - limit + 1} more"]
    return models.Health(status=status, reasons=reasons)


def worst(statuses: Iterable[models.HealthStatus]) -> models.HealthStatus:
    """The worst of several GPU health statuses ("Unknown" ranks between Healthy and Degraded);
    "Unknown" when there are none."""
    return max(statuses, key=lambda s: _RANK[s], default="Unknown")


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clip(text: str) -> str:
    return models.clip(text, models.MAX_REASON)
