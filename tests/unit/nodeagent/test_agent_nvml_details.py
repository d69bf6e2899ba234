"""NVML details the backend must get right on real drivers (issue 11, item 6), each against the
simulated NVML, which holds the library's own rules (see testing/simnvml.py)."""

from __future__ import annotations

import threading
import time

import pynvml
import pytest

from gpu_inventory.nodeagent.backend import NVMLUnavailableError, XidSeen
from gpu_inventory.nodeagent.nvml import NVMLBackend
from gpu_inventory.testing.simnvml import SimMemory, SimulatedNVML
from gpu_inventory.testing.wait import eventually, holds


def started() -> NVMLBackend:
    backend = NVMLBackend()
    backend.start()
    return backend


def test_drivers_before_r535_report_clocks_event_reasons_through_the_old_call(
    nvml: SimulatedNVML,
) -> None:
    """nvmlDeviceGetCurrentClocksEventReasons is R535+; before, the same bits come from
    nvmlDeviceGetCurrentClocksThrottleReasons (nvml.h), so the thermal rules keep working."""
    nvml.driver.missing = ["nvmlDeviceGetCurrentClocksEventReasons"]
    nvml.gpus[0].clocks_event_reasons = ["HwThermalSlowdown"]
    gpu = started().read().devices[0].gpu
    assert gpu.clocks_event_reasons == ["HwThermalSlowdown"]
    assert "clocksEventReasons" not in gpu.unsupported
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in nvml.calls


def test_memory_used_leaves_out_the_drivers_reservation(nvml: SimulatedNVML) -> None:
    """nvmlMemory_v2 reports `reserved` apart; v1's `used` includes it (nvml.h)."""
    nvml.gpus[0].memory = SimMemory(total=80 << 30, used=1 << 30, reserved=512 << 20)
    assert started().read().devices[0].gpu.memory_used == 1 << 30


def test_a_driver_without_memory_info_v2_falls_back_to_v1(nvml: SimulatedNVML) -> None:
    nvml.driver.missing = ["nvmlDeviceGetMemoryInfo_v2"]
    nvml.gpus[0].memory = SimMemory(total=80 << 30, used=1 << 30, reserved=512 << 20)
    gpu = started().read().devices[0].gpu
    assert gpu.memory_used == (1 << 30) + (512 << 20)  # all v1 can say
    assert "memoryUsed" not in gpu.unsupported


def test_the_event_set_is_never_freed_under_a_running_wait(nvml: SimulatedNVML) -> None:
    """Freeing an event set while another thread waits on it is a use-after-free in the
    library; stop() waits for the wait (at most its timeout) before nvmlEventSetFree."""
    backend = started()
    waited: list[object] = []
    thread = threading.Thread(target=lambda: waited.append(backend.wait_xids(1.0)))
    thread.start()
    eventually(lambda: holds(nvml.waiting == 1), timeout=5, what="a running wait")
    backend.stop()  # the simulation raises SimulationError if it frees under the wait
    thread.join(5)
    assert waited == [[]]
    assert (nvml.event_sets_freed, nvml.initialised, nvml.waiting) == (1, 0, 0)


def test_after_an_unknown_error_from_register_events_the_set_is_freed_and_renewed(
    nvml: SimulatedNVML,
) -> None:
    """nvmlDeviceRegisterEvents: "If function reports NVML_ERROR_UNKNOWN, event set is in
    undefined state and should be freed." The GPUs registered before get a new set."""
    nvml.fail("nvmlDeviceRegisterEvents", pynvml.NVML_ERROR_UNKNOWN, gpu=2)
    backend = started()
    assert nvml.event_sets_freed == 1
    nvml.xid(0, 79)
    nvml.xid(3, 48)
    seen = backend.wait_xids(0.5) + backend.wait_xids(0.5)
    assert seen == [XidSeen(nvml.gpus[0].uuid, 79), XidSeen(nvml.gpus[3].uuid, 48)]


def test_a_re_enumerated_gpu_is_never_named_after_another(nvml: SimulatedNVML) -> None:
    """After NVML comes back the GPUs may be listed in another order: nothing learned about
    index 1 in the earlier session may name the GPU now at index 1."""
    backend = started()
    before = [d.gpu.uuid for d in backend.read().devices]
    nvml.init_error = "DriverNotLoaded"
    with pytest.raises(NVMLUnavailableError):
        backend.read()
    backend.stop()
    del nvml.gpus[1]  # gone when the driver comes back
    nvml.init_error = None
    nvml.fail("nvmlDeviceGetHandleByIndex", pynvml.NVML_ERROR_GPU_IS_LOST, gpu=1)
    backend.start()
    devices = backend.read().devices
    assert devices[1].lost == "GpuIsLost"
    assert devices[1].gpu.uuid == "GPU-unknown-index-1"  # not before[1], another GPU's UUID
    assert [d.gpu.uuid for d in devices if d.lost is None] == [before[0], before[3]]


def test_stop_releases_every_handle_even_after_the_driver_went_away(nvml: SimulatedNVML) -> None:
    backend = started()
    nvml.init_error = "DriverNotLoaded"
    backend.stop()
    assert (nvml.initialised, nvml.event_sets_freed) == (0, 1)


def test_a_stopped_backend_waits_quietly_and_promptly(nvml: SimulatedNVML) -> None:
    backend = started()
    backend.stop()
    began = time.monotonic()
    assert backend.wait_xids(5.0) == []
    assert time.monotonic() - began < 1.0
