"""The real NVML backend against the real pynvml functions, patched to a simulated device set.

Every failure is raised by `pynvml.NVMLError(code)`, so the exception classes the backend sees
are the library's own (`NVMLError_NotSupported`, `NVMLError_GpuIsLost`, ...).
"""

from __future__ import annotations

import ctypes

import pynvml
import pytest

from gpu_inventory.api import models
from gpu_inventory.nodeagent.backend import NVMLUnavailableError, XidSeen
from gpu_inventory.nodeagent.nvml import NVMLBackend
from gpu_inventory.nodeagent.nvmlbase import describe, error_kind
from gpu_inventory.testing.simnvml import (
    SimEcc,
    SimMig,
    SimMigDevice,
    SimRemappedRows,
    SimRetiredPages,
    SimulatedNVML,
    sim_gpu,
)


def address(handle: object) -> int | None:
    return ctypes.cast(handle, ctypes.c_void_p).value  # type: ignore[arg-type]


def started(nvml: SimulatedNVML) -> NVMLBackend:
    backend = NVMLBackend()
    backend.start()
    return backend


def gpu(backend: NVMLBackend, index: int = 0) -> models.GPU:
    return backend.read().devices[index].gpu


# --- the readings -------------------------------------------------------------------------------


def test_every_reading_of_a_healthy_hopper_gpu(nvml: SimulatedNVML) -> None:
    backend = started(nvml)
    reading = backend.read()

    assert reading.driver == models.DriverInfo(
        driver_version="570.124.06", cuda_version="12.8", nvml_version="12.570.124.06"
    )
    assert [d.gpu.index for d in reading.devices] == [0, 1, 2, 3]
    assert all(d.lost is None for d in reading.devices)
    first = reading.devices[0].gpu
    assert first.model_dump(exclude={"xids", "health"}) == {
        "uuid": nvml.gpus[0].uuid,
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "pci_bus_id": "00000000:18:00.0",
        "memory_total": 85_520_809_984,
        "memory_used": 553_648_128,
        "utilization_gpu": 3,
        "utilization_memory": 1,
        "temperature": 34,
        "slowdown_temperature": 89,
        "shutdown_temperature": 92,
        "power_draw_watts": 72.4,
        "power_limit_watts": 700.0,
        "clocks": {"sm": 345, "memory": 2619, "graphics": 345},
        "clocks_event_reasons": ["GpuIdle"],
        "ecc": {
            "enabled": True,
            "volatile_corrected": 0,
            "volatile_uncorrected": 0,
            "aggregate_corrected": 0,
            "aggregate_uncorrected": 0,
        },
        "retired_pages": None,
        "remapped_rows": {"correctable": 0, "uncorrectable": 0, "pending": False, "failure": False},
        "unrepairable_memory": False,
        "recovery_action": "None",
        "mig": {"enabled": False, "pending_enabled": False, "instances": []},
        "nvlink": {"links": 18, "active": 18, "inactive_links": []},
        "persistence_mode": True,
        # Hopper remaps rows; page retirement is the pre-Ampere mechanism.
        "unsupported": ["retiredPages"],
    }


def test_counters_thresholds_and_throttle_bits_are_decoded(nvml: SimulatedNVML) -> None:
    nvml.gpus[1].ecc = SimEcc(
        volatile_corrected=7,
        volatile_uncorrected=1,
        aggregate_corrected=70,
        aggregate_uncorrected=2,
    )
    nvml.gpus[1].remapped_rows = SimRemappedRows(correctable=3, uncorrectable=1, pending=True)
    nvml.gpus[1].clocks_event_reasons = ["SwPowerCap", "HwThermalSlowdown"]
    nvml.gpus[1].recovery_action = "DRAIN_AND_RESET"
    nvml.gpus[1].nvlinks = [True] * 16 + [False, False]

    read = gpu(started(nvml), 1)

    assert read.ecc == models.EccCounts(
        enabled=True,
        volatile_corrected=7,
        volatile_uncorrected=1,
        aggregate_corrected=70,
        aggregate_uncorrected=2,
    )
    assert read.remapped_rows == models.RemappedRows(
        correctable=3, uncorrectable=1, pending=True, failure=False
    )
    assert read.clocks_event_reasons == ["SwPowerCap", "HwThermalSlowdown"]
    assert read.recovery_action == "DrainAndReset"
    assert read.nvlink == models.NVLink(links=18, active=16, inactive_links=[16, 17])


