"""A simulated NVML behind the real `pynvml` module, so the agent's NVML backend runs unchanged.

`SimulatedNVML.install()` replaces the library's functions one by one, and everything else is
the library's own: failures are `pynvml.NVMLError(code)` (the real `NVMLError_NotSupported`...),
structures are its ctypes structures, device and event-set handles are real ctypes pointers
(the event data of an XID carries a new pointer object to the same device, as NVML's does).
Every call is checked against the real function's signature (`inspect.signature(...).bind`).

The simulation also holds NVML's rules that a careless caller would break in production:
- `nvmlEventSetWait` blocks up to its timeout and returns early for an event; freeing an event
  set while a wait is running on it, or waiting on a freed set or on one NVML left undefined
  (after NVML_ERROR_UNKNOWN from `nvmlDeviceRegisterEvents`) raises `SimulationError`.
- Events are delivered only to event sets that registered their GPU before they happened
  ("All events that occurred before this call are not recorded").
- In MIG mode without the MIG monitor capability, instances cannot be listed and the parent
  GPU's memory info is refused (NoPermission), and only events that affect the whole GPU are
  delivered (nvmlEventSetWait_v2).
- Calls before `nvmlInit` or after `nvmlShutdown` raise Uninitialized.
- The library is loaded once per process: after `upgrade_driver`, nvmlInit answers
  LibRmVersionMismatch until `new_process` (nvidia-ml-py never unloads libnvidia-ml.so, and the
  NVIDIA runtime mounted it when the container was created).

The devices are pydantic models (`SimGPU`), which is also what a scenario file holds
(`gpu_inventory.testing.scenario`); a timeline of scripted events plays on an injected clock.
"""

from __future__ import annotations

import ctypes
import inspect
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, Literal

import pynvml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

ERROR_CODES: Final[dict[str, int]] = {
    cls.__name__.removeprefix("NVMLError_"): code
    for code, cls in pynvml.NVMLError._valClassMapping.items()
}
"""NVML's error names as nvidia-ml-py spells its classes (NotSupported, GpuIsLost, ...)."""

_UUID_NAMESPACE: Final = uuidlib.UUID("6f1c8a52-6a8e-4b8e-9a57-0c1d5e0f6a11")
GPU_INSTANCE_ANY: Final = 0xFFFFFFFF
"""NVML_GPU_INSTANCE_ID_ANY / NVML_COMPUTE_INSTANCE_ID_ANY: an event of the whole GPU."""


class SimulationError(AssertionError):
    """The code under test used NVML in a way the real library does not survive."""


def error_code(name: str) -> int:
    if name not in ERROR_CODES:
        raise ValueError(f"{name!r} is not an NVML error (NVMLError_<name> in nvidia-ml-py)")
    return ERROR_CODES[name]


def _constant(prefix: str, name: str) -> int:
    value = getattr(pynvml, f"{prefix}{name}", None)
    if not isinstance(value, int):
        raise ValueError(f"{name!r} is not one of nvidia-ml-py's {prefix}* constants")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SimMemory(_Strict):
    total: int = 85_520_809_984
    used: int = 553_648_128
    """Used by applications, as nvmlMemory_v2 counts it."""
    reserved: int = 0
    """Reserved by the driver: v2 reports it apart, v1's `used` includes it (nvml.h)."""


class SimUtilization(_Strict):
    gpu: int = 3
    memory: int = 1


class SimClocks(_Strict):
    sm: int = 345
    mem: int = 2619
    graphics: int = 345


class SimEcc(_Strict):
    enabled: bool = True
    volatile_corrected: int = 0
    volatile_uncorrected: int = 0
    aggregate_corrected: int = 0
    aggregate_uncorrected: int = 0


class SimRemappedRows(_Strict):
    correctable: int = 0
    uncorrectable: int = 0
    pending: bool = False
    failure: bool = False


class SimRetiredPages(_Strict):
    single_bit_ecc: int = 0
    double_bit_ecc: int = 0
    pending: bool = False


class SimMigDevice(_Strict):
    gpu_instance_id: int
    compute_instance_id: int = 0
    profile: str = "1g.10gb"
    memory_total: int = 10_468_982_784
    uuid: str = ""
    """Filled from the node's seed when empty."""


class SimMig(_Strict):
    enabled: bool = False
    pending_enabled: bool = False
    max_devices: int = 7
    devices: dict[int, SimMigDevice] = {}
    """MIG devices by slot (nvmlDeviceGetMigDeviceHandleByIndex); other slots are empty."""


