"""The real GPU backend: NVML through nvidia-ml-py (`import pynvml`): the NVML session and the
readings. The XID event set is `nvmlevents.py`; how NVML's errors are treated, `nvmlbase.py`.

Every NVML call is made through the `pynvml` module at call time, so tests can patch the real
functions and the real exception classes are exercised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

import pydantic
import pynvml
from pydantic.alias_generators import to_camel

from gpu_inventory.api import models
from gpu_inventory.nodeagent import decode
from gpu_inventory.nodeagent.backend import (
    DeviceReading,
    LostReason,
    NodeReading,
    NVMLStaleLibraryError,
    NVMLUnavailableError,
    XidSeen,
)
from gpu_inventory.nodeagent.nvmlbase import (
    describe,
    error_kind,
    error_name,
    lost_reason,
    text,
)
from gpu_inventory.nodeagent.nvmlevents import XidEventSet

log = logging.getLogger(__name__)

T = TypeVar("T")


class _GpuLostError(Exception):
    def __init__(self, reason: LostReason) -> None:
        super().__init__(reason)
        self.reason = reason


class _Fields:
    """Reads one GPU field by field; an unsupported field becomes null plus a marker, and a
    field NVML refuses (NoPermission) is also named in `refused`."""

    def __init__(self) -> None:
        self.unsupported: list[str] = []
        self.refused: list[str] = []

    def get(self, markers: str | tuple[str, ...], call: Callable[[], T]) -> T | None:
        names = (markers,) if isinstance(markers, str) else markers
        try:
            return call()
        except pynvml.NVMLError as error:
            kind = error_kind(error)
            if kind == "lost":
                raise _GpuLostError(lost_reason(error)) from error
            if kind == "node":
                raise NVMLUnavailableError(describe(error)) from error
            suffix = "" if kind == "absent" else f" ({error_name(error)})"
            self.unsupported.extend(f"{name}{suffix}" for name in names)
            if error.value == pynvml.NVML_ERROR_NO_PERMISSION:
                self.refused.extend(names)
            return None


class NVMLBackend:
    """`GPUBackend` on the node's NVIDIA driver."""

    def __init__(self) -> None:
        self._initialised = False
        self._events = XidEventSet()
        # Learned per NVML session and forgotten on every init: after a re-init NVML may list
        # the GPUs in another order, and a handle or index must never name another GPU's UUID.
        self._identity: dict[int, tuple[str, str, str]] = {}
        """GPU index -> (uuid, name, bus id), so a GPU that stops answering is still named."""
        self._warned: dict[int, str] = {}
        self._links: dict[int, tuple[int, ...]] = {}
        """GPU index -> the NVLinks its board has, learned on the first read."""

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            if error.value == pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH:
                raise NVMLStaleLibraryError(describe(error)) from error
            raise NVMLUnavailableError(describe(error)) from error
        self._initialised = True
        for cache in (self._identity, self._warned, self._links):
            cache.clear()
        self._events = XidEventSet()  # handles of the last session must not name GPUs now
        self._events.open()

    def stop(self) -> None:
        """Free the event set (after any running wait returns) and shut NVML down, so this
        process holds no /dev/nvidia* file open."""
        self._events.close()
        if self._initialised:
            self._initialised = False
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError as error:
                log.debug("nvmlShutdown: %s", describe(error))

    def wait_xids(self, timeout: float) -> list[XidSeen]:
        return self._events.wait(timeout)

    # --- readings -------------------------------------------------------------------------------

    def read(self) -> NodeReading:
        try:
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as error:
            raise NVMLUnavailableError(describe(error)) from error
        driver = self._driver()
        devices = tuple(self._read_device(index) for index in range(count))
        return NodeReading(driver=driver, devices=devices)

    def _driver(self) -> models.DriverInfo:
        node = _Fields()
        version = node.get("driverVersion", pynvml.nvmlSystemGetDriverVersion)
        cuda = node.get("cudaVersion", pynvml.nvmlSystemGetCudaDriverVersion)
        nvml = node.get("nvmlVersion", pynvml.nvmlSystemGetNVMLVersion)
        return models.DriverInfo(
            driver_version=text(version) if version is not None else None,
            cuda_version=decode.cuda_version(cuda) if cuda is not None else None,
            nvml_version=text(nvml) if nvml is not None else None,
        )

    def _read_device(self, index: int) -> DeviceReading:
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError as error:
            kind = error_kind(error)
            if kind == "node":
                raise NVMLUnavailableError(describe(error)) from error
            if kind == "lost":
                return DeviceReading(self._known(index), lost=lost_reason(error))
            self._warn_once(index, f"cannot get a handle: {describe(error)}")
            return DeviceReading(self._known(index), lost="Unreadable")
        try:
            return self._read_gpu(index, handle)
        except _GpuLostError as lost:
            return DeviceReading(self._known(index), lost=lost.reason)
        except NVMLUnavailableError:
            raise
        except Exception as error:  # a bug or a ctypes surprise must not hide the other GPUs
            self._warn_once(index, f"reading failed: {error!r}", trace=True)
            return DeviceReading(self._known(index), lost="Unreadable")

    def _nvlink(self, index: int, h: Any) -> models.NVLink:
        """Probe every possible link once per GPU, then read only the links it has (a PCIe
        board would otherwise answer 18 NotSupported calls on every read)."""
        states = _nvlink_states(h, self._links.get(index, _ALL_LINKS))
        self._links[index] = tuple(link for link, _ in states)
        if not states:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return _nvlink_model(states)

    def _warn_once(self, index: int, message: str, *, trace: bool = False) -> None:
        """Log a GPU's failure once per kind of failure, not on every read."""
        if self._warned.get(index) != message:
            self._warned[index] = message
            log.warning("GPU %d: %s", index, message, exc_info=trace)

    def _known(self, index: int) -> models.GPU:
        uuid, name, bus = self._identity.get(index, (f"GPU-unknown-index-{index}", "", ""))
        return models.GPU(uuid=uuid, index=index, name=name, pci_bus_id=bus)

    def _read_gpu(self, index: int, h: Any) -> DeviceReading:
        f = _Fields()
        found = f.get("uuid", lambda: pynvml.nvmlDeviceGetUUID(h))
        uuid = text(found) if found is not None else f"GPU-unknown-index-{index}"
        name = text(f.get("name", lambda: pynvml.nvmlDeviceGetName(h)) or "")
        pci = f.get("pciBusId", lambda: pynvml.nvmlDeviceGetPciInfo(h))
        bus = text(pci.busId) if pci is not None else ""
        self._identity[index] = (uuid, name, bus)
        self._events.name(h, uuid)

        memory = f.get(("memoryTotal", "memoryUsed"), lambda: _memory(h))
        utilization = f.get(
            ("utilizationGpu", "utilizationMemory"),
            lambda: pynvml.nvmlDeviceGetUtilizationRates(h),
        )
        reasons = f.get("clocksEventReasons", lambda: _clocks_event_reasons(h))
        power = f.get("powerDrawWatts", lambda: pynvml.nvmlDeviceGetPowerUsage(h))
        limit = f.get("powerLimitWatts", lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h))
        persistence = f.get("persistenceMode", lambda: pynvml.nvmlDeviceGetPersistenceMode(h))
        action_code = f.get(
            "recoveryAction", lambda: _field_value(h, pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION)
        )
        action = decode.recovery_action(action_code) if action_code is not None else None
        if action_code is not None and action is None:
            f.unsupported.append(f"recoveryAction (code {action_code})")
        fields: dict[str, Any] = {
            "uuid": uuid,
            "index": index,
            "name": name,
            "pci_bus_id": bus,
            "memory_total": memory.total if memory is not None else None,
            "memory_used": memory.used if memory is not None else None,
            "utilization_gpu": utilization.gpu if utilization is not None else None,
            "utilization_memory": utilization.memory if utilization is not None else None,
            "temperature": f.get("temperature", lambda: _temperature(h)),
            "slowdown_temperature": f.get(
                "slowdownTemperature",
                lambda: pynvml.nvmlDeviceGetTemperatureThreshold(
                    h, pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
                ),
            ),
            "shutdown_temperature": f.get(
                "shutdownTemperature",
                lambda: pynvml.nvmlDeviceGetTemperatureThreshold(
                    h, pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN
                ),
            ),
            "power_draw_watts": power / 1000 if power is not None else None,  # mW
            "power_limit_watts": limit / 1000 if limit is not None else None,  # mW
            "clocks": models.Clocks(
                sm=f.get("clocks.sm", lambda: _clock(h, pynvml.NVML_CLOCK_SM)),
                memory=f.get("clocks.memory", lambda: _clock(h, pynvml.NVML_CLOCK_MEM)),
                graphics=f.get("clocks.graphics", lambda: _clock(h, pynvml.NVML_CLOCK_GRAPHICS)),
            ),
            "clocks_event_reasons": decode.clocks_event_reasons(reasons) if reasons else [],
            "ecc": _ecc(f, h),
            "recovery_action": action,
            "mig": _mig(f, h),
            "nvlink": f.get("nvlink", lambda: self._nvlink(index, h)),
            "persistence_mode": persistence == pynvml.NVML_FEATURE_ENABLED
            if persistence is not None
            else None,
        }
        fields.update(_memory_errors(f, h))
        fields["unrepairable_memory"] = f.get("unrepairableMemory", lambda: _unrepairable(h))
        unwatched = self._events.unwatched(index)
        if unwatched is not None:
            f.unsupported.append(
                f"xidEvents ({unwatched.error})" if unwatched.fault else "xidEvents"
            )
        return DeviceReading(
            _validated(fields, f.unsupported),
            refused=tuple(f.refused),
            xids_unwatched=unwatched,
            unknown_recovery_action=action_code if action is None else None,
        )


