"""What an XID means for a GPU: NVIDIA's catalog row, and the one place its resolution becomes
a health verdict.

Pure: no I/O. The catalog itself is data in `xidcatalog.py` (its version and source are named
there). The catalog's resolution buckets are NVIDIA's "Resolution Bucket (Immediate Action)":
the action "immediately needed in order to recover the system and get it back into service"
(the catalog's column glossary). So a code whose bucket is IGNORE or RESTART_APP leaves the GPU
Healthy, a reset or a reboot makes it Unhealthy, and a bucket that asks a person to look first
makes it Degraded. The guidance texts below quote the catalog's "Guidance Class / Resolution
Action" table.

Where NVIDIA's k8s-device-plugin disagrees (`internal/rm/health.go`, v0.20.0, skips 13, 31, 43,
45, 68 and 109 and marks a device unhealthy on any other XID), the catalog wins: 109 is
RESET_GPU there, and unused or informational codes are not faults.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

from gpu_inventory.api import models
from gpu_inventory.nodeagent.xidcatalog import CATALOG_VERSION, ROWS

Verdict = Literal["Healthy", "Degraded", "Unhealthy"]


@dataclasses.dataclass(frozen=True, slots=True)
class Resolution:
    """What a catalog resolution bucket means here: the GPU's verdict, the API's action, and
    what to do, in the catalog's words."""

    verdict: Verdict
    action: models.XidAction
    guidance: str


# The one place a resolution becomes a verdict (NVIDIA Xid catalog 2025-10-29, "Guidance Class").
RESOLUTIONS: Final[dict[str, Resolution]] = {
    # "No Action required".
    "IGNORE": Resolution("Healthy", "None", "no action required"),
    # "The application should be restarted; RESET_GPU or RESTART_BM is not deemed necessary."
    "RESTART_APP": Resolution(
        "Healthy", "RestartApplication", "restart the application; no GPU reset needed"
    ),
    # "Solo: RESTART_FM; Not Solo: IGNORE (follow guidance in other Xid)". Logged whenever an
    # application is torn down (Ctrl-C, SIGKILL, a reset): the other XID carries the verdict.
    "WORKFLOW_XID_45": Resolution(
        "Healthy", "None", "follow the other XID; alone, restart the fabric manager"
    ),
    # "Follow XID 154 reported guidance": the driver's recovery action, which NVML reports
    # (NVML_FI_DEV_GET_GPU_RECOVERY_ACTION) and health.py judges on its own.
    "XID_154": Resolution("Healthy", "None", "follow the driver's recovery action"),
    "RESET_GPU": Resolution("Unhealthy", "ResetGPU", "drain the GPU and reset it"),
    # XID 48: "A GPU reset or node reboot is needed to clear this error" (Trigger Conditions).
    "WORKFLOW_XID_48": Resolution(
        "Unhealthy", "ResetGPU", "a GPU reset or node reboot is needed to clear this error"
    ),
    # XID 74: "A GPU reset or node reboot is needed to clear this error" (Trigger Conditions).
    "WORKFLOW_NVLINK_ERR": Resolution(
        "Unhealthy", "ResetGPU", "a GPU reset or node reboot is needed to clear this error"
    ),
    # "Restart bare metal, system should be restarted".
    "RESTART_BM": Resolution("Unhealthy", "RebootNode", "drain and reboot the node"),
    # "VM owning the affected GPU must be restarted": for a VM node, that is the node.
    "RESTART_VM": Resolution("Unhealthy", "RebootNode", "restart the VM that owns the GPU"),
    # XIDs 144-150: the verdict depends on registers in the kernel log line, which NVML events
    # do not carry; the driver's recovery action (XID 154) says whether a reset is due.
    "WORKFLOW_NVLINK5_ERR": Resolution(
        "Degraded",
        "Investigate",
        "decode the kernel log line (catalog: XID 144-150 Decode) or follow the recovery action",
    ),
    # "Check to ensure that device seating and all applicable connections to it are secure."
    "CHECK_MECHANICALS": Resolution(
        "Degraded", "Investigate", "check the GPU's seating and power connections"
    ),
    # "If UVM/vGPU is being utilized, RESET_GPU; otherwise IGNORE."
    "CHECK_UVM": Resolution(
        "Degraded", "Investigate", "reset the GPU if UVM or vGPU is in use, otherwise ignore"
    ),
    # "Update Firmware and Software to latest versions" (XID 78, vGPU start error).
    "UPDATE_SWFW": Resolution("Degraded", "Investigate", "update the driver and firmware"),
    # "Please contact your support organization for further investigation." Every such code but
    # 142 is "Unused" on A100-GB200: seeing one means something a person should look at.
    "CONTACT_SUPPORT": Resolution("Degraded", "Investigate", "contact support"),
    # Codes 162-172 have no resolution in this version of the catalog yet.
    "": Resolution("Degraded", "Investigate", "the catalog gives no resolution yet; investigate"),
}