class SimGPU(_Strict):
    """One simulated GPU, in NVML's terms. Defaults describe an idle, healthy H100 (Hopper)."""

    uuid: str = ""
    """Filled from the node's seed when empty."""
    name: str = "NVIDIA H100 80GB HBM3"
    bus_id: str = ""
    architecture: str = "HOPPER"
    """NVML_DEVICE_ARCH_<name>: HOPPER, AMPERE, TURING, ..."""
    memory: SimMemory = SimMemory()
    utilization: SimUtilization = SimUtilization()
    temperature: int = 34
    slowdown_temperature: int = 89
    shutdown_temperature: int = 92
    power_mw: int = 72_400
    power_limit_mw: int = 700_000
    clocks: SimClocks = SimClocks()
    clocks_event_reasons: list[str] = ["GpuIdle"]
    """nvmlClocksEventReason<name> bits set now."""
    ecc: SimEcc = SimEcc()
    remapped_rows: SimRemappedRows = SimRemappedRows()
    retired_pages: SimRetiredPages = SimRetiredPages()
    unrepairable_memory: bool = False
    """nvmlDeviceGetUnrepairableMemoryFlag_v1 (list it in `SimDriver.missing` for older drivers)."""
    recovery_action: str | int | None = "NONE"
    """NVML_GPU_RECOVERY_ACTION_<name> (or a raw code); null: a driver older than the field
    (before R565)."""
    mig: SimMig = SimMig()
    nvlinks: list[bool] = Field(default_factory=lambda: [True] * 18)
    """The board's NVLinks, up or down; links past the end do not exist."""
    persistence: bool = True
    events: list[str] = ["XidCriticalError", "SingleBitEccError", "DoubleBitEccError"]
    """nvmlEventType<name> this GPU supports."""
    errors: dict[str, str] = {}
    """NVML function -> the NVML error it answers for this GPU (NotSupported, NoPermission...)."""
    lost: Literal["GpuIsLost", "ResetRequired"] | None = None
    """From now on NVML answers every call about this GPU with this error."""

    @field_validator("architecture", "clocks_event_reasons", "recovery_action", "events")
    @classmethod
    def _nvml_names(cls, value: Any, info: ValidationInfo) -> Any:
        """Each name must be one of nvidia-ml-py's constants (NVML_DEVICE_ARCH_HOPPER...)."""
        for name in value if isinstance(value, list) else [value]:
            if isinstance(name, str):
                _constant(_PREFIXES[str(info.field_name)], name)
        return value

    @field_validator("errors")
    @classmethod
    def _errors(cls, value: dict[str, str]) -> dict[str, str]:
        for function, name in value.items():
            if function not in SIMULATED:
                raise ValueError(f"{function!r} is not an NVML function this simulation answers")
            error_code(name)
        return value


_PREFIXES: Final = {
    "architecture": "NVML_DEVICE_ARCH_",
    "clocks_event_reasons": "nvmlClocksEventReason",
    "recovery_action": "NVML_GPU_RECOVERY_ACTION_",
    "events": "nvmlEventType",
}


class SimDriver(_Strict):
    version: str = "570.124.06"
    cuda: int = 12080
    """nvmlSystemGetCudaDriverVersion: major * 1000 + minor * 10."""
    nvml: str = "12.570.124.06"
    missing: list[str] = []
    """NVML functions this driver lacks: they raise FunctionNotFound (nvidia-ml-py's
    `_nvmlGetFunctionPointer`), e.g. nvmlDeviceGetCurrentClocksEventReasons before R535."""


class _EventSet:
    def __init__(self) -> None:
        self.struct = pynvml.struct_c_nvmlEventSet_t()
        self.handle = ctypes.cast(ctypes.pointer(self.struct), pynvml.c_nvmlEventSet_t)
        self.registered: dict[str, int] = {}
        """GPU uuid -> registered event mask."""
        self.queue: list[tuple[str, int, int]] = []
        """(uuid, xid, gpu instance id) delivered and not yet waited for."""
        self.waiters = 0
        self.freed = False
        self.undefined = False