def test_a_pre_ampere_gpu_reports_retired_pages_not_remapped_rows(nvml: SimulatedNVML) -> None:
    nvml.gpus[:] = [
        sim_gpu(
            0,
            name="Tesla T4",
            architecture="TURING",
            retired_pages=SimRetiredPages(single_bit_ecc=2, double_bit_ecc=1, pending=True),
        )
    ]
    read = gpu(started(nvml), 0)
    assert read.retired_pages == models.RetiredPages(
        single_bit_ecc=2, double_bit_ecc=1, pending=True
    )
    assert read.remapped_rows is None
    assert "remappedRows" in read.unsupported
    assert "nvmlDeviceGetRemappedRows" not in nvml.calls


@pytest.mark.parametrize(
    "refusal", [pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_NO_PERMISSION]
)
def test_an_unknown_architecture_tries_both_memory_error_mechanisms(
    nvml: SimulatedNVML, refusal: int
) -> None:
    nvml.fail("nvmlDeviceGetArchitecture", refusal)
    nvml.fail("nvmlDeviceGetRetiredPages", pynvml.NVML_ERROR_NOT_SUPPORTED)
    read = gpu(started(nvml), 0)
    assert read.remapped_rows is not None
    assert read.retired_pages is None
    assert read.unsupported == ["retiredPages"]  # the architecture itself is not an API field


def test_mig_mode_and_its_instances(nvml: SimulatedNVML) -> None:
    nvml.gpus[2].mig = SimMig(
        enabled=True,
        pending_enabled=True,
        devices={  # slots 1 and 2 are empty: NotFound
            0: SimMigDevice(uuid="MIG-aaaa", gpu_instance_id=7),
            3: SimMigDevice(uuid="MIG-bbbb", gpu_instance_id=10),
        },
    )
    nvml.fail("nvmlDeviceGetUtilizationRates", pynvml.NVML_ERROR_NOT_SUPPORTED, gpu=2)

    read = gpu(started(nvml), 2)

    assert read.mig.enabled is True
    assert read.mig.pending_enabled is True
    assert read.mig.instances == [
        models.MigInstance(
            uuid="MIG-aaaa",
            gpu_instance_id=7,
            compute_instance_id=0,
            profile="1g.10gb",
            memory_total=10_468_982_784,
        ),
        models.MigInstance(
            uuid="MIG-bbbb",
            gpu_instance_id=10,
            compute_instance_id=0,
            profile="1g.10gb",
            memory_total=10_468_982_784,
        ),
    ]
    assert read.utilization_gpu is None
    assert {"utilizationGpu", "utilizationMemory"} <= set(read.unsupported)


