"""The backend interface: what the agent needs from NVML, and the shapes it comes back in.

Pure: no I/O. One implementation, `nvml.NVMLBackend` (nvidia-ml-py); tests, the demo and the
e2e suite run that same code over a simulated `pynvml` (`gpu_inventory.testing.simnvml`). The
agent talks to it through `GPUBackend` only, the way NVIDIA's device plugin talks to devices
through a narrow interface rather than NVML itself.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal, Protocol

from gpu_inventory.api import models

LostReason = Literal["GpuIsLost", "ResetRequired", "Vanished", "Unreadable", "NotRead"]
"""Why a GPU gave no readings: NVML's own error for it (GpuIsLost, ResetRequired), gone from
NVML's device list (Vanished), any other failure to read it at all (Unreadable), or NVML as a
whole unavailable or released (NotRead: the GPU is listed from memory)."""

LOST_TEXT: Final[dict[LostReason, str]] = {
    # NVML_ERROR_GPU_IS_LOST: "The GPU has fallen off the bus or has otherwise become
    # inaccessible" (nvmlReturn_t); XID 79 is the usual cause, and the catalog says reboot.
    "GpuIsLost": "GPU is lost (NVML GpuIsLost: off the bus or inaccessible): reboot the node",
    # NVML_ERROR_RESET_REQUIRED: "The GPU requires a reset before it can be used again".
    "ResetRequired": "GPU needs a reset before it can be used again (NVML ResetRequired)",
    "Vanished": "GPU is no longer listed by NVML although this agent saw it earlier",
    "Unreadable": "NVML cannot read this GPU (see the agent log)",
    "NotRead": "not read: NVML is unavailable or released (status.agent.message says why)",
}


class NVMLUnavailableError(Exception):
    """No usable NVML on this node (library missing, driver not loaded, version mismatch...).

    The message says why, in words fit for `AgentInfo.message`.
    """


class NVMLStaleLibraryError(NVMLUnavailableError):
    """nvmlInit answered LibRmVersionMismatch: the NVML library this process loaded does not
    match the driver now loaded. Retrying in this process cannot help (the library is loaded
    once, from the container's mounts); a new container can."""


@dataclasses.dataclass(frozen=True, slots=True)
class XidWatch:
    """Why a GPU's XID events are not watched: NVML's error name, and whether that is a fault
    (an error: XIDs it reports go unseen) or the GPU has no XID events at all (NotSupported)."""

    error: str
    fault: bool


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceReading:
    """One physical GPU as read now. `gpu.xids` and `gpu.health` are filled in by the agent."""

    gpu: models.GPU
    lost: LostReason | None = None
    refused: tuple[str, ...] = ()
    """Fields NVML refused to give (NoPermission), by their names in `gpu.unsupported`."""
    xids_unwatched: XidWatch | None = None
    """Set when this GPU's XID events are not watched (None: they are)."""
    unknown_recovery_action: int | None = None
    """A recovery-action code this agent does not know (newer than its NVML bindings)."""


@dataclasses.dataclass(frozen=True, slots=True)
class NodeReading:
    """Everything one read of the node returns."""

    driver: models.DriverInfo
    devices: tuple[DeviceReading, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class XidSeen:
    """An XID event as NVML delivered it, attributed to a GPU by UUID."""

    uuid: str
    xid: int


class GPUBackend(Protocol):
    """A source of GPU readings and XID events."""

    def start(self) -> None:
        """Initialise; raise `NVMLUnavailableError` when NVML is unusable (the agent retries)."""

    def stop(self) -> None:
        """Release everything `start` took; safe to call twice or without a successful start."""

    def read(self) -> NodeReading:
        """Read every GPU. One failing GPU or field never hides the others; raise
        `NVMLUnavailableError` only when NVML as a whole went away."""
        ...

    def wait_xids(self, timeout: float) -> list[XidSeen]:
        """Block up to `timeout` seconds for XID events; return those seen ([] on timeout).

        Called from one thread at a time; `stop` makes a pending wait return promptly.
        """
        ...
