"""The XID catalogue and the decoding of NVML's numeric codes."""

from __future__ import annotations

import pynvml
import pytest

from gpu_inventory.nodeagent import decode, xid, xidcatalog

# What each resolution bucket means for the GPU, written out here rather than read from
# xid.RESOLUTIONS, so a wrong entry there fails. The catalog's column glossary: the bucket is the
# action "immediately needed in order to recover the system and get it back into service"
# (IGNORE: none; RESTART_APP: the application only; a reset or a reboot: the GPU is out of
# service until then; the rest ask a person to look first). XID 94 is DCGM's WARN.
WANT_BY_BUCKET: dict[str, tuple[str, str]] = {
    "IGNORE": ("Healthy", "None"),
    "RESTART_APP": ("Healthy", "RestartApplication"),
    "WORKFLOW_XID_45": ("Healthy", "None"),
    "XID_154": ("Healthy", "None"),
    "RESET_GPU": ("Unhealthy", "ResetGPU"),
    "WORKFLOW_XID_48": ("Unhealthy", "ResetGPU"),
    "WORKFLOW_NVLINK_ERR": ("Unhealthy", "ResetGPU"),
    "RESTART_BM": ("Unhealthy", "RebootNode"),
    "RESTART_VM": ("Unhealthy", "RebootNode"),
    "WORKFLOW_NVLINK5_ERR": ("Degraded", "Investigate"),
    "CHECK_MECHANICALS": ("Degraded", "Investigate"),
    "CHECK_UVM": ("Degraded", "Investigate"),
    "UPDATE_SWFW": ("Degraded", "Investigate"),
    "CONTACT_SUPPORT": ("Degraded", "Investigate"),
    "": ("Degraded", "Investigate"),
}
WANT_BY_CODE: dict[int, str] = {94: "Degraded"}


def test_every_bucket_the_catalog_uses_has_an_expected_meaning() -> None:
    assert {bucket for *_, bucket in xidcatalog.ROWS} == set(WANT_BY_BUCKET)


@pytest.mark.parametrize(
    ("code", "mnemonic", "bucket"),
    [(code, mnemonic, bucket) for code, mnemonic, _, bucket in xidcatalog.ROWS],
    ids=[f"xid-{row[0]}" for row in xidcatalog.ROWS],
)
def test_every_catalog_row_gets_the_verdict_of_its_resolution(
    code: int, mnemonic: str, bucket: str
) -> None:
    info = xid.classify(code)
    want_verdict, want_action = WANT_BY_BUCKET[bucket]
    assert (info.known, info.mnemonic, info.resolution) == (True, mnemonic, bucket)
    assert info.verdict == WANT_BY_CODE.get(code, want_verdict)
    assert info.action == want_action


def test_the_catalog_lists_every_code_once() -> None:
    assert [row[0] for row in xidcatalog.ROWS] == list(range(1, 173))
    assert all(len(row[1]) <= 64 for row in xidcatalog.ROWS)  # fits XidEvent.mnemonic