def test_old_drivers_fall_back_to_the_deprecated_temperature_call(nvml: SimulatedNVML) -> None:
    nvml.fail("nvmlDeviceGetTemperatureV", pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    read = gpu(started(nvml), 0)
    assert read.temperature == 34
    assert "temperature" not in read.unsupported


def test_a_board_without_nvlink_has_no_nvlink_reading(nvml: SimulatedNVML) -> None:
    nvml.fail("nvmlDeviceGetNvLinkState", pynvml.NVML_ERROR_NOT_SUPPORTED, gpu=3)
    read = gpu(started(nvml), 3)
    assert read.nvlink is None
    assert "nvlink" in read.unsupported


def test_links_a_board_does_not_have_are_probed_on_the_first_read_only(
    nvml: SimulatedNVML,
) -> None:
    nvml.gpus[1:] = []
    nvml.gpus[0].nvlinks = [True] * 12  # a board with 12 of NVML's possible links
    backend = started(nvml)
    first = backend.read().devices[0].gpu
    probed = nvml.calls.count("nvmlDeviceGetNvLinkState")
    nvml.gpus[0].nvlinks = [True] * 11 + [False]
    second = backend.read().devices[0].gpu
    assert probed > 12
    assert nvml.calls.count("nvmlDeviceGetNvLinkState") - probed == 12
    assert first.nvlink == models.NVLink(links=12, active=12, inactive_links=[])
    assert second.nvlink == models.NVLink(links=12, active=11, inactive_links=[11])


# --- each NVML error class ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "code", "field", "marker"),
    [
        (
            "nvmlDeviceGetTemperatureV",
            pynvml.NVML_ERROR_NOT_SUPPORTED,
            "temperature",
            "temperature",
        ),
        (
            "nvmlDeviceGetPowerUsage",
            pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
            "power_draw_watts",
            "powerDrawWatts",
        ),
        (
            "nvmlDeviceGetPersistenceMode",
            pynvml.NVML_ERROR_NO_PERMISSION,
            "persistence_mode",
            "persistenceMode (NoPermission)",
        ),
        (
            "nvmlDeviceGetRemappedRows",
            pynvml.NVML_ERROR_CORRUPTED_INFOROM,
            "remapped_rows",
            "remappedRows (CorruptedInforom)",
        ),
        (
            "nvmlDeviceGetEnforcedPowerLimit",
            pynvml.NVML_ERROR_UNKNOWN,
            "power_limit_watts",
            "powerLimitWatts (Unknown)",
        ),
        (
            "nvmlDeviceGetTemperatureThreshold",
            pynvml.NVML_ERROR_TIMEOUT,
            "slowdown_temperature",
            "slowdownTemperature (Timeout)",
        ),
        ("nvmlDeviceGetMigMode", pynvml.NVML_ERROR_NOT_SUPPORTED, "mig", "mig"),
        ("nvmlDeviceGetEccMode", pynvml.NVML_ERROR_NOT_FOUND, "ecc", "ecc.enabled"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("nvml") else None,
)
def test_a_field_nvml_cannot_give_is_null_and_named(
    nvml: SimulatedNVML, function: str, code: int, field: str, marker: str
) -> None:
    nvml.fail(function, code, gpu=1)
    reading = started(nvml).read()
    broken = reading.devices[1].gpu
    assert marker in broken.unsupported
    value = getattr(broken, field)
    assert value in (None, models.Mig()) or getattr(value, "enabled", "x") is None
    assert reading.devices[1].lost is None
    others = [d.gpu for d in reading.devices if d.gpu.index != 1]
    assert all(g.unsupported == ["retiredPages"] for g in others), "other GPUs are unaffected"


def test_the_unrepairable_memory_flag_is_read_where_the_driver_has_it(nvml: SimulatedNVML) -> None:
    """DCGM v4.6.0 MonitorMemUnrepairableFlag reads NVML's nvmlDeviceGetUnrepairableMemoryFlag;
    an older driver lacks the symbol (FunctionNotFound): the field is null and named."""
    nvml.gpus[1].unrepairable_memory = True
    backend = started(nvml)
    assert [gpu(backend, i).unrepairable_memory for i in (0, 1)] == [False, True]
    nvml.driver.missing = ["nvmlDeviceGetUnrepairableMemoryFlag_v1"]
    old = gpu(backend, 1)
    assert old.unrepairable_memory is None
    assert "unrepairableMemory" in old.unsupported


def test_an_unknown_recovery_action_code_is_kept_for_the_verdict(nvml: SimulatedNVML) -> None:
    nvml.gpus[0].recovery_action = 9  # newer than nvidia-ml-py's NVML_GPU_RECOVERY_ACTION_*
    device = started(nvml).read().devices[0]
    assert device.gpu.recovery_action is None
    assert "recoveryAction (code 9)" in device.gpu.unsupported
    assert device.unknown_recovery_action == 9


def test_the_recovery_action_field_reports_its_own_status(nvml: SimulatedNVML) -> None:
    field = f"field:{pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION}"
    nvml.fail(field, pynvml.NVML_ERROR_NOT_SUPPORTED, gpu=0)
    nvml.fail(field, pynvml.NVML_ERROR_INVALID_ARGUMENT, gpu=1)  # a driver older than the field
    nvml.fail(field, pynvml.NVML_ERROR_NO_PERMISSION, gpu=2)
    nvml.gpus[3].recovery_action = 99  # a code newer than this agent
    gpus = [d.gpu for d in started(nvml).read().devices]
    assert [g.recovery_action for g in gpus] == [None, None, None, None]
    assert "recoveryAction" in gpus[0].unsupported
    assert "recoveryAction" in gpus[1].unsupported
    assert "recoveryAction (NoPermission)" in gpus[2].unsupported
    assert "recoveryAction (code 99)" in gpus[3].unsupported


@pytest.mark.parametrize(
    ("code", "lost"),
    [
        (pynvml.NVML_ERROR_GPU_IS_LOST, "GpuIsLost"),
        (pynvml.NVML_ERROR_RESET_REQUIRED, "ResetRequired"),
    ],
)
def test_a_lost_gpu_is_named_and_never_hides_the_others(
    nvml: SimulatedNVML, code: int, lost: str
) -> None:
    backend = started(nvml)
    before = backend.read()
    nvml.fail("nvmlDeviceGetTotalEccErrors", code, gpu=2)  # lost halfway through its reading

    after = backend.read()

    assert [d.lost for d in after.devices] == [None, None, lost, None]
    gone = after.devices[2].gpu
    assert (gone.uuid, gone.name, gone.pci_bus_id) == (
        before.devices[2].gpu.uuid,
        "NVIDIA H100 80GB HBM3",
        "00000000:38:00.0",
    )
    assert gone.temperature is None  # no stale readings for a lost GPU
    assert after.devices[3].gpu.temperature == 34


def test_a_gpu_lost_before_its_handle_is_named_from_an_earlier_read(nvml: SimulatedNVML) -> None:
    backend = started(nvml)
    uuid = backend.read().devices[1].gpu.uuid
    nvml.fail("nvmlDeviceGetHandleByIndex", pynvml.NVML_ERROR_GPU_IS_LOST, gpu=1)
    device = backend.read().devices[1]
    assert (device.lost, device.gpu.uuid) == ("GpuIsLost", uuid)


def test_a_gpu_lost_before_it_was_ever_read_gets_a_placeholder_uuid(nvml: SimulatedNVML) -> None:
    nvml.fail("nvmlDeviceGetHandleByIndex", pynvml.NVML_ERROR_GPU_IS_LOST, gpu=3)
    device = started(nvml).read().devices[3]
    assert (device.lost, device.gpu.uuid) == ("GpuIsLost", "GPU-unknown-index-3")


def test_an_unexpected_failure_makes_only_that_gpu_unreadable(
    nvml: SimulatedNVML, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    simulated = pynvml.nvmlDeviceGetName
    second = address(pynvml.nvmlDeviceGetHandleByIndex(1)) if nvml.initialised else None

    def broken(handle: object) -> str:
        if address(handle) == (second or address(pynvml.nvmlDeviceGetHandleByIndex(1))):
            raise ValueError("a ctypes surprise")
        return str(simulated(handle))

    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", broken)
    backend = started(nvml)
    for _ in range(3):
        devices = backend.read().devices
    assert [d.lost for d in devices] == [None, "Unreadable", None, None]
    assert devices[1].gpu.uuid == "GPU-unknown-index-1"
    failures = [r for r in caplog.records if "reading failed" in r.getMessage()]
    assert len(failures) == 1  # logged once, not on every read


def test_a_handle_nvml_refuses_makes_the_gpu_unreadable(nvml: SimulatedNVML) -> None:
    nvml.fail("nvmlDeviceGetHandleByIndex", pynvml.NVML_ERROR_NO_PERMISSION, gpu=0)
    devices = started(nvml).read().devices
    assert [d.lost for d in devices] == ["Unreadable", None, None, None]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "NVML Shared Library Not Found (LibraryNotFound)"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "Driver Not Loaded (DriverNotLoaded)"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "(LibRmVersionMismatch)"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "Insufficient Permissions (NoPermission)"),
    ],
)
def test_no_usable_nvml_at_init_is_reported_with_nvmls_words(
    nvml: SimulatedNVML, code: int, words: str
) -> None:
    nvml.fail("nvmlInit", code)
    with pytest.raises(NVMLUnavailableError, match=words.replace("(", r"\(").replace(")", r"\)")):
        NVMLBackend().start()


