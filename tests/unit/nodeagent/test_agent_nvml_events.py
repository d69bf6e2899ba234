"""Where XID events cannot be watched, the agent says so instead of reading Healthy: GPUs
NVML would not register, and every GPU while waits keep failing (NVIDIA's device plugin marks
them unhealthy, k8s-device-plugin v0.20.0 internal/rm/health.go; an observer says Unknown)."""

from __future__ import annotations

from datetime import UTC, datetime

import pynvml

from gpu_inventory.nodeagent import status
from gpu_inventory.nodeagent.backend import XidSeen, XidWatch
from gpu_inventory.nodeagent.nvml import NVMLBackend
from gpu_inventory.nodeagent.nvmlevents import REREGISTER_AFTER
from gpu_inventory.testing.simnvml import SimulatedNVML

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def started() -> NVMLBackend:
    backend = NVMLBackend()
    backend.start()
    return backend


def test_gpus_nvml_will_not_register_are_named_and_unknown(nvml: SimulatedNVML) -> None:
    nvml.gpus[1].events = []  # an old board: no XID events at all
    nvml.fail("nvmlDeviceRegisterEvents", pynvml.NVML_ERROR_NO_PERMISSION, gpu=2)
    reading = started().read()
    devices = reading.devices
    assert [d.xids_unwatched for d in devices] == [
        None,
        XidWatch("NotSupported", fault=False),
        XidWatch("NoPermission", fault=True),
        None,
    ]
    assert "xidEvents" in devices[1].gpu.unsupported
    assert "xidEvents (NoPermission)" in devices[2].gpu.unsupported
    report = status.build_report(reading, now=NOW, xids={})
    assert [g.health.status for g in report.gpus] == ["Healthy", "Healthy", "Unknown", "Healthy"]
    assert "GPU 2: XID events cannot be watched (NVML NoPermission)" in report.agent.message


def test_waits_that_keep_failing_unwatch_every_gpu_and_register_anew(nvml: SimulatedNVML) -> None:
    backend = started()
    nvml.fail("nvmlEventSetWait_v2", pynvml.NVML_ERROR_UNKNOWN)
    for _ in range(REREGISTER_AFTER - 1):
        assert backend.wait_xids(0.01) == []
    assert all(d.xids_unwatched is None for d in backend.read().devices), "one failure is noise"
    assert backend.wait_xids(0.01) == []
    assert nvml.calls.count("nvmlEventSetCreate") == 2  # freed and registered anew
    assert nvml.event_sets_freed == 1
    devices = backend.read().devices
    assert {d.xids_unwatched for d in devices} == {XidWatch("Unknown", fault=True)}
    assert all("xidEvents (Unknown)" in d.gpu.unsupported for d in devices)

    nvml.heal("nvmlEventSetWait_v2")
    assert backend.wait_xids(0.01) == []  # a timeout: waiting works again
    assert all(d.xids_unwatched is None for d in backend.read().devices)
    nvml.xid(3, 79)
    assert backend.wait_xids(0.5) == [XidSeen(nvml.gpus[3].uuid, 79)]
    backend.stop()


def test_no_event_set_at_all_leaves_every_gpu_unwatched(nvml: SimulatedNVML) -> None:
    nvml.fail("nvmlEventSetCreate", pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
    devices = started().read().devices
    assert {d.xids_unwatched for d in devices} == {XidWatch("InsufficientResources", True)}