class SimulatedNVML:
    """The node's NVML: its GPUs, driver and state. Thread-safe, like the real library."""

    def __init__(
        self,
        gpus: Sequence[SimGPU],
        *,
        driver: SimDriver | None = None,
        init_error: str | None = None,
        mig_monitor: bool = True,
    ) -> None:
        self.gpus: list[SimGPU] = list(gpus)
        """Enumerated GPUs, in NVML's order; change them freely between calls."""
        self.driver = driver or SimDriver()
        self.init_error = init_error
        """An NVML error name: nvmlInit fails with it, and an initialised NVML goes away."""
        self.mig_monitor = mig_monitor
        """The MIG monitor capability (CAP_SYS_ADMIN and NVIDIA_MIG_MONITOR_DEVICES=all)."""
        self.failures: dict[tuple[str, int | None], int] = {}
        self.calls: list[str] = []
        self.initialised = 0
        self.library: str | None = None
        """The driver version of the NVML library this process loaded (at its first nvmlInit);
        None until then, and again after `new_process`."""
        self.event_sets_freed = 0
        self.seconds_in_calls = 0.0
        """Time spent inside simulated calls (benchmarks subtract it from the agent's turns)."""
        self.on_call: Callable[[], None] = lambda: None
        """Run at the start of every call, under the lock (the scenario timeline)."""
        self._cond = threading.Condition(threading.RLock())
        self._event_sets: dict[int, _EventSet] = {}
        self._positions: list[Any] = []
        self._migs: dict[tuple[int, int], Any] = {}
        self._addresses: dict[int, tuple[int, int | None]] = {}
        """Handle address -> (GPU position, MIG slot or None)."""

    # --- for tests and scenarios -----------------------------------------------------------------

    def fail(self, function: str, error: int | str, gpu: int | None = None) -> None:
        """From now on `pynvml.<function>` raises NVMLError(error) (for GPU `gpu`, or any)."""
        code = error_code(error) if isinstance(error, str) else error
        with self._cond:
            self.failures[(function, gpu)] = code

    def heal(self, function: str, gpu: int | None = None) -> None:
        with self._cond:
            self.failures.pop((function, gpu), None)

    def xid(self, gpu: int, code: int, *, gpu_instance: int = GPU_INSTANCE_ANY) -> None:
        """The driver reports XID `code` on GPU `gpu` (of one MIG GPU instance, or all)."""
        with self._cond:
            uuid = self.gpus[gpu].uuid
            whole = gpu_instance == GPU_INSTANCE_ANY
            for event_set in self._event_sets.values():
                mask = event_set.registered.get(uuid, 0)
                if event_set.freed or not mask & pynvml.nvmlEventTypeXidCriticalError:
                    continue
                if self.gpus[gpu].mig.enabled and not whole and not self.mig_monitor:
                    continue  # nvmlEventSetWait_v2: without privileges, whole-GPU events only
                event_set.queue.append((uuid, code, gpu_instance))
            self._cond.notify_all()

    def upgrade_driver(self, version: str) -> None:
        """The node's driver is replaced by `version` (its kernel module and the library on
        the host); this process keeps the library it loaded until `new_process`."""
        with self._cond:
            if self.initialised:
                raise SimulationError(
                    "the driver was replaced while this process held NVML open: a real upgrade "
                    "cannot unload a module with open /dev/nvidia* files"
                )
            self.driver = self.driver.model_copy(
                update={"version": version, "nvml": f"{self.driver.nvml.split('.')[0]}.{version}"}
            )
            self._cond.notify_all()

    def new_process(self) -> None:
        """A new container: it loads the library the host has now (NVIDIA runtime mount)."""
        with self._cond:
            self.library = None

    def changed(self) -> None:
        """Wake waiters after the caller changed GPUs or state outside a call."""
        with self._cond:
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """How many `nvmlEventSetWait` calls are blocked right now."""
        with self._cond:
            return sum(s.waiters for s in self._event_sets.values())

    def install(self, module: Any = pynvml) -> Callable[[], None]:
        """Replace the functions of `module` (the real pynvml); returns the undo."""
        saved = {name: getattr(module, name) for name in SIMULATED}
        for name, function in self.functions().items():
            setattr(module, name, self._checked(saved[name], function))

        def undo() -> None:
            for name, original in saved.items():
                setattr(module, name, original)

        return undo

    @contextmanager
    def installed(self, module: Any = pynvml) -> Iterator[SimulatedNVML]:
        undo = self.install(module)
        try:
            yield self
        finally:
            undo()

    # --- the state machine -----------------------------------------------------------------------

    def _enter(self, function: str, gpu: int | None = None) -> None:
        """Every call: play the timeline, log the call, and raise what NVML would raise."""
        self.on_call()
        self.calls.append(function)
        self._check(function, gpu)

    def _check(self, function: str, gpu: int | None = None) -> None:
        if function in self.driver.missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        if function != "nvmlInit":
            if self.init_error is not None and function not in _ALWAYS_RELEASABLE:
                raise pynvml.NVMLError(error_code(self.init_error))
            if not self.initialised:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        for key in ((function, gpu), (function, None)):
            if key in self.failures:
                raise pynvml.NVMLError(self.failures[key])
        if gpu is not None:
            sim = self.gpus[gpu]
            if sim.lost is not None:
                raise pynvml.NVMLError(error_code(sim.lost))
            if function in sim.errors:
                raise pynvml.NVMLError(error_code(sim.errors[function]))

    def _device_handle(self, position: int) -> Any:
        """The handle of the GPU listed at `position`: the same address for the same position
        in every NVML session, as freed and reallocated device structs can be."""
        while len(self._positions) <= position:
            struct = pynvml.struct_c_nvmlDevice_t()
            self._addresses[ctypes.addressof(struct)] = (len(self._positions), None)
            self._positions.append(struct)
        return ctypes.cast(ctypes.pointer(self._positions[position]), pynvml.c_nvmlDevice_t)

    def _mig_handle(self, position: int, slot: int) -> Any:
        struct = self._migs.get((position, slot))
        if struct is None:
            struct = self._migs[(position, slot)] = pynvml.struct_c_nvmlDevice_t()
            self._addresses[ctypes.addressof(struct)] = (position, slot)
        return ctypes.cast(ctypes.pointer(struct), pynvml.c_nvmlDevice_t)

    def _resolve(self, handle: Any) -> tuple[int, int | None]:
        """(GPU position, MIG slot or None) of a device handle, as NVML would dereference it."""
        if not isinstance(handle, pynvml.c_nvmlDevice_t):
            raise ctypes.ArgumentError(f"a device handle must be a c_nvmlDevice_t, got {handle!r}")
        found = self._addresses.get(ctypes.cast(handle, ctypes.c_void_p).value or 0)
        if found is None or found[0] >= len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return found

    def _event_set(self, handle: Any) -> _EventSet:
        if not isinstance(handle, pynvml.c_nvmlEventSet_t):
            raise ctypes.ArgumentError(f"an event set must be a c_nvmlEventSet_t, got {handle!r}")
        found = self._event_sets.get(ctypes.cast(handle, ctypes.c_void_p).value or 0)
        if found is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if found.freed:
            raise SimulationError("an event set was used after nvmlEventSetFree")
        return found

    def _wait(self, event_set_handle: Any, timeoutms: int) -> Any:
        with self._cond:
            self._enter("nvmlEventSetWait_v2")
            event_set = self._event_set(event_set_handle)
            if event_set.undefined:
                raise SimulationError(
                    "waited on an event set that nvmlDeviceRegisterEvents left undefined "
                    "(NVML_ERROR_UNKNOWN: it must be freed)"
                )
            deadline = time.monotonic() + max(int(timeoutms), 0) / 1000
            event_set.waiters += 1
            try:
                while (event := self._next_event(event_set)) is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
                    self._cond.wait(min(left, 0.02))
                    self.on_call()
                    self._check("nvmlEventSetWait_v2")
            finally:
                event_set.waiters -= 1
            position, code, instance = event
            data = pynvml.c_nvmlEventData_t()
            data.device = self._device_handle(position)  # a new pointer object, same address
            data.eventType = pynvml.nvmlEventTypeXidCriticalError
            data.eventData = code
            data.gpuInstanceId = instance
            data.computeInstanceId = instance
            return data

    def _checked(
        self, real: Callable[..., Any], simulated: Callable[..., Any]
    ) -> Callable[..., Any]:
        """`simulated`, refusing any argument list the real function would refuse, and timed
        (`seconds_in_calls`) from the caller's side."""
        signature = inspect.signature(real)
        names = tuple(signature.parameters)
        required = sum(p.default is inspect.Parameter.empty for p in signature.parameters.values())

        def call(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                # The common case checked fast; anything else as Python itself would bind it.
                if kwargs or not required <= len(args) <= len(names):
                    signature.bind(*args, **kwargs)  # TypeError, as calling `real` would raise
                return simulated(*args, **kwargs)
            finally:
                self.seconds_in_calls += time.perf_counter() - began

        call.__signature__ = signature  # type: ignore[attr-defined]
        call.__name__ = getattr(real, "__name__", "nvml")
        return call

    def _position_of(self, uuid: str) -> int | None:
        return next((i for i, gpu in enumerate(self.gpus) if gpu.uuid == uuid), None)

    def _next_event(self, event_set: _EventSet) -> tuple[int, int, int] | None:
        """(GPU position, XID, GPU instance) of the oldest queued event whose GPU is listed."""
        while event_set.queue:
            uuid, code, instance = event_set.queue.pop(0)
            position = self._position_of(uuid)
            if position is not None:
                return position, code, instance
        return None

    def functions(self) -> dict[str, Callable[..., Any]]:
        """The simulated functions by pynvml name (unchecked; `install` checks signatures)."""
        s = self

        def device(name: str, get: Callable[[SimGPU], Any]) -> Callable[..., Any]:
            def call(handle: Any, *_: Any) -> Any:
                with s._cond:
                    position, _slot = s._resolve(handle)
                    s._enter(name, position)
                    return get(s.gpus[position])

            return call

        def system(name: str, get: Callable[[], Any]) -> Callable[[], Any]:
            def call() -> Any:
                with s._cond:
                    s._enter(name)
                    return get()

            return call

        def init() -> None:
            with s._cond:
                s._enter("nvmlInit")
                if s.init_error is not None:
                    raise pynvml.NVMLError(error_code(s.init_error))
                if s.library is not None and s.library != s.driver.version:
                    # The library stays loaded (nvmlShutdown: "Leave the library loaded") and
                    # was mounted at container creation: the new kernel module refuses it.
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH)
                s.library = s.driver.version
                s.initialised += 1

        def shutdown() -> None:
            with s._cond:
                s._enter("nvmlShutdown")
                s.initialised -= 1
                s._cond.notify_all()

        def handle_by_index(index: int) -> Any:
            with s._cond:
                s._enter("nvmlDeviceGetHandleByIndex")
                if not 0 <= index < len(s.gpus):
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
                s._enter("nvmlDeviceGetHandleByIndex", index)
                return s._device_handle(index)

        def uuid(handle: Any) -> str:
            with s._cond:
                position, slot = s._resolve(handle)
                s._enter("nvmlDeviceGetUUID", position)
                gpu = s.gpus[position]
                return gpu.uuid if slot is None else gpu.mig.devices[slot].uuid

        def name(handle: Any) -> str:
            with s._cond:
                position, slot = s._resolve(handle)
                s._enter("nvmlDeviceGetName", position)
                gpu = s.gpus[position]
                return (
                    gpu.name if slot is None else f"{gpu.name} MIG {gpu.mig.devices[slot].profile}"
                )

        def pci(handle: Any) -> Any:
            with s._cond:
                position, _slot = s._resolve(handle)
                s._enter("nvmlDeviceGetPciInfo", position)
                info = pynvml.nvmlPciInfo_t()
                info.busId = s.gpus[position].bus_id.encode()
                return info

        def memory(handle: Any, version: Any = None) -> Any:
            with s._cond:
                position, slot = s._resolve(handle)
                s._enter("nvmlDeviceGetMemoryInfo", position)
                if slot is None and s.gpus[position].mig.enabled and not s.mig_monitor:
                    # Field reports: without the MIG monitor capability the parent GPU's memory
                    # info is refused too (k8s-device-plugin #399, #1683; container-toolkit #842).
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
                if version is not None:
                    s._enter("nvmlDeviceGetMemoryInfo_v2", position)
                    if version != pynvml.nvmlMemory_v2:
                        raise pynvml.NVMLError(pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
                gpu = s.gpus[position]
                total, used, reserved = gpu.memory.total, gpu.memory.used, gpu.memory.reserved
                if slot is not None:
                    total, used, reserved = gpu.mig.devices[slot].memory_total, 0, 0
                if version is None:
                    info: Any = pynvml.c_nvmlMemory_t()
                    info.used = used + reserved  # v1: "used" includes the reservation
                else:
                    info = pynvml.c_nvmlMemory_v2_t()
                    info.version = version
                    info.used, info.reserved = used, reserved
                info.total = total
                info.free = total - used - reserved
                return info

        def utilization(handle: Any) -> Any:
            with s._cond:
                position, _slot = s._resolve(handle)
                s._enter("nvmlDeviceGetUtilizationRates", position)
                rates = pynvml.c_nvmlUtilization_t()
                rates.gpu = s.gpus[position].utilization.gpu
                rates.memory = s.gpus[position].utilization.memory
                return rates

        def reasons(name: str) -> Callable[..., int]:
            return device(
                name,
                lambda g: sum(
                    _constant("nvmlClocksEventReason", r) for r in set(g.clocks_event_reasons)
                ),
            )

        def temperature(name: str) -> Callable[..., int]:
            def call(handle: Any, sensor: int, *_: Any) -> int:
                with s._cond:
                    position, _slot = s._resolve(handle)
                    s._enter(name, position)
                    if sensor != pynvml.NVML_TEMPERATURE_GPU:
                        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
                    return s.gpus[position].temperature

            return call

        def threshold(handle: Any, which: int) -> int:
            with s._cond:
                position, _slot = s._resolve(handle)
                s._enter("nvmlDeviceGetTemperatureThreshold", position)
                gpu = s.gpus[position]
                if which == pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
                    return gpu.slowdown_temperature
                if which == pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN:
                    return gpu.shutdown_temperature
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

        def clock(handle: Any, kind: int) -> int:
            with s._cond:
                position, _slot = s._resolve(handle)
                s._enter("nvmlDeviceGetClockInfo", position)
                clocks = s.gpus[position].clocks
                by_kind = {
                    pynvml.NVML_CLOCK_SM: clocks.sm,
                    pynvml.NVML_CLOCK_MEM: clocks.mem,
                    pynvml.NVML_CLOCK_GRAPHICS: clocks.graphics,
                }
                if kind not in by_kind:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
                return by_kind[kind]

        def ecc_total(handle: Any, error_type: int, counter: int) -> int:
            with s._cond:
                position, _slot = s._resolve(handle)
                s._enter("nvmlDeviceGetTotalEccErrors", position)
                ecc = s.gpus[position].ecc
                kinds = {
                    (
                        pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
                        pynvml.NVML_VOLATILE_ECC,
                    ): "volatile_corrected",
                    (
                        pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                        pynvml.NVML_VOLATILE_ECC,
                    ): "volatile_uncorrected",
                    (
                        pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
                        pynvml.NVML_AGGREGATE_ECC,
                    ): "aggregate_corrected",
                    (
                        pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                        pynvml.NVML_AGGREGATE_ECC,
                    ): "aggregate_uncorrected",
                }
                if (error_type, counter) not in kinds:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
                return int(getattr(ecc, kinds[(error_type, counter)]))

        def retired(handle: Any, cause: int) -> list[int]:
            with s._cond:
                position, _slot = s._resolve(handle)
                s._enter("nvmlDeviceGetRetiredPages", position)
                pages = s.gpus[position].retired_pages
                if cause == pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS:
                    return [0x1000 * (i + 1) for i in range(pages.single_bit_ecc)]
                if cause == pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR:
                    return [0x100000 * (i + 1) for i in range(pages.double_bit_ecc)]
                raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)

        def field_values(handle: Any, field_ids: list[int]) -> Any:
            with s._cond:
                position, _slot = s._resolve(handle)
                s._enter("nvmlDeviceGetFieldValues", position)
                gpu = s.gpus[position]
                values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
                for value, field_id in zip(values, field_ids, strict=True):
                    value.fieldId = field_id
                    value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                    value.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                    injected = s.failures.get((f"field:{field_id}", position)) or s.failures.get(
                        (f"field:{field_id}", None)
                    )
                    action = gpu.recovery_action
                    if injected is not None:  # per field, as nvmlFieldValue_t.nvmlReturn says
                        value.nvmlReturn = injected
                    elif field_id != pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION:
                        continue
                    elif action is None:
                        # A driver older than the field id (before R565) refuses it per field.
                        value.nvmlReturn = pynvml.NVML_ERROR_INVALID_ARGUMENT
                    else:
                        value.nvmlReturn = pynvml.NVML_SUCCESS
                        value.value.uiVal = (
                            action
                            if isinstance(action, int)
                            else _constant("NVML_GPU_RECOVERY_ACTION_", action)
                        )
                return values

        def mig_mode(handle: Any) -> list[int]:
            with s._cond:
                position, _slot = s._resolve(handle)
                s._enter("nvmlDeviceGetMigMode", position)
                mig = s.gpus[position].mig
                return [int(mig.enabled), int(mig.pending_enabled)]

        def mig_handle(handle: Any, slot: int) -> Any:
            with s._cond:
                position, _slot = s._resolve(handle)
                s._enter("nvmlDeviceGetMigDeviceHandleByIndex", position)
                if not s.mig_monitor:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
                if slot not in s.gpus[position].mig.devices:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
                return s._mig_handle(position, slot)

        def mig_attribute(name: str, attribute: str) -> Callable[[Any], int]:
            def call(handle: Any) -> int:
                with s._cond:
                    position, slot = s._resolve(handle)
                    s._enter(name, position)
                    if slot is None:
                        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
                    return int(getattr(s.gpus[position].mig.devices[slot], attribute))

            return call

        def nvlink_state(handle: Any, link: int) -> int:
            with s._cond:
                position, _slot = s._resolve(handle)
                s._enter("nvmlDeviceGetNvLinkState", position)
                links = s.gpus[position].nvlinks
                if link >= len(links):
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
                return int(links[link])

        def supported_events(handle: Any) -> int:
            with s._cond:
                position, _slot = s._resolve(handle)
                s._enter("nvmlDeviceGetSupportedEventTypes", position)
                return sum(_constant("nvmlEventType", e) for e in set(s.gpus[position].events))

        def event_set_create() -> Any:
            with s._cond:
                s._enter("nvmlEventSetCreate")
                event_set = _EventSet()
                s._event_sets[ctypes.addressof(event_set.struct)] = event_set
                return event_set.handle

        def register(handle: Any, event_types: int, event_set_handle: Any) -> None:
            with s._cond:
                position, _slot = s._resolve(handle)
                event_set = s._event_set(event_set_handle)
                try:
                    s._enter("nvmlDeviceRegisterEvents", position)
                except pynvml.NVMLError as error:
                    if error.value == pynvml.NVML_ERROR_UNKNOWN:
                        event_set.undefined = True  # "event set is in undefined state"
                    raise
                gpu = s.gpus[position]
                supported = sum(_constant("nvmlEventType", e) for e in set(gpu.events))
                if event_types & ~supported:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
                event_set.registered[gpu.uuid] = event_set.registered.get(gpu.uuid, 0) | event_types

        def free(event_set_handle: Any) -> None:
            with s._cond:
                s._enter("nvmlEventSetFree")
                event_set = s._event_set(event_set_handle)
                if event_set.waiters:
                    raise SimulationError(
                        "nvmlEventSetFree while nvmlEventSetWait is running on the same set"
                    )
                event_set.freed = True
                s.event_sets_freed += 1

        def wait(eventSet: Any, timeoutms: int) -> Any:  # noqa: N803 (pynvml's own names)
            return s._wait(eventSet, timeoutms)

        return {
            "nvmlInit": init,
            "nvmlShutdown": shutdown,
            "nvmlDeviceGetCount": system("nvmlDeviceGetCount", lambda: len(s.gpus)),
            "nvmlDeviceGetHandleByIndex": handle_by_index,
            "nvmlSystemGetDriverVersion": system(
                "nvmlSystemGetDriverVersion", lambda: s.driver.version
            ),
            "nvmlSystemGetCudaDriverVersion": system(
                "nvmlSystemGetCudaDriverVersion", lambda: s.driver.cuda
            ),
            "nvmlSystemGetNVMLVersion": system("nvmlSystemGetNVMLVersion", lambda: s.driver.nvml),
            "nvmlDeviceGetUUID": uuid,
            "nvmlDeviceGetName": name,
            "nvmlDeviceGetPciInfo": pci,
            "nvmlDeviceGetMemoryInfo": memory,
            "nvmlDeviceGetUtilizationRates": utilization,
            "nvmlDeviceGetCurrentClocksEventReasons": reasons(
                "nvmlDeviceGetCurrentClocksEventReasons"
            ),
            "nvmlDeviceGetCurrentClocksThrottleReasons": reasons(
                "nvmlDeviceGetCurrentClocksThrottleReasons"
            ),
            "nvmlDeviceGetPowerUsage": device("nvmlDeviceGetPowerUsage", lambda g: g.power_mw),
            "nvmlDeviceGetEnforcedPowerLimit": device(
                "nvmlDeviceGetEnforcedPowerLimit", lambda g: g.power_limit_mw
            ),
            "nvmlDeviceGetPersistenceMode": device(
                "nvmlDeviceGetPersistenceMode", lambda g: int(g.persistence)
            ),
            "nvmlDeviceGetTemperatureV": temperature("nvmlDeviceGetTemperatureV"),
            "nvmlDeviceGetTemperature": temperature("nvmlDeviceGetTemperature"),
            "nvmlDeviceGetTemperatureThreshold": threshold,
            "nvmlDeviceGetClockInfo": clock,
            "nvmlDeviceGetEccMode": device(
                "nvmlDeviceGetEccMode", lambda g: [int(g.ecc.enabled), int(g.ecc.enabled)]
            ),
            "nvmlDeviceGetTotalEccErrors": ecc_total,
            "nvmlDeviceGetArchitecture": device(
                "nvmlDeviceGetArchitecture",
                lambda g: _constant("NVML_DEVICE_ARCH_", g.architecture),
            ),
            "nvmlDeviceGetRemappedRows": device(
                "nvmlDeviceGetRemappedRows",
                lambda g: (
                    g.remapped_rows.correctable,
                    g.remapped_rows.uncorrectable,
                    int(g.remapped_rows.pending),
                    int(g.remapped_rows.failure),
                ),
            ),
            "nvmlDeviceGetRetiredPages": retired,
            "nvmlDeviceGetUnrepairableMemoryFlag_v1": device(
                "nvmlDeviceGetUnrepairableMemoryFlag_v1", lambda g: int(g.unrepairable_memory)
            ),
            "nvmlDeviceGetRetiredPagesPendingStatus": device(
                "nvmlDeviceGetRetiredPagesPendingStatus", lambda g: int(g.retired_pages.pending)
            ),
            "nvmlDeviceGetFieldValues": field_values,
            "nvmlDeviceGetMigMode": mig_mode,
            "nvmlDeviceGetMaxMigDeviceCount": device(
                "nvmlDeviceGetMaxMigDeviceCount", lambda g: g.mig.max_devices
            ),
            "nvmlDeviceGetMigDeviceHandleByIndex": mig_handle,
            "nvmlDeviceGetGpuInstanceId": mig_attribute(
                "nvmlDeviceGetGpuInstanceId", "gpu_instance_id"
            ),
            "nvmlDeviceGetComputeInstanceId": mig_attribute(
                "nvmlDeviceGetComputeInstanceId", "compute_instance_id"
            ),
            "nvmlDeviceGetNvLinkState": nvlink_state,
            "nvmlEventSetCreate": event_set_create,
            "nvmlDeviceGetSupportedEventTypes": supported_events,
            "nvmlDeviceRegisterEvents": register,
            "nvmlEventSetWait_v2": wait,
            "nvmlEventSetWait": wait,
            "nvmlEventSetFree": free,
        }