@pytest.mark.parametrize(
    "code",
    [
        pynvml.NVML_ERROR_UNINITIALIZED,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    ],
)
def test_nvml_going_away_mid_read_is_node_wide(nvml: SimulatedNVML, code: int) -> None:
    backend = started(nvml)
    nvml.fail("nvmlDeviceGetMemoryInfo", code, gpu=2)
    with pytest.raises(NVMLUnavailableError):
        backend.read()


def test_a_failing_device_count_means_no_nvml(nvml: SimulatedNVML) -> None:
    backend = started(nvml)
    nvml.fail("nvmlDeviceGetCount", pynvml.NVML_ERROR_UNKNOWN)
    with pytest.raises(NVMLUnavailableError, match="Unknown"):
        backend.read()


def test_a_value_outside_the_schema_is_dropped_and_named(nvml: SimulatedNVML) -> None:
    nvml.gpus[0].utilization.gpu = 250  # a percentage above 100 cannot be real
    read = gpu(started(nvml), 0)
    assert read.utilization_gpu is None
    assert "utilizationGpu (out of bounds)" in read.unsupported
    assert read.utilization_memory == 1


def test_without_a_driver_the_real_library_raises_library_not_found() -> None:
    """No patching: this machine has no NVIDIA driver, so nvidia-ml-py itself fails."""
    backend = NVMLBackend()
    with pytest.raises(NVMLUnavailableError, match="LibraryNotFound"):
        backend.start()
    with pytest.raises(NVMLUnavailableError, match="Uninitialized"):
        backend.read()
    backend.stop()  # safe after a failed start


