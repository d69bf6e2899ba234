"""NVML's errors and handles as the agent treats them; shared by `nvml.py` (readings) and
`nvmlevents.py` (XID events).

How each NVML error is treated (NVML API reference, nvmlReturn_t:
https://docs.nvidia.com/deploy/nvml-api/):

- NotSupported, FunctionNotFound (the driver lacks the symbol), NotFound: the device does not
  have this: the field is null and named in `GPU.unsupported`.
- GpuIsLost, ResetRequired: this GPU is gone or needs a reset; the others are still read.
- Uninitialized, LibraryNotFound, DriverNotLoaded, LibRmVersionMismatch: no usable NVML on the
  node (`NVMLUnavailableError`); the agent reports it and retries initialisation, except after
  LibRmVersionMismatch from nvmlInit (`NVMLStaleLibraryError`: only a new container helps).
- Anything else (NoPermission, CorruptedInforom, Unknown...): the field is null and named with
  the error, e.g. `retiredPages (NoPermission)`.
- Timeout comes only from `nvmlEventSetWait`, and just means no event arrived.
"""

from __future__ import annotations

import ctypes
from collections.abc import Hashable
from typing import Any, Final, Literal

import pynvml

from gpu_inventory.nodeagent.backend import LostReason

Kind = Literal["absent", "lost", "node", "other"]

_ABSENT: Final = (
    pynvml.NVML_ERROR_NOT_SUPPORTED,
    pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
    pynvml.NVML_ERROR_NOT_FOUND,
)
_LOST: Final = (pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_RESET_REQUIRED)
_NODE: Final = (
    pynvml.NVML_ERROR_UNINITIALIZED,
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
    pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
)

_HINTS: Final[dict[int, str]] = {
    # pynvml raises this when dlopen("libnvidia-ml.so.1") fails (_LoadNvmlLibrary).
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: (
        "no NVIDIA driver on this machine, or the container was not started with the NVIDIA"
        " runtime (runtimeClassName: nvidia, NVIDIA_VISIBLE_DEVICES=all)"
    ),
    # The NVIDIA runtime bind-mounts the driver's user-space library when the container is
    # created, and pynvml never unloads a library it loaded (nvmlShutdown: "Leave the library
    # loaded"): after an in-place driver upgrade only a new container gets the new library.
    pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH: (
        "this container's NVML library does not match the loaded NVIDIA driver (upgraded since"
        " the container started); a new container gets the driver's current library"
    ),
}


def error_kind(error: pynvml.NVMLError) -> Kind:
    """How the agent treats an NVML error (see the module docstring)."""
    code = getattr(error, "value", None)
    if code in _ABSENT:
        return "absent"
    if code in _LOST:
        return "lost"
    if code in _NODE:
        return "node"
    return "other"


def lost_reason(error: pynvml.NVMLError) -> LostReason:
    """NVML's own name for a lost GPU's error: GpuIsLost or ResetRequired."""
    return "GpuIsLost" if error.value == pynvml.NVML_ERROR_GPU_IS_LOST else "ResetRequired"


def error_name(error: pynvml.NVMLError) -> str:
    """`NVMLError_NoPermission` -> "NoPermission"; a code without a class -> "NVML error 42"."""
    name = type(error).__name__
    if name.startswith("NVMLError_"):
        return name.removeprefix("NVMLError_")
    return f"NVML error {getattr(error, 'value', '?')}"


def describe(error: pynvml.NVMLError) -> str:
    """NVML's own words for an error, e.g. "NVML: Driver Not Loaded (DriverNotLoaded)", and
    what it usually means where that is not obvious."""
    try:
        text = str(error)
    except Exception:  # str() may call into a library that is not there
        text = ""
    said = f"NVML: {text} ({error_name(error)})" if text else f"NVML: {error_name(error)}"
    hint = _HINTS.get(getattr(error, "value", -1))
    return f"{said}: {hint}" if hint else said


def text(value: Any) -> str:
    """A string NVML returned (bytes from older nvidia-ml-py versions)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def handle_key(handle: Any) -> Hashable:
    """A device handle's identity: the pointer NVML gave (event data carries a new pointer
    object to the same device), or the handle itself when it is not a pointer."""
    try:
        address = ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        address = None
    return address if address is not None else handle
