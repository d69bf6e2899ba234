"""The XID catalogue and the decoding of NVML's numeric codes."""

from __future__ import annotations

import pynvml
import pytest

from gpu_inventory.nodeagent import decode, xid

XIDS = [
    # (case, code, class, action, severity)
    ("graphics-exception-is-the-apps", 13, "Application", "RestartApplication", "Healthy"),
    ("page-fault-is-the-apps", 31, "Application", "RestartApplication", "Healthy"),
    ("stopped-processing-is-the-apps", 43, "Application", "RestartApplication", "Healthy"),
    ("preemptive-cleanup-is-the-apps", 45, "Application", "None", "Healthy"),
    ("video-exception-is-the-apps", 68, "Application", "RestartApplication", "Healthy"),
    ("context-switch-timeout-is-the-apps", 109, "Application", "RestartApplication", "Healthy"),
    ("double-bit-ecc", 48, "Memory", "ResetGPU", "Unhealthy"),
    ("row-remap-recorded", 63, "Memory", "None", "Healthy"),
    ("row-remap-failed", 64, "Memory", "ResetGPU", "Unhealthy"),
    ("contained-ecc", 94, "Memory", "RestartApplication", "Degraded"),
    ("uncontained-ecc", 95, "Memory", "ResetGPU", "Unhealthy"),
    ("nvlink", 74, "NVLink", "ResetGPU", "Unhealthy"),
    ("fallen-off-the-bus", 79, "Hardware", "RebootNode", "Unhealthy"),
    ("gsp-timeout", 119, "Driver", "ResetGPU", "Unhealthy"),
    ("recovery-action-changed", 154, "Informational", "None", "Healthy"),
    ("unknown-is-unhealthy-like-the-device-plugin", 4242, "Unknown", "Investigate", "Unhealthy"),
]


@pytest.mark.parametrize(
    ("code", "xid_class", "action", "severity"), [c[1:] for c in XIDS], ids=[c[0] for c in XIDS]
)
def test_classify(code: int, xid_class: str, action: str, severity: str) -> None:
    info = xid.classify(code)
    assert (info.code, info.xid_class, info.action, info.severity) == (
        code,
        xid_class,
        action,
        severity,
    )


def test_the_application_xids_are_exactly_those_the_device_plugin_ignores() -> None:
    assert {13, 31, 43, 45, 68, 109} == xid.APPLICATION_XIDS  # k8s-device-plugin's list
    assert 79 not in xid.APPLICATION_XIDS
    for code in xid.APPLICATION_XIDS:
        assert xid.classify(code).severity == "Healthy"


def test_every_catalogue_row_is_consistent() -> None:
    for code, info in xid.CATALOGUE.items():
        assert info.code == code
        assert info.summary


def test_clocks_event_reason_bits_match_nvml_and_unknown_bits_are_named() -> None:
    for bit, name in decode.CLOCKS_EVENT_REASONS:
        assert getattr(pynvml, f"nvmlClocksEventReason{name}") == bit
    mask = (
        pynvml.nvmlClocksEventReasonGpuIdle
        | pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown
        | 0x4000
    )
    assert decode.clocks_event_reasons(mask) == ["GpuIdle", "HwPowerBrakeSlowdown", "Unknown0x4000"]
    assert decode.clocks_event_reasons(0) == []


def test_recovery_action_codes_match_nvml() -> None:
    for code, name in decode.RECOVERY_ACTIONS.items():
        constant = {
            "None": "NONE",
            "GpuReset": "GPU_RESET",
            "NodeReboot": "NODE_REBOOT",
            "DrainP2P": "DRAIN_P2P",
            "DrainAndReset": "DRAIN_AND_RESET",
            "RecoverImexDomain": "RECOVER_IMEX_DOMAIN",
            "BusReset": "BUS_RESET",
            "SystemReboot": "SYSTEM_REBOOT",
        }[name]
        assert getattr(pynvml, f"NVML_GPU_RECOVERY_ACTION_{constant}") == code
    assert decode.recovery_action(99) is None


@pytest.mark.parametrize(("code", "text"), [(12040, "12.4"), (12080, "12.8"), (11070, "11.7")])
def test_cuda_version(code: int, text: str) -> None:
    assert decode.cuda_version(code) == text


def test_architecture_decides_rows_or_pages() -> None:
    assert decode.ARCH_AMPERE == pynvml.NVML_DEVICE_ARCH_AMPERE
    assert decode.remaps_rows(pynvml.NVML_DEVICE_ARCH_HOPPER) is True
    assert decode.remaps_rows(pynvml.NVML_DEVICE_ARCH_AMPERE) is True
    assert decode.remaps_rows(pynvml.NVML_DEVICE_ARCH_TURING) is False
    assert decode.remaps_rows(pynvml.NVML_DEVICE_ARCH_UNKNOWN) is None
    assert decode.remaps_rows(None) is None


def test_mig_profile_from_the_device_name() -> None:
    assert decode.mig_profile("NVIDIA H100 80GB HBM3 MIG 1g.10gb") == "1g.10gb"
    assert decode.mig_profile("NVIDIA A100-SXM4-40GB MIG 3g.20gb") == "3g.20gb"
    assert decode.mig_profile("NVIDIA H100 80GB HBM3") == ""