# --- XID events ---------------------------------------------------------------------------------


def test_xids_arrive_attributed_to_their_gpu(nvml: SimulatedNVML) -> None:
    backend = started(nvml)
    backend.read()
    nvml.xid(2, 79)
    nvml.xid(0, 13)
    assert backend.wait_xids(0.5) == [XidSeen(uuid=nvml.gpus[2].uuid, xid=79)]
    assert backend.wait_xids(0.5) == [XidSeen(uuid=nvml.gpus[0].uuid, xid=13)]
    assert backend.wait_xids(0.5) == []  # NVMLError_Timeout: nothing happened
    assert nvml.calls.count("nvmlDeviceRegisterEvents") == 4


def test_an_xid_from_a_gpu_that_is_now_lost_is_still_attributed(nvml: SimulatedNVML) -> None:
    backend = started(nvml)
    nvml.fail("nvmlDeviceGetUUID", pynvml.NVML_ERROR_GPU_IS_LOST, gpu=1)
    nvml.xid(1, 79)
    assert backend.wait_xids(0.1) == [XidSeen(uuid=nvml.gpus[1].uuid, xid=79)]


def test_a_gpu_without_xid_events_does_not_stop_the_others(nvml: SimulatedNVML) -> None:
    nvml.gpus[1].events = []
    nvml.fail("nvmlDeviceRegisterEvents", pynvml.NVML_ERROR_NO_PERMISSION, gpu=2)
    backend = started(nvml)
    assert nvml.calls.count("nvmlDeviceRegisterEvents") == 3  # 0, 2 (refused) and 3
    nvml.xid(3, 48)
    assert backend.wait_xids(0.1) == [XidSeen(uuid=nvml.gpus[3].uuid, xid=48)]


