"""Per-GPU health from the readings: Healthy, Degraded or Unhealthy, with the reasons why.

Pure: no I/O; the caller passes `now`. Each rule names the source it follows:
- XIDs: NVIDIA's XID catalog, through `xid.classify` (catalog version in `xidcatalog.py`).
- Memory errors and the driver's recovery action: DCGM's health watches (NVIDIA/DCGM v4.6.0,
  modules/health/DcgmHealthWatch.cpp: MonitorMemVolatileDbes, MonitorMemRetiredPending,
  MonitorMemSbeDbeRetiredPages, MonitorMemRowRemapFailures, MonitorMemRowRemapUncorrectable,
  MonitorMemUnrepairableFlag, MonitorGpuRecoveryAction; limits in
  common/DcgmGPUHardwareLimits.h), and NVIDIA's memory error management documents:
  A100/H100 (https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/) and dynamic page
  retirement before Ampere (https://docs.nvidia.com/deploy/dynamic-page-retirement/).
- The recovery-action codes DCGM does not judge (RecoverImexDomain, BusReset, SystemReboot),
  NVML's lost-GPU errors, temperature thresholds and clocks-event reasons: the NVML API
  reference (https://docs.nvidia.com/deploy/nvml-api/).

The recovery action is the driver's verdict on *its* conditions (raised for uncorrectable memory
errors, per the A100/H100 memory error management guide): it adds a finding and never erases
one. `None` means "no driver action needed", not "healthy": an XID whose catalog resolution is a
reset or a reboot still counts until the XID window ends or the node reboots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

from gpu_inventory.api import models
from gpu_inventory.nodeagent import xid
from gpu_inventory.nodeagent.backend import LOST_TEXT, LostReason, XidWatch
from gpu_inventory.nodeagent.xidcatalog import CATALOG_VERSION

_RANK: Final[dict[str, int]] = {"Healthy": 0, "Unknown": 1, "Degraded": 2, "Unhealthy": 3}

# common/DcgmGPUHardwareLimits.h (DCGM v4.6.0).
DCGM_LIMIT_MAX_RETIRED_PAGES: Final = 63
DCGM_LIMIT_MAX_RETIRED_PAGES_SOFT_LIMIT: Final = 15
DCGM_LIMIT_MAX_ROW_REMAP_UNCORRECTABLE: Final = 512


@dataclasses.dataclass(frozen=True, slots=True)
class HealthPolicy:
    """How long an XID keeps counting against a GPU."""

    xid_window_seconds: float = 86_400.0
    """Seconds an XID counts after it was last seen (default a day). The agent cannot see a GPU
    reset, so an XID whose resolution is a reset would otherwise count forever; a node reboot
    (a new boot ID) ends it at once."""


DEFAULT_POLICY: Final = HealthPolicy()


@dataclasses.dataclass(frozen=True, slots=True)
class _Finding:
    severity: models.HealthStatus
    reason: str


# NVML_FI_DEV_GET_GPU_RECOVERY_ACTION. DCGM v4.6.0 MonitorGpuRecoveryAction judges codes 0-4:
# GpuReset, NodeReboot and DrainAndReset FAIL (DCGM_FR_GPU_RECOVERY_RESET, _REBOOT,
# _DRAIN_RESET), DrainP2P WARNs (DCGM_FR_GPU_RECOVERY_DRAIN_P2P), None is healthy; it leaves the
# later codes alone, which follow NVML's "Error Recovery and Response Flags" here.
_RECOVERY: Final[dict[models.RecoveryAction, _Finding]] = {
    "GpuReset": _Finding("Unhealthy", "driver recovery action GpuReset: reset the GPU"),
    "NodeReboot": _Finding("Unhealthy", "driver recovery action NodeReboot: reboot the node"),
    "DrainAndReset": _Finding(
        "Unhealthy", "driver recovery action DrainAndReset: drain the GPU, then reset it"
    ),
    "DrainP2P": _Finding(
        "Degraded", "driver recovery action DrainP2P: stop peer-to-peer work on this GPU"
    ),
    "BusReset": _Finding("Unhealthy", "driver recovery action BusReset: reset the PCIe bus"),
    "SystemReboot": _Finding("Unhealthy", "driver recovery action SystemReboot: reboot"),
    "RecoverImexDomain": _Finding(
        "Degraded", "driver recovery action RecoverImexDomain: recover the IMEX domain"
    ),
}


def assess(
    gpu: models.GPU,
    *,
    now: datetime,
    lost: LostReason | None = None,
    policy: HealthPolicy = DEFAULT_POLICY,
    xids_unwatched: XidWatch | None = None,
    unknown_recovery_action: int | None = None,
) -> models.Health:
    """The health of one GPU at `now`, from its readings and remembered XIDs (`gpu.xids`);
    `lost` says the GPU gave no readings at all, `xids_unwatched` why its XID events are not
    watched, `unknown_recovery_action` a recovery-action code this agent cannot name."""
    findings: list[_Finding] = []
    if lost is not None:
        severity: models.HealthStatus = (
            "Unknown" if lost in ("Unreadable", "NotRead") else "Unhealthy"
        )
        findings.append(_Finding(severity, LOST_TEXT[lost]))
    if xids_unwatched is not None and xids_unwatched.fault:
        findings.append(
            _Finding(
                "Unknown",
                f"XID events cannot be watched on this GPU (NVML {xids_unwatched.error}): "
                "faults it reports are not seen",
            )
        )
    if gpu.recovery_action is not None and gpu.recovery_action in _RECOVERY:
        findings.append(_RECOVERY[gpu.recovery_action])
    if unknown_recovery_action is not None:
        # A code newer than this agent's NVML bindings: the driver asks for something.
        findings.append(
            _Finding(
                "Degraded",
                f"unknown recovery action {unknown_recovery_action} (newer than this agent): "
                "investigate",
            )
        )
    findings.extend(
        _xid_findings(gpu.xids, since=now - timedelta(seconds=policy.xid_window_seconds))
    )
    findings.extend(_memory_findings(gpu))
    findings.extend(_thermal_findings(gpu))
    return _verdict(findings)


def _xid_findings(entries: Iterable[models.XidEvent], *, since: datetime) -> Iterable[_Finding]:
    for entry in entries:
        if entry.time < since:
            continue
        info = xid.classify(entry.xid)  # today's catalog, whatever the entry says
        if info.verdict == "Healthy":
            continue
        seen = f"x{entry.count}, last" if entry.count > 1 else "at"
        when = f"{seen} {_stamp(entry.time)}"
        if not info.known:
            yield _Finding(
                info.verdict,
                f"UnknownXID: XID {entry.xid} {when} is not in the {CATALOG_VERSION}: investigate",
            )
        else:
            yield _Finding(
                info.verdict,
                f"XID {entry.xid} {info.mnemonic} ({info.description}) {when}: "
                f"{info.resolution or 'no resolution'}, {info.guidance}",
            )


def _memory_findings(gpu: models.GPU) -> Iterable[_Finding]:
    uncorrected = gpu.ecc.volatile_uncorrected
    if gpu.unrepairable_memory:
        # DCGM MonitorMemUnrepairableFlag: FAIL when DCGM_FI_DEV_MEMORY_UNREPAIRABLE is non-zero
        # (DCGM_FR_FAULTY_MEMORY, "Found %lld faulty memory elements on GPU %u"; next step: run
        # field diagnostics). NVML: nvmlDeviceGetUnrepairableMemoryFlag_v1.
        yield _Finding(
            "Unhealthy",
            "NVML reports unrepairable memory on this GPU: run NVIDIA field diagnostics",
        )
    if uncorrected:
        # DCGM MonitorMemVolatileDbes: "Fail for any volatile DBEs" (DCGM_FR_VOLATILE_DBE_DETECTED,
        # next step "Drain the GPU and reset it or reboot the node."), whatever the driver says.
        yield _Finding(
            "Unhealthy",
            f"{uncorrected} uncorrectable (double-bit) ECC errors since the driver loaded: "
            "drain the GPU and reset it or reboot the node",
        )
    rows = gpu.remapped_rows
    if rows is not None:
        if rows.failure:
            # DCGM MonitorMemRowRemapFailures: FAIL (DCGM_FR_ROW_REMAP_FAILURE); the A100 guide:
            # a remapping failure meets NVIDIA's RMA policy.
            yield _Finding(
                "Unhealthy", "row remapping failed: the GPU meets NVIDIA's RMA policy; replace it"
            )
        if rows.pending:
            # A100/H100 guide: pending remaps apply at the next GPU reset, and "unaffected
            # applications can continue running".
            yield _Finding("Degraded", "row remapping pending: reset the GPU when convenient")
        if rows.uncorrectable >= DCGM_LIMIT_MAX_ROW_REMAP_UNCORRECTABLE:
            # DCGM MonitorMemRowRemapUncorrectable: WARN at DCGM_LIMIT_MAX_ROW_REMAP_UNCORRECTABLE.
            yield _Finding(
                "Degraded",
                f"{rows.uncorrectable} rows remapped for uncorrectable errors (DCGM warns at "
                f"{DCGM_LIMIT_MAX_ROW_REMAP_UNCORRECTABLE}): run NVIDIA field diagnostics",
            )
    pages = gpu.retired_pages
    if pages is not None:
        total = pages.single_bit_ecc + pages.double_bit_ecc
        if total >= DCGM_LIMIT_MAX_RETIRED_PAGES:
            # DCGM MonitorMemSbeDbeRetiredPages: FAIL when SBE + DBE retired pages reach the limit
            # (DCGM_FR_RETIRED_PAGES_LIMIT, next step: run field diagnostics).
            yield _Finding(
                "Unhealthy",
                f"{total} retired pages (DCGM fails at {DCGM_LIMIT_MAX_RETIRED_PAGES}): "
                "run NVIDIA field diagnostics",
            )
        elif pages.double_bit_ecc > DCGM_LIMIT_MAX_RETIRED_PAGES_SOFT_LIMIT:
            # DCGM fails above the soft limit only if more than one more DBE page was retired in
            # the past week (DCGM_FR_RETIRED_PAGES_DBE_LIMIT); the agent keeps no week of history.
            yield _Finding(
                "Degraded",
                f"{pages.double_bit_ecc} pages retired for double-bit errors (DCGM soft limit "
                f"{DCGM_LIMIT_MAX_RETIRED_PAGES_SOFT_LIMIT}; it fails if more than one more is "
                "retired within a week): watch the count",
            )
        if pages.pending:
            # DCGM MonitorMemRetiredPending: WARN (DCGM_FR_PENDING_PAGE_RETIREMENTS); dynamic
            # page retirement: "New retired page, reload the driver to activate".
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
    reasons = [models.clip(f.reason, models.MAX_REASON) for f in ordered]
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
