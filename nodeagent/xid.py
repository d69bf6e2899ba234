"""The XID catalogue: what an XID means, what to do about it, and what it does to GPU health.

Pure: no I/O. Sources:
- NVIDIA Xid catalog, "Analyzing Xid Errors with the Xid Catalog"
  (https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html): mnemonic and
  "Resolution Bucket (Immediate Action)" per code for Ampere and later
  (RESTART_APP, RESET_GPU, RESTART_BM = reboot the node, IGNORE, CONTACT_SUPPORT).
- Dynamic page retirement (https://docs.nvidia.com/deploy/dynamic-page-retirement/): XID 48 is
  a double-bit ECC error, 63 a retired page (or, on Ampere+, a row marked for remapping), 64 a
  failure to retire one.
- A100 memory error management (https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/):
  XID 94 is a contained uncorrectable error (only the faulting application is affected), XID 95
  an uncontained one (reset the GPU).
- NVIDIA k8s-device-plugin (`internal/rm/health.go`) ignores the application XIDs 13, 31, 43,
  45, 68 and 109 and marks a device unhealthy on any other XID. We do the same for codes this
  catalogue does not know, so we are never more lenient than the device plugin.

Severity only matters when the driver gives no verdict of its own: `health.py` prefers NVML's
recovery action (NVML_FI_DEV_GET_GPU_RECOVERY_ACTION) where the driver reports one.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

from gpu_inventory.api import models

Severity = Literal["Healthy", "Degraded", "Unhealthy"]


@dataclasses.dataclass(frozen=True, slots=True)
class XidInfo:
    """One catalogue row: a short description, its class, the recommended action, its weight."""

    code: int
    summary: str
    xid_class: models.XidClass
    action: models.XidAction
    severity: Severity


def _row(
    code: int,
    summary: str,
    xid_class: models.XidClass,
    action: models.XidAction,
    severity: Severity,
) -> tuple[int, XidInfo]:
    return code, XidInfo(code, summary, xid_class, action, severity)


CATALOGUE: Final[dict[int, XidInfo]] = dict(
    [
        # Application errors: restart the application; the GPU is fine (device-plugin ignores).
        _row(13, "graphics engine exception", "Application", "RestartApplication", "Healthy"),
        _row(31, "GPU memory page fault", "Application", "RestartApplication", "Healthy"),
        _row(43, "GPU stopped processing", "Application", "RestartApplication", "Healthy"),
        _row(45, "preemptive cleanup after earlier errors", "Application", "None", "Healthy"),
        _row(68, "video processor exception", "Application", "RestartApplication", "Healthy"),
        _row(109, "context switch timeout", "Application", "RestartApplication", "Healthy"),
        # Memory (dynamic page retirement; A100 memory error management).
        _row(48, "double-bit ECC error", "Memory", "ResetGPU", "Unhealthy"),
        _row(63, "page retired or row marked for remapping", "Memory", "None", "Healthy"),
        _row(64, "page retirement or row remapping failed", "Memory", "ResetGPU", "Unhealthy"),
        _row(92, "excessive single-bit ECC error rate", "Memory", "Investigate", "Degraded"),
        _row(94, "contained uncorrectable ECC error", "Memory", "RestartApplication", "Degraded"),
        _row(95, "uncontained uncorrectable ECC error", "Memory", "ResetGPU", "Unhealthy"),
        _row(140, "uncorrectable ECC error escaped containment", "Memory", "ResetGPU", "Unhealthy"),
        # NVLink.
        _row(74, "NVLink error", "NVLink", "ResetGPU", "Unhealthy"),
        # Catalog: RESET_GPU, but intentional link-downs also raise it; ask a person first.
        _row(155, "NVLink software-defined error", "NVLink", "Investigate", "Degraded"),
        # Hardware and firmware.
        _row(62, "internal micro-controller halt", "Hardware", "ResetGPU", "Unhealthy"),
        _row(79, "GPU has fallen off the bus", "Hardware", "RebootNode", "Unhealthy"),
        _row(156, "resource retirement event", "Hardware", "ResetGPU", "Unhealthy"),
        _row(157, "resource retirement failure", "Hardware", "Investigate", "Degraded"),
        _row(119, "GSP RPC timeout", "Driver", "ResetGPU", "Unhealthy"),
        _row(120, "GSP error", "Driver", "ResetGPU", "Unhealthy"),
        # R565+: the driver changed its recovery action; NVML's field says to what.
        _row(154, "GPU recovery action changed", "Informational", "None", "Healthy"),
    ]
)


def classify(code: int) -> XidInfo:
    """The catalogue row for `code`; an unknown XID is Unhealthy, as the device plugin has it."""
    known = CATALOGUE.get(code)
    if known is not None:
        return known
    return XidInfo(code, "not in the catalogue", "Unknown", "Investigate", "Unhealthy")


APPLICATION_XIDS: Final = frozenset(c for c, i in CATALOGUE.items() if i.xid_class == "Application")
"""XIDs caused by the application, not the GPU: k8s-device-plugin's health check skips them."""