# --- helpers ------------------------------------------------------------------------------------


def _temperature(h: Any) -> int:
    try:
        return int(pynvml.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU))
    except (pynvml.NVMLError_FunctionNotFound, pynvml.NVMLError_ArgumentVersionMismatch):
        # Drivers before nvmlDeviceGetTemperatureV (R565) have only the deprecated call.
        return int(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))


def _memory(h: Any) -> Any:
    """nvmlMemory_v2 where the driver has it: its `used` leaves out the memory the driver
    reserves, which v1's `used` includes (nvml.h, nvmlMemory_v2_t). Drivers without v2, and
    vGPU guests whose driver answers NotSupported for it, get v1."""
    try:
        return pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    except (
        pynvml.NVMLError_FunctionNotFound,
        pynvml.NVMLError_ArgumentVersionMismatch,
        pynvml.NVMLError_NotSupported,
    ):
        return pynvml.nvmlDeviceGetMemoryInfo(h)


def _clocks_event_reasons(h: Any) -> int:
    """nvmlDeviceGetCurrentClocksEventReasons exists from R535; older drivers have only
    nvmlDeviceGetCurrentClocksThrottleReasons, with the same bits (nvml.h; nvidia-ml-py marks the
    old name deprecated, to be removed with CUDA 14)."""
    try:
        return int(pynvml.nvmlDeviceGetCurrentClocksEventReasons(h))
    except pynvml.NVMLError_FunctionNotFound:
        legacy = getattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        if legacy is None:
            raise
        return int(legacy(h))