_ALWAYS_RELEASABLE: Final = frozenset({"nvmlShutdown", "nvmlEventSetFree"})
"""Letting go works even when the driver went away, so a caller can always clean up."""
SIMULATED: Final = frozenset(SimulatedNVML([]).functions())
"""Every pynvml function the simulation answers."""


def sim_gpu(index: int, *, seed: str = "node", **fields: Any) -> SimGPU:
    """A healthy H100 at `index` on node `seed`, with `fields` changed."""
    gpu = SimGPU.model_validate(fields)
    return identify(gpu, index, seed)


def identify(gpu: SimGPU, index: int, seed: str) -> SimGPU:
    """Fill in what a GPU of node `seed` at `index` is called, where the scenario left it out:
    stable per node and index, so each simulated node has GPUs of its own."""
    namespace = _UUID_NAMESPACE
    update: dict[str, Any] = {}
    if not gpu.uuid:
        update["uuid"] = f"GPU-{uuidlib.uuid5(namespace, f'{seed}/{index}')}"
    if not gpu.bus_id:
        update["bus_id"] = f"00000000:{(0x18 + 0x10 * index) % 0x100:02X}:00.0"
    devices = {
        slot: device
        if device.uuid
        else device.model_copy(
            update={"uuid": f"MIG-{uuidlib.uuid5(namespace, f'{seed}/{index}/mig/{slot}')}"}
        )
        for slot, device in gpu.mig.devices.items()
    }
    if devices != gpu.mig.devices:
        update["mig"] = gpu.mig.model_copy(update={"devices": devices})
    return gpu.model_copy(update=update) if update else gpu