# Rows as NVIDIA's published catalog prints them (docs.nvidia.com/deploy/xid-errors/
# analyzing-xid-catalog.html): Code, Mnemonic, Resolution Bucket (Immediate Action).
PUBLISHED = [
    (8, "ROBUST_CHANNEL_FIFO_ERROR_IDLE_TIMEOUT", "RESTART_APP"),
    (13, "ROBUST_CHANNEL_GR_EXCEPTION / ROBUST_CHANNEL_GR_ERROR_SW_NOTIFY", "RESTART_APP"),
    (14, "ROBUST_CHANNEL_FAKE_ERROR", "IGNORE"),
    (31, "ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT", "RESTART_APP"),
    (43, "ROBUST_CHANNEL_RESETCHANNEL_VERIF_ERROR", "IGNORE"),
    (45, "ROBUST_CHANNEL_PREEMPTIVE_REMOVAL", "WORKFLOW_XID_45"),
    (46, "ROBUST_CHANNEL_GPU_TIMEOUT_ERROR", "RESET_GPU"),
    (48, "ROBUST_CHANNEL_GPU_ECC_DBE", "WORKFLOW_XID_48"),
    (54, "SILENT_RUNNING_PWR_REDUCED_CLOCKING", "CHECK_MECHANICALS"),
    (62, "PMU_HALT_ERROR", "RESET_GPU"),
    (63, "INFOROM_DRAM_RETIREMENT_EVENT", "IGNORE"),
    (64, "INFOROM_DRAM_RETIREMENT_FAILURE", "RESET_GPU"),
    (74, "NVLINK_ERROR", "WORKFLOW_NVLINK_ERR"),
    (78, "VGPU_START_ERROR", "UPDATE_SWFW"),
    (79, "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS", "RESTART_BM"),
    (92, "EXCESSIVE_SBE_INTERRUPTS", "IGNORE"),
    (94, "ROBUST_CHANNEL_CONTAINED_ERROR", "RESTART_APP"),
    (95, "ROBUST_CHANNEL_UNCONTAINED_ERROR", "RESET_GPU"),
    (109, "ROBUST_CHANNEL_CTXSW_TIMEOUT_ERROR", "RESET_GPU"),
    (119, "GSP_RPC_TIMEOUT", "RESET_GPU"),
    (120, "GSP_ERROR", "RESET_GPU"),
    (121, "C2C_ERROR", "IGNORE"),
    (140, "UNRECOVERABLE_ECC_ERROR_ESCAPE", "RESET_GPU"),
    (144, "NVLINK_SAW_ERROR", "WORKFLOW_NVLINK5_ERR"),
    (151, "ROBUST_CHANNEL_KEY_ROTATION_ERROR", "RESTART_VM"),
    (154, "GPU_RECOVERY_ACTION_CHANGED", "XID_154"),
    (155, "NVLINK_SW_DEFINED_ERROR", "RESET_GPU"),
    (156, "RESOURCE_RETIREMENT_EVENT", "RESET_GPU"),
    (157, "RESOURCE_RETIREMENT_FAILURE", "IGNORE"),
    (159, "ROBUST_CHANNEL_CHI_NON_DATA_ERROR", "CHECK_UVM"),
]


@pytest.mark.parametrize(
    ("code", "mnemonic", "bucket"), PUBLISHED, ids=[f"xid-{c[0]}" for c in PUBLISHED]
)
def test_rows_agree_with_the_published_catalog(code: int, mnemonic: str, bucket: str) -> None:
    info = xid.classify(code)
    assert (info.mnemonic, info.resolution) == (mnemonic, bucket)


def test_dcgms_devastating_xids_agree() -> None:
    """NVIDIA/DCGM modules/health/DcgmHealthWatch.cpp, BuildXidMappings: 48, 74, 79, 95, 119,
    120 and 140 FAIL, 94 WARN."""
    assert {c: xid.classify(c).verdict for c in (48, 74, 79, 95, 119, 120, 140)} == dict.fromkeys(
        (48, 74, 79, 95, 119, 120, 140), "Unhealthy"
    )
    assert xid.classify(94).verdict == "Degraded"


def test_where_the_device_plugins_skip_list_disagrees_the_catalog_wins() -> None:
    """k8s-device-plugin internal/rm/health.go skips 13, 31, 43, 45, 68 and 109 as application
    errors; the catalog agrees for all but 109 (RESET_GPU)."""
    verdicts = {c: xid.classify(c).verdict for c in (13, 31, 43, 45, 68, 109)}
    assert verdicts == {
        13: "Healthy",
        31: "Healthy",
        43: "Healthy",
        45: "Healthy",
        68: "Healthy",
        109: "Unhealthy",
    }


def test_an_unknown_xid_is_degraded_and_named_as_unknown() -> None:
    info = xid.classify(4242)
    assert (info.known, info.verdict, info.xid_class, info.action) == (
        False,
        "Degraded",
        "Unknown",
        "Investigate",
    )


@pytest.mark.parametrize(
    ("code", "xid_class"),
    [
        (79, "Hardware"),
        (48, "Memory"),
        (74, "NVLink"),
        (119, "Driver"),
        (13, "Application"),
        (154, "Informational"),
        (63, "Memory"),  # INFOROM_DRAM_RETIREMENT_EVENT: DRAM
        (94, "Memory"),  # ROBUST_CHANNEL_CONTAINED_ERROR: a contained memory error
        (160, "Informational"),  # CHANNEL_RETIREMENT_EVENT: channels, not memory
        (161, "Informational"),
    ],
)
def test_classes_group_codes_by_the_catalogs_mnemonics(code: int, xid_class: str) -> None:
    assert xid.classify(code).xid_class == xid_class


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