def _clock(h: Any, kind: int) -> int:
    return int(pynvml.nvmlDeviceGetClockInfo(h, kind))


def _ecc(f: _Fields, h: Any) -> models.EccCounts:
    mode = f.get("ecc.enabled", lambda: pynvml.nvmlDeviceGetEccMode(h))

    def total(marker: str, error_type: int, counter: int) -> int | None:
        value = f.get(
            f"ecc.{marker}", lambda: pynvml.nvmlDeviceGetTotalEccErrors(h, error_type, counter)
        )
        return int(value) if value is not None else None

    corrected, uncorrected = (
        pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
        pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
    )
    return models.EccCounts(
        enabled=mode[0] == pynvml.NVML_FEATURE_ENABLED if mode is not None else None,
        volatile_corrected=total("volatileCorrected", corrected, pynvml.NVML_VOLATILE_ECC),
        volatile_uncorrected=total("volatileUncorrected", uncorrected, pynvml.NVML_VOLATILE_ECC),
        aggregate_corrected=total("aggregateCorrected", corrected, pynvml.NVML_AGGREGATE_ECC),
        aggregate_uncorrected=total("aggregateUncorrected", uncorrected, pynvml.NVML_AGGREGATE_ECC),
    )


def _memory_errors(f: _Fields, h: Any) -> dict[str, Any]:
    """Remapped rows on Ampere and later, retired pages before (dynamic page retirement docs:
    https://docs.nvidia.com/deploy/dynamic-page-retirement/); unknown architecture: try both."""
    # No marker: the architecture is not an API field, it only steers the reads below.
    architecture = f.get((), lambda: pynvml.nvmlDeviceGetArchitecture(h))
    remaps = decode.remaps_rows(architecture)
    rows = pages = None
    if remaps is False:
        f.unsupported.append("remappedRows")
    else:
        found = f.get("remappedRows", lambda: pynvml.nvmlDeviceGetRemappedRows(h))
        if found is not None:
            correctable, uncorrectable, pending, failure = found
            rows = models.RemappedRows(
                correctable=correctable,
                uncorrectable=uncorrectable,
                pending=bool(pending),
                failure=bool(failure),
            )
    if remaps is True:
        f.unsupported.append("retiredPages")
    else:
        pages = f.get("retiredPages", lambda: _retired_pages(h))
    return {"remapped_rows": rows, "retired_pages": pages}


def _unrepairable(h: Any) -> bool:
    """NVML's unrepairable-memory flag, which DCGM's MonitorMemUnrepairableFlag fails on.
    Drivers and nvidia-ml-py versions older than the call raise FunctionNotFound (absent)."""
    call = getattr(pynvml, "nvmlDeviceGetUnrepairableMemoryFlag_v1", None)
    if call is None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    return bool(call(h))