UNKNOWN: Final = Resolution("Degraded", "Investigate", "investigate")
"""A code the catalog does not list (newer than this agent): Degraded, reason UnknownXID."""

# DCGM's health watches treat XID 94 (a contained uncorrectable memory error) as a warning
# (NVIDIA/DCGM v4.6.0 modules/health/DcgmHealthWatch.cpp, BuildXidMappings, m_devastatingXids:
# 94 -> DCGM_HEALTH_RESULT_WARN, "GPU reset can be deferred until a convenient time"), and the
# catalog's own trigger text agrees: "It is recommended to reset the GPU when convenient." The
# catalog's bucket, RESTART_APP, alone would call it Healthy.
DCGM_VERDICTS: Final[dict[int, Verdict]] = {94: "Degraded"}


@dataclasses.dataclass(frozen=True, slots=True)
class XidInfo:
    """Everything the agent says about one XID code."""

    mnemonic: str
    description: str
    resolution: str
    """The catalog's bucket, verbatim ("" when it has none or does not list the code)."""
    known: bool
    verdict: Verdict
    action: models.XidAction
    xid_class: models.XidClass
    guidance: str


def classify(code: int) -> XidInfo:
    """The catalog's row for `code` and what it means for the GPU."""
    row = _BY_CODE.get(code)
    if row is None:
        return XidInfo(
            "", "", "", False, UNKNOWN.verdict, UNKNOWN.action, "Unknown", UNKNOWN.guidance
        )
    mnemonic, description, bucket = row
    meaning = RESOLUTIONS[bucket]
    verdict = DCGM_VERDICTS.get(code, meaning.verdict)
    return XidInfo(
        mnemonic,
        description,
        bucket,
        True,
        verdict,
        meaning.action,
        xid_class(mnemonic, bucket),
        meaning.guidance,
    )


def xid_class(mnemonic: str, bucket: str) -> models.XidClass:
    """A coarse grouping for people, from the catalog's own naming (its mnemonics name the unit:
    NVLINK_*, GSP_*, ..._ECC_...). Display only: verdicts come from the resolution."""
    words = mnemonic.split("_")
    if "NVLINK" in words or "C2C" in words or words[0] == "ALI":
        return "NVLink"
    if _MEMORY_WORDS.intersection(words):
        return "Memory"
    if words[0] in ("GSP", "PMU", "SEC2") or "FECS" in words:
        return "Driver"
    if bucket in ("IGNORE", "XID_154"):
        return "Informational"
    if bucket in ("RESTART_APP", "WORKFLOW_XID_45"):
        return "Application"
    return "Hardware"


# Not RETIREMENT: channels (160, 161) and resources (156, 157) retire too; DRAM retirement
# (63, 64) is memory by its DRAM.
_MEMORY_WORDS: Final = frozenset(
    ("ECC", "DBE", "SBE", "DRAM", "SRAM", "MEMORY", "CONTAINED", "UNCONTAINED")
)


def cleared_by_gpu_reset(code: int) -> bool:
    """Whether a GPU reset (a driver reload resets every GPU) resolves XID `code`: the
    catalog's reset-class resolutions, and XID 94, whose reset DCGM says can be deferred.
    A reboot-class code (RESTART_BM) is resolved only by a reboot (a new boot ID)."""
    return classify(code).action == "ResetGPU" or code in DCGM_VERDICTS


def _rows() -> dict[int, tuple[str, str, str]]:
    by_code: dict[int, tuple[str, str, str]] = {}
    for code, mnemonic, description, bucket in ROWS:
        if code in by_code or bucket not in RESOLUTIONS:
            raise ValueError(f"{CATALOG_VERSION}: bad row for XID {code}")
        by_code[code] = (mnemonic, description, bucket)
    return by_code


_BY_CODE: Final = _rows()
