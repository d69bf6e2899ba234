"""A simulated NVML device set behind the real `pynvml` module.

The real functions of nvidia-ml-py are replaced one by one (monkeypatch), and failures are the
library's own: `pynvml.NVMLError(code)` builds the real subclass (`NVMLError_NotSupported`...),
exactly as the library does when the driver returns that code. NVML's ctypes structures are
the real ones too. So the NVML backend runs unchanged against it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pynvml


@dataclasses.dataclass
class SimMig:
    uuid: str
    gpu_instance_id: int
    compute_instance_id: int = 0
    name: str = "NVIDIA H100 80GB HBM3 MIG 1g.10gb"
    memory_total: int = 10_468_982_784


@dataclasses.dataclass
class SimGPU:
    """One simulated GPU. Defaults describe an idle, healthy H100 (Hopper)."""

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    bus_id: str = "00000000:18:00.0"
    architecture: int = pynvml.NVML_DEVICE_ARCH_HOPPER
    memory_total: int = 85_520_809_984
    memory_used: int = 553_648_128
    utilization: tuple[int, int] = (3, 1)
    temperature: int = 34
    slowdown: int = 89
    shutdown: int = 92
    power_mw: int = 72_400
    limit_mw: int = 700_000
    clocks: dict[int, int] = dataclasses.field(
        default_factory=lambda: {
            pynvml.NVML_CLOCK_SM: 345,
            pynvml.NVML_CLOCK_MEM: 2619,
            pynvml.NVML_CLOCK_GRAPHICS: 345,
        }
    )
    clocks_event_reasons: int = pynvml.nvmlClocksEventReasonGpuIdle
    ecc_mode: tuple[int, int] = (1, 1)
    ecc: dict[tuple[int, int], int] = dataclasses.field(default_factory=dict)
    remapped_rows: tuple[int, int, int, int] = (0, 0, 0, 0)
    retired_pages: dict[int, list[int]] = dataclasses.field(default_factory=dict)
    retired_pending: int = 0
    recovery_action: int = pynvml.NVML_GPU_RECOVERY_ACTION_NONE
    mig_mode: tuple[int, int] = (0, 0)
    mig_devices: dict[int, SimMig] = dataclasses.field(default_factory=dict)
    max_mig_devices: int = 7
    nvlink: list[int] = dataclasses.field(default_factory=lambda: [1] * 18)
    persistence: int = 1
    event_types: int = (
        pynvml.nvmlEventTypeXidCriticalError
        | pynvml.nvmlEventTypeSingleBitEccError
        | pynvml.nvmlEventTypeDoubleBitEccError
    )


@dataclasses.dataclass(frozen=True)
class Handle:
    index: int


@dataclasses.dataclass(frozen=True)
class MigHandle:
    parent: int
    slot: int


class SimulatedNVML:
    """The device set; `fail(function, code, gpu=None)` makes a call raise NVML's own error."""

    def __init__(self, gpus: list[SimGPU]) -> None:
        self.gpus = gpus
        self.driver = "570.124.06"
        self.cuda = 12080
        self.nvml_version = "12.570.124.06"
        self.failures: dict[tuple[str, int | None], int] = {}
        self.events: list[tuple[int, int]] = []  # (gpu index, xid)
        self.calls: list[str] = []
        self.initialised = 0
        self.event_sets_freed = 0

    @staticmethod
    def gpu_like(index: int, **fields: Any) -> SimGPU:
        """A healthy H100 at `index`, with `fields` changed."""
        return sim_gpu(index, **fields)

    @staticmethod
    def mig(uuid: str, gpu_instance_id: int) -> SimMig:
        return SimMig(uuid, gpu_instance_id=gpu_instance_id)

    def fail(self, function: str, code: int, gpu: int | None = None) -> None:
        """From now on `pynvml.<function>` raises NVMLError(code) (for GPU `gpu`, or any)."""
        self.failures[(function, gpu)] = code

    def heal(self, function: str, gpu: int | None = None) -> None:
        self.failures.pop((function, gpu), None)

    def xid(self, gpu: int, code: int) -> None:
        self.events.append((gpu, code))

    # --- the patched functions ------------------------------------------------------------------

    def _check(self, function: str, handle: Any = None) -> None:
        self.calls.append(function)
        index = handle.index if isinstance(handle, Handle) else None
        if isinstance(handle, MigHandle):
            index = handle.parent
        for key in ((function, index), (function, None)):
            if key in self.failures:
                raise pynvml.NVMLError(self.failures[key])

    def _gpu(self, handle: Handle | MigHandle) -> SimGPU:
        return self.gpus[handle.index if isinstance(handle, Handle) else handle.parent]

    def functions(self) -> dict[str, Callable[..., Any]]:
        s = self

        def simple(name: str, get: Callable[[SimGPU], Any]) -> Callable[..., Any]:
            def call(handle: Handle, *_: Any) -> Any:
                s._check(name, handle)
                return get(s._gpu(handle))

            return call

        def init() -> None:
            s._check("nvmlInit")
            s.initialised += 1

        def shutdown() -> None:
            s._check("nvmlShutdown")
            s.initialised -= 1

        def count() -> int:
            s._check("nvmlDeviceGetCount")
            return len(s.gpus)

        def handle_by_index(index: int) -> Handle:
            s._check("nvmlDeviceGetHandleByIndex", Handle(index))
            return Handle(index)

        def uuid(handle: Handle | MigHandle) -> str:
            s._check("nvmlDeviceGetUUID", handle)
            if isinstance(handle, MigHandle):
                return s._gpu(handle).mig_devices[handle.slot].uuid
            return s._gpu(handle).uuid

        def name(handle: Handle | MigHandle) -> str:
            s._check("nvmlDeviceGetName", handle)
            if isinstance(handle, MigHandle):
                return s._gpu(handle).mig_devices[handle.slot].name
            return s._gpu(handle).name

        def pci(handle: Handle) -> Any:
            s._check("nvmlDeviceGetPciInfo", handle)
            info = pynvml.nvmlPciInfo_t()
            info.busId = s._gpu(handle).bus_id
            return info

        def memory(handle: Handle | MigHandle, version: Any = None) -> Any:
            s._check("nvmlDeviceGetMemoryInfo", handle)
            info = pynvml.c_nvmlMemory_t()
            if isinstance(handle, MigHandle):
                info.total = s._gpu(handle).mig_devices[handle.slot].memory_total
                info.used = 0
            else:
                info.total = s._gpu(handle).memory_total
                info.used = s._gpu(handle).memory_used
            info.free = info.total - info.used
            return info

        def utilization(handle: Handle) -> Any:
            s._check("nvmlDeviceGetUtilizationRates", handle)
            rates = pynvml.c_nvmlUtilization_t()
            rates.gpu, rates.memory = s._gpu(handle).utilization
            return rates

        def threshold(handle: Handle, which: int) -> int:
            s._check("nvmlDeviceGetTemperatureThreshold", handle)
            gpu = s._gpu(handle)
            if which == pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
                return gpu.slowdown
            if which == pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN:
                return gpu.shutdown
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

        def clock(handle: Handle, kind: int) -> int:
            s._check("nvmlDeviceGetClockInfo", handle)
            return s._gpu(handle).clocks[kind]

        def ecc_total(handle: Handle, error_type: int, counter: int) -> int:
            s._check("nvmlDeviceGetTotalEccErrors", handle)
            return s._gpu(handle).ecc.get((error_type, counter), 0)

        def retired(handle: Handle, cause: int) -> list[int]:
            s._check("nvmlDeviceGetRetiredPages", handle)
            return list(s._gpu(handle).retired_pages.get(cause, []))

        def field_values(handle: Handle, ids: list[int]) -> list[Any]:
            s._check("nvmlDeviceGetFieldValues", handle)
            values = []
            for field_id in ids:
                value = pynvml.c_nvmlFieldValue_t()
                value.fieldId = field_id
                value.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                failure = s.failures.get((f"field:{field_id}", handle.index)) or s.failures.get(
                    (f"field:{field_id}", None)
                )
                if failure is not None:
                    value.nvmlReturn = failure
                elif field_id == pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION:
                    value.nvmlReturn = pynvml.NVML_SUCCESS
                    value.value.uiVal = s._gpu(handle).recovery_action
                else:
                    value.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                values.append(value)
            return values

        def mig_handle(handle: Handle, slot: int) -> MigHandle:
            s._check("nvmlDeviceGetMigDeviceHandleByIndex", handle)
            if slot not in s._gpu(handle).mig_devices:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
            return MigHandle(handle.index, slot)

        def mig_attr(name: str, attribute: str) -> Callable[[MigHandle], int]:
            def call(handle: MigHandle) -> int:
                s._check(name, handle)
                return int(getattr(s._gpu(handle).mig_devices[handle.slot], attribute))

            return call

        def nvlink_state(handle: Handle, link: int) -> int:
            s._check("nvmlDeviceGetNvLinkState", handle)
            links = s._gpu(handle).nvlink
            if link >= len(links):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            return links[link]

        event_set = object()

        def event_set_create() -> Any:
            s._check("nvmlEventSetCreate")
            return event_set

        def register(handle: Handle, mask: int, es: Any) -> None:
            s._check("nvmlDeviceRegisterEvents", handle)
            assert es is event_set
            assert mask & ~s._gpu(handle).event_types == 0, "registered an unsupported event"

        def wait(es: Any, timeout_ms: int) -> Any:
            s._check("nvmlEventSetWait")
            assert es is event_set
            if not s.events:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
            gpu, code = s.events.pop(0)
            return SimpleNamespace(
                device=Handle(gpu),
                eventType=pynvml.nvmlEventTypeXidCriticalError,
                eventData=code,
                gpuInstanceId=0xFFFFFFFF,
                computeInstanceId=0xFFFFFFFF,
            )

        def free(es: Any) -> None:
            s._check("nvmlEventSetFree")
            s.event_sets_freed += 1

        def system(name: str, value: Callable[[], Any]) -> Callable[[], Any]:
            def call() -> Any:
                s._check(name)
                return value()

            return call

        return {
            "nvmlInit": init,
            "nvmlShutdown": shutdown,
            "nvmlDeviceGetCount": count,
            "nvmlDeviceGetHandleByIndex": handle_by_index,
            "nvmlSystemGetDriverVersion": system("nvmlSystemGetDriverVersion", lambda: s.driver),
            "nvmlSystemGetCudaDriverVersion": system(
                "nvmlSystemGetCudaDriverVersion", lambda: s.cuda
            ),
            "nvmlSystemGetNVMLVersion": system("nvmlSystemGetNVMLVersion", lambda: s.nvml_version),
            "nvmlDeviceGetUUID": uuid,
            "nvmlDeviceGetName": name,
            "nvmlDeviceGetPciInfo": pci,
            "nvmlDeviceGetMemoryInfo": memory,
            "nvmlDeviceGetUtilizationRates": utilization,
            "nvmlDeviceGetCurrentClocksEventReasons": simple(
                "nvmlDeviceGetCurrentClocksEventReasons", lambda g: g.clocks_event_reasons
            ),
            "nvmlDeviceGetPowerUsage": simple("nvmlDeviceGetPowerUsage", lambda g: g.power_mw),
            "nvmlDeviceGetEnforcedPowerLimit": simple(
                "nvmlDeviceGetEnforcedPowerLimit", lambda g: g.limit_mw
            ),
            "nvmlDeviceGetPersistenceMode": simple(
                "nvmlDeviceGetPersistenceMode", lambda g: g.persistence
            ),
            "nvmlDeviceGetTemperatureV": simple(
                "nvmlDeviceGetTemperatureV", lambda g: g.temperature
            ),
            "nvmlDeviceGetTemperature": simple("nvmlDeviceGetTemperature", lambda g: g.temperature),
            "nvmlDeviceGetTemperatureThreshold": threshold,
            "nvmlDeviceGetClockInfo": clock,
            "nvmlDeviceGetEccMode": simple("nvmlDeviceGetEccMode", lambda g: list(g.ecc_mode)),
            "nvmlDeviceGetTotalEccErrors": ecc_total,
            "nvmlDeviceGetArchitecture": simple(
                "nvmlDeviceGetArchitecture", lambda g: g.architecture
            ),
            "nvmlDeviceGetRemappedRows": simple(
                "nvmlDeviceGetRemappedRows", lambda g: g.remapped_rows
            ),
            "nvmlDeviceGetRetiredPages": retired,
            "nvmlDeviceGetRetiredPagesPendingStatus": simple(
                "nvmlDeviceGetRetiredPagesPendingStatus", lambda g: g.retired_pending
            ),
            "nvmlDeviceGetFieldValues": field_values,
            "nvmlDeviceGetMigMode": simple("nvmlDeviceGetMigMode", lambda g: list(g.mig_mode)),
            "nvmlDeviceGetMaxMigDeviceCount": simple(
                "nvmlDeviceGetMaxMigDeviceCount", lambda g: g.max_mig_devices
            ),
            "nvmlDeviceGetMigDeviceHandleByIndex": mig_handle,
            "nvmlDeviceGetGpuInstanceId": mig_attr("nvmlDeviceGetGpuInstanceId", "gpu_instance_id"),
            "nvmlDeviceGetComputeInstanceId": mig_attr(
                "nvmlDeviceGetComputeInstanceId", "compute_instance_id"
            ),
            "nvmlDeviceGetNvLinkState": nvlink_state,
            "nvmlEventSetCreate": event_set_create,
            "nvmlDeviceGetSupportedEventTypes": simple(
                "nvmlDeviceGetSupportedEventTypes", lambda g: g.event_types
            ),
            "nvmlDeviceRegisterEvents": register,
            "nvmlEventSetWait": wait,
            "nvmlEventSetFree": free,
        }


def sim_gpu(index: int, **fields: Any) -> SimGPU:
    """A healthy H100 at `index`, with `fields` changed."""
    fields.setdefault("uuid", f"GPU-{index:08x}-1111-4222-8333-{index:012x}")
    fields.setdefault("bus_id", f"00000000:{0x18 + 0x10 * index:02X}:00.0")
    return SimGPU(**fields)