def _retired_pages(h: Any) -> models.RetiredPages:
    single = pynvml.nvmlDeviceGetRetiredPages(
        h, pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
    )
    double = pynvml.nvmlDeviceGetRetiredPages(
        h, pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
    )
    pending = pynvml.nvmlDeviceGetRetiredPagesPendingStatus(h)
    return models.RetiredPages(
        single_bit_ecc=len(single),
        double_bit_ecc=len(double),
        pending=pending == pynvml.NVML_FEATURE_ENABLED,
    )


def _field_value(h: Any, field_id: int) -> int:
    """One integer field through nvmlDeviceGetFieldValues; its per-field status is raised."""
    value = pynvml.nvmlDeviceGetFieldValues(h, [field_id])[0]
    if value.nvmlReturn == pynvml.NVML_ERROR_INVALID_ARGUMENT:
        # A driver that does not know the field id (older than the field) says so this way.
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    if value.nvmlReturn != pynvml.NVML_SUCCESS:
        raise pynvml.NVMLError(value.nvmlReturn)
    member = {
        pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
        pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
        pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
        pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
        pynvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
        pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
    }.get(value.valueType, "uiVal")
    return int(getattr(value.value, member))


def _mig(f: _Fields, h: Any) -> models.Mig:
    mode = f.get("mig", lambda: pynvml.nvmlDeviceGetMigMode(h))
    if mode is None:
        return models.Mig()
    current, pending = mode
    enabled = current == pynvml.NVML_DEVICE_MIG_ENABLE
    instances = f.get("mig.instances", lambda: _mig_instances(h)) if enabled else []
    return models.Mig(
        enabled=enabled,
        pending_enabled=pending == pynvml.NVML_DEVICE_MIG_ENABLE,
        instances=instances or [],
    )


def _mig_instances(h: Any) -> list[models.MigInstance]:
    instances: list[models.MigInstance] = []
    for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(h)):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, slot)
        except pynvml.NVMLError_NotFound:
            continue  # an empty slot
        instances.append(_mig_instance(mig))
        if len(instances) == models.MAX_MIG_INSTANCES:
            break
    return instances


def _mig_instance(mig: Any) -> models.MigInstance:
    """One MIG device; a field it cannot give is left empty (the instance is still listed)."""
    part = _Fields()
    name = part.get("profile", lambda: pynvml.nvmlDeviceGetName(mig))
    memory = part.get("memory", lambda: _memory(mig))
    return models.MigInstance(
        uuid=text(pynvml.nvmlDeviceGetUUID(mig)),
        gpu_instance_id=part.get("gi", lambda: pynvml.nvmlDeviceGetGpuInstanceId(mig)),
        compute_instance_id=part.get("ci", lambda: pynvml.nvmlDeviceGetComputeInstanceId(mig)),
        profile=decode.mig_profile(text(name)) if name is not None else "",
        memory_total=memory.total if memory is not None else None,
    )


_ALL_LINKS: Final = tuple(range(min(pynvml.NVML_NVLINK_MAX_LINKS, models.MAX_NVLINKS)))


def _nvlink_states(h: Any, links: Iterable[int]) -> list[tuple[int, bool]]:
    """(link, up) for each link of `links` the board has; links it does not have are skipped."""
    states: list[tuple[int, bool]] = []
    for link in links:
        try:
            states.append((link, pynvml.nvmlDeviceGetNvLinkState(h, link) == 1))
        except pynvml.NVMLError as error:
            if error_kind(error) == "absent" or error.value == pynvml.NVML_ERROR_INVALID_ARGUMENT:
                continue  # this link does not exist on this board
            raise
    return states


def _nvlink_model(states: list[tuple[int, bool]]) -> models.NVLink:
    return models.NVLink(
        links=len(states),
        active=sum(1 for _, up in states if up),
        inactive_links=[link for link, up in states if not up],
    )


def _validated(fields: dict[str, Any], unsupported: list[str]) -> models.GPU:
    """The GPU model; a value outside the schema's bounds is dropped and named, not fatal."""
    by_alias = {field.alias or name: name for name, field in models.GPU.model_fields.items()}
    for _ in range(3):
        try:
            return models.GPU.model_validate({**fields, "unsupported": unsupported})
        except pydantic.ValidationError as error:
            bad = {by_alias.get(str(e["loc"][0]), str(e["loc"][0])) for e in error.errors()}
            if not bad <= fields.keys() or bad & {"uuid", "index"}:
                raise
            for name in sorted(bad):
                log.warning(
                    "GPU %s: %s=%r is out of bounds; dropped", fields["index"], name, fields[name]
                )
                default = models.GPU.model_fields[name].get_default(call_default_factory=True)
                fields[name] = default
                unsupported.append(f"{to_camel(name)} (out of bounds)")
    return models.GPU.model_validate({**fields, "unsupported": unsupported})
