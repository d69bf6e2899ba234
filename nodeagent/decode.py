"""Turn NVML's numeric codes into the names the API stores.

Pure: no I/O. The numbers are NVML's ABI, copied here so this module needs no client library
(values as in `nvml.h` and nvidia-ml-py 13.x; NVML API reference,
https://docs.nvidia.com/deploy/nvml-api/).
"""

from __future__ import annotations

from typing import Final

from gpu_inventory.api import models

# nvmlClocksEventReasons (formerly "throttle reasons"): a bitmask, several bits at once.
# https://docs.nvidia.com/deploy/nvml-api/group__nvmlClocksEventReasons.html
CLOCKS_EVENT_REASONS: Final[tuple[tuple[int, str], ...]] = (
    (0x001, "GpuIdle"),
    (0x002, "ApplicationsClocksSetting"),
    (0x004, "SwPowerCap"),
    (0x008, "HwSlowdown"),
    (0x010, "SyncBoost"),
    (0x020, "SwThermalSlowdown"),
    (0x040, "HwThermalSlowdown"),
    (0x080, "HwPowerBrakeSlowdown"),
    (0x100, "DisplayClockSetting"),
)
_KNOWN_BITS: Final = sum(bit for bit, _ in CLOCKS_EVENT_REASONS)

# nvmlDeviceGpuRecoveryAction_t, read through NVML_FI_DEV_GET_GPU_RECOVERY_ACTION (R565+).
RECOVERY_ACTIONS: Final[dict[int, models.RecoveryAction]] = {
    0: "None",
    1: "GpuReset",
    2: "NodeReboot",
    3: "DrainP2P",
    4: "DrainAndReset",
    5: "RecoverImexDomain",
    6: "BusReset",
    7: "SystemReboot",
}

# nvmlDeviceArchitecture_t. Ampere and later remap rows; earlier GPUs retire pages
# (https://docs.nvidia.com/deploy/dynamic-page-retirement/ and
# https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/).
ARCH_AMPERE: Final = 7
ARCH_UNKNOWN: Final = 0xFFFFFFFF


def clocks_event_reasons(mask: int) -> list[str]:
    """The names of the bits set in `mask`; an unknown bit is named by its hex value."""
    names = [name for bit, name in CLOCKS_EVENT_REASONS if mask & bit]
    unknown = mask & ~_KNOWN_BITS
    bit = 1
    while unknown:
        if unknown & bit:
            names.append(f"Unknown0x{bit:X}")
            unknown &= ~bit
        bit <<= 1
    return names


def recovery_action(code: int) -> models.RecoveryAction | None:
    """The API's name for NVML's recovery-action code; None for a code this agent does not know."""
    return RECOVERY_ACTIONS.get(code)


def cuda_version(code: int) -> str:
    """NVML's CUDA driver version integer (12040) as `major.minor` ("12.4")."""
    return f"{code // 1000}.{code % 1000 // 10}"


def remaps_rows(architecture: int | None) -> bool | None:
    """True for Ampere and later (row remapping), False before (page retirement), None unknown."""
    if architecture is None or architecture == ARCH_UNKNOWN or architecture <= 0:
        return None
    return architecture >= ARCH_AMPERE


def mig_profile(device_name: str) -> str:
    """A MIG device's profile from its NVML name: "NVIDIA H100 ... MIG 1g.10gb" -> "1g.10gb"."""
    _, marker, profile = device_name.rpartition("MIG ")
    return profile.strip() if marker else ""
