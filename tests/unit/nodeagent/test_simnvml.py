"""The simulated NVML itself: it must refuse what the real library refuses, or tests over it
would pass code that breaks on a GPU node."""

from __future__ import annotations

import ctypes
import inspect
import threading
import time

import pynvml
import pytest

from gpu_inventory.testing.simnvml import (
    SIMULATED,
    SimMig,
    SimMigDevice,
    SimulatedNVML,
    SimulationError,
    sim_gpu,
)


def test_every_simulated_function_exists_in_nvidia_ml_py_with_its_signature() -> None:
    real = {name: inspect.signature(getattr(pynvml, name)) for name in SIMULATED}
    with SimulatedNVML([]).installed():
        for name, signature in real.items():
            assert inspect.signature(getattr(pynvml, name)) == signature, name


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("nvmlDeviceGetHandleByIndex", ()),
        ("nvmlDeviceGetTemperature", ("handle",)),
        ("nvmlDeviceGetTotalEccErrors", ("handle", 1)),
        ("nvmlEventSetWait", ("set", 1, 2)),
        ("nvmlInit", (0,)),
    ],
)
def test_a_wrong_argument_list_fails_as_it_would_against_the_real_library(
    nvml: SimulatedNVML, call: str, args: tuple[object, ...]
) -> None:
    pynvml.nvmlInit()
    with pytest.raises(TypeError):
        getattr(pynvml, call)(*args)


def test_handles_are_ctypes_pointers_and_anything_else_is_refused(nvml: SimulatedNVML) -> None:
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(2)
    assert isinstance(handle, pynvml.c_nvmlDevice_t)
    again = pynvml.nvmlDeviceGetHandleByIndex(2)
    assert ctypes.addressof(handle.contents) == ctypes.addressof(again.contents)
    assert pynvml.nvmlDeviceGetUUID(handle) == nvml.gpus[2].uuid
    with pytest.raises(ctypes.ArgumentError):
        pynvml.nvmlDeviceGetUUID(2)


def test_calls_before_init_or_after_shutdown_are_uninitialized(nvml: SimulatedNVML) -> None:
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    pynvml.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetName(handle)


def test_the_event_wait_honours_its_timeout_and_returns_early_for_an_event(
    nvml: SimulatedNVML,
) -> None:
    pynvml.nvmlInit()
    event_set = pynvml.nvmlEventSetCreate()
    pynvml.nvmlDeviceRegisterEvents(
        pynvml.nvmlDeviceGetHandleByIndex(1), pynvml.nvmlEventTypeXidCriticalError, event_set
    )
    began = time.monotonic()
    with pytest.raises(pynvml.NVMLError_Timeout):
        pynvml.nvmlEventSetWait(event_set, 300)
    assert 0.3 <= time.monotonic() - began < 2.0
    threading.Timer(0.2, lambda: nvml.xid(1, 79)).start()
    began = time.monotonic()
    data = pynvml.nvmlEventSetWait(event_set, 10_000)
    assert time.monotonic() - began < 5.0
    assert (data.eventType, data.eventData) == (pynvml.nvmlEventTypeXidCriticalError, 79)
    assert isinstance(data.device, pynvml.c_nvmlDevice_t)  # a new pointer to the same device
    assert pynvml.nvmlDeviceGetUUID(data.device) == nvml.gpus[1].uuid


def test_events_before_registration_are_not_delivered(nvml: SimulatedNVML) -> None:
    pynvml.nvmlInit()
    event_set = pynvml.nvmlEventSetCreate()
    nvml.xid(0, 48)  # "All events that occurred before this call are not recorded"
    pynvml.nvmlDeviceRegisterEvents(
        pynvml.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlEventTypeXidCriticalError, event_set
    )
    with pytest.raises(pynvml.NVMLError_Timeout):
        pynvml.nvmlEventSetWait(event_set, 10)


def test_misuse_of_event_sets_is_caught(nvml: SimulatedNVML) -> None:
    pynvml.nvmlInit()
    event_set = pynvml.nvmlEventSetCreate()
    pynvml.nvmlEventSetFree(event_set)
    with pytest.raises(SimulationError, match="after nvmlEventSetFree"):
        pynvml.nvmlEventSetWait(event_set, 10)
    undefined = pynvml.nvmlEventSetCreate()
    nvml.fail("nvmlDeviceRegisterEvents", "Unknown")
    with pytest.raises(pynvml.NVMLError_Unknown):
        pynvml.nvmlDeviceRegisterEvents(
            pynvml.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlEventTypeXidCriticalError, undefined
        )
    with pytest.raises(SimulationError, match="undefined"):
        pynvml.nvmlEventSetWait(undefined, 10)


def test_mig_without_the_monitor_capability(nvml: SimulatedNVML) -> None:
    """nvmlEventSetWait_v2: without privileges, "only the events which affect all the
    instances (i.e. whole device) are reported"; listing instances and the parent's memory
    info are refused."""
    nvml.mig_monitor = False
    nvml.gpus[0].mig = SimMig(enabled=True, devices={0: SimMigDevice(gpu_instance_id=7)})
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NoPermission):
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, 0)
    with pytest.raises(pynvml.NVMLError_NoPermission):  # k8s-device-plugin #399, #1683
        pynvml.nvmlDeviceGetMemoryInfo(handle)
    assert pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(1)).total > 0
    event_set = pynvml.nvmlEventSetCreate()
    pynvml.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypeXidCriticalError, event_set)
    nvml.xid(0, 13, gpu_instance=7)  # one instance's application error: not seen
    nvml.xid(0, 79)  # the whole GPU: seen
    assert pynvml.nvmlEventSetWait(event_set, 100).eventData == 79
    with pytest.raises(pynvml.NVMLError_Timeout):
        pynvml.nvmlEventSetWait(event_set, 10)


def test_bad_device_descriptions_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="NVML_DEVICE_ARCH_"):
        sim_gpu(0, architecture="MARS")
    with pytest.raises(ValueError, match="not an NVML error"):
        sim_gpu(0, errors={"nvmlDeviceGetName": "Oops"})
    with pytest.raises(ValueError, match="not an NVML function"):
        sim_gpu(0, errors={"nvmlDeviceGetWarpDrive": "NotSupported"})