def test_no_event_set_means_waiting_quietly(nvml: SimulatedNVML) -> None:
    nvml.fail("nvmlEventSetCreate", pynvml.NVML_ERROR_NOT_SUPPORTED)
    backend = started(nvml)
    assert backend.wait_xids(0.01) == []
    assert "nvmlEventSetWait_v2" not in nvml.calls


def test_nvml_going_away_stops_the_event_wait(nvml: SimulatedNVML) -> None:
    backend = started(nvml)
    nvml.fail("nvmlEventSetWait_v2", pynvml.NVML_ERROR_UNINITIALIZED)
    with pytest.raises(NVMLUnavailableError):
        backend.wait_xids(0.1)


def test_stop_frees_the_event_set_and_shuts_nvml_down(nvml: SimulatedNVML) -> None:
    backend = started(nvml)
    assert nvml.initialised == 1
    backend.stop()
    backend.stop()
    assert (nvml.initialised, nvml.event_sets_freed) == (0, 1)


# --- error helpers ------------------------------------------------------------------------------


def test_error_kinds_follow_the_agent_policy() -> None:
    kinds = {
        name: error_kind(pynvml.NVMLError(getattr(pynvml, f"NVML_ERROR_{name}")))
        for name in (
            "NOT_SUPPORTED",
            "FUNCTION_NOT_FOUND",
            "NOT_FOUND",
            "GPU_IS_LOST",
            "RESET_REQUIRED",
            "UNINITIALIZED",
            "LIBRARY_NOT_FOUND",
            "DRIVER_NOT_LOADED",
            "LIB_RM_VERSION_MISMATCH",
            "NO_PERMISSION",
            "TIMEOUT",
            "UNKNOWN",
        )
    }
    assert kinds == {
        "NOT_SUPPORTED": "absent",
        "FUNCTION_NOT_FOUND": "absent",
        "NOT_FOUND": "absent",
        "GPU_IS_LOST": "lost",
        "RESET_REQUIRED": "lost",
        "UNINITIALIZED": "node",
        "LIBRARY_NOT_FOUND": "node",
        "DRIVER_NOT_LOADED": "node",
        "LIB_RM_VERSION_MISMATCH": "node",
        "NO_PERMISSION": "other",
        "TIMEOUT": "other",
        "UNKNOWN": "other",
    }


def test_nvml_errors_are_unhashable_so_none_is_ever_kept_in_a_set() -> None:
    error = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    assert isinstance(error, pynvml.NVMLError_NotSupported)
    with pytest.raises(TypeError, match="unhashable"):
        hash(error)
    assert describe(error) == "NVML: Not Supported (NotSupported)"


def test_mig_instances_nvml_refuses_without_the_monitor_capability(nvml: SimulatedNVML) -> None:
    """Without CAP_SYS_ADMIN and NVIDIA_MIG_MONITOR_DEVICES=all the instance list is refused:
    the GPU is still read, MIG mode reported, and the instances named NoPermission."""
    nvml.mig_monitor = False
    nvml.gpus[0].mig = SimMig(enabled=True, devices={0: SimMigDevice(gpu_instance_id=7)})
    device = started(nvml).read().devices[0]
    read = device.gpu
    assert read.mig.enabled is True
    assert read.mig.instances == []
    assert "mig.instances (NoPermission)" in read.unsupported
    # Field reports: the parent's memory info is refused too (k8s-device-plugin #399, #1683).
    assert (read.memory_total, read.memory_used) == (None, None)
    assert device.refused == ("memoryTotal", "memoryUsed", "mig.instances")
    assert read.temperature == 34
