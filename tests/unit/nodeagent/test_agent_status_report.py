"""Readings -> the agent's status fields, and the merge patch that carries only those."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpu_inventory.api import models
from gpu_inventory.nodeagent import status
from gpu_inventory.nodeagent.backend import DeviceReading, NodeReading, XidWatch

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DRIVER = models.DriverInfo(driver_version="570.124.06", cuda_version="12.8", nvml_version="12.570")


def device(
    index: int,
    *,
    lost: str | None = None,
    refused: tuple[str, ...] = (),
    xids_unwatched: XidWatch | None = None,
    **fields: object,
) -> DeviceReading:
    gpu = models.GPU.model_validate(
        {"uuid": f"GPU-{index}", "index": index, "name": "NVIDIA H100 80GB HBM3", **fields}
    )
    return DeviceReading(
        gpu,
        lost=lost,  # type: ignore[arg-type]
        refused=refused,
        xids_unwatched=xids_unwatched,
    )


def reading(*devices: DeviceReading) -> NodeReading:
    return NodeReading(driver=DRIVER, devices=devices)


def build(node: NodeReading | None, **kwargs: object) -> status.NodeReport:
    kwargs.setdefault("xids", {})
    return status.build_report(node, now=NOW, **kwargs)  # type: ignore[arg-type]


def test_a_healthy_node() -> None:
    report = build(reading(device(0), device(1)), version="0.1.0", pod_name="agent-x")
    assert report.summary == models.GPUNodeSummary(
        gpus=2, product="NVIDIA-H100-80GB-HBM3", health="Healthy", unhealthy=0
    )
    assert report.agent == models.AgentInfo(
        version="0.1.0", pod_name="agent-x", heartbeat_time=NOW, nvml_available=True, message=""
    )
    assert build(reading(device(0)), boot_id="b-1").agent.boot_id == "b-1"
    assert report.driver == DRIVER
    assert [g.health.status for g in report.gpus] == ["Healthy", "Healthy"]


def test_xids_are_attached_to_their_gpu_and_judged() -> None:
    event = models.XidEvent(xid=79, time=NOW - timedelta(minutes=1), class_="Hardware")
    report = build(reading(device(0), device(1)), xids={"GPU-1": [event]})
    assert report.gpus[0].xids == []
    assert report.gpus[1].xids == [event]
    assert report.gpus[1].health.status == "Unhealthy"
    assert (report.summary.health, report.summary.unhealthy) == ("Unhealthy", 1)


def test_lost_and_vanished_gpus_are_reported_unhealthy() -> None:
    vanished = models.GPU(uuid="GPU-7", index=7, name="NVIDIA H100 80GB HBM3")
    report = build(reading(device(0), device(3, lost="GpuIsLost")), vanished=[vanished])
    assert [(g.index, g.health.status) for g in report.gpus] == [
        (0, "Healthy"),
        (3, "Unhealthy"),
        (7, "Unhealthy"),
    ]
    assert report.summary.gpus == 3
    assert report.summary.unhealthy == 2


def test_without_nvml_no_gpu_is_reported_and_the_reason_is() -> None:
    report = build(None, nvml_message="NVML: Driver Not Loaded (DriverNotLoaded)")
    assert report.gpus == ()
    assert report.agent.nvml_available is False
    assert report.agent.message == "NVML: Driver Not Loaded (DriverNotLoaded)"
    assert report.driver == models.DriverInfo()
    assert report.summary == models.GPUNodeSummary(gpus=0, product="", health="Unknown")


def test_fields_nvml_refused_to_read_are_surfaced_in_the_agent_message() -> None:
    report = build(
        reading(
            device(0, refused=("retiredPages",), unsupported=["retiredPages (NoPermission)"]),
            device(1, refused=("powerDrawWatts",), unsupported=["powerDrawWatts (NoPermission)"]),
            device(2, unsupported=["nvlink"]),
        )
    )
    assert report.agent.message == (
        "GPU 0: no permission to read retiredPages; GPU 1: no permission to read powerDrawWatts"
    )


def test_mig_gpus_nvml_refuses_are_reported_with_what_they_cost() -> None:
    """Without the MIG monitor capability NVML refuses the instance list (and, in the field,
    even the parent's memory info), and reports only the XIDs that affect the whole GPU
    (nvmlEventSetWait_v2): the agent says so for any refusal on a MIG GPU, and how to fix it."""
    mig = {"enabled": True}
    report = build(
        reading(
            device(0, mig=mig, refused=("mig.instances",)),
            device(1, mig=mig, refused=("memoryTotal", "memoryUsed")),
            device(2, mig=mig),
            device(3),
        )
    )
    assert report.agent.message == (
        "MIG on GPU 0, 1: no permission to read memoryTotal, memoryUsed, mig.instances, and XIDs"
        " that affect one instance only are not reported; run the agent in MIG-monitoring mode "
        "(NVIDIA_MIG_MONITOR_DEVICES=all, CAP_SYS_ADMIN; see the README)"
    )
    assert report.agent.nvml_available is True


def test_gpus_whose_xids_are_not_watched_are_named() -> None:
    failing = XidWatch("NoPermission", fault=True)
    report = build(
        reading(
            device(0, xids_unwatched=failing),
            device(1, xids_unwatched=XidWatch("NotSupported", fault=False)),
            device(2, xids_unwatched=failing),
            device(3),
        )
    )
    assert report.agent.message == (
        "GPU 0, 2: XID events cannot be watched (NVML NoPermission); "
        "GPU 1: no XID events (the GPU does not report them)"
    )
    assert [g.health.status for g in report.gpus] == ["Unknown", "Healthy", "Unknown", "Healthy"]


def test_the_most_common_product_names_the_node() -> None:
    report = build(reading(device(0, name="A"), device(1, name="B"), device(2, name="B")))
    assert report.summary.product == "B"


def test_the_patch_carries_only_the_agents_fields() -> None:
    report = build(reading(device(0, temperature=30)), version="0.1.0")
    patch = status.status_patch(report)
    assert set(patch) == {"status"}
    assert set(patch["status"]) == {"summary", "agent", "driver", "gpus"}  # never `kubernetes`
    assert patch["status"]["gpus"][0]["temperature"] == 30
    assert patch["status"]["agent"]["heartbeatTime"] == "2026-11-01T12:00:00Z"


def test_the_patch_nulls_object_fields_that_went_away() -> None:
    """RFC 7386: a null removes a key; an omitted key would leave the old value in place."""
    patch = status.status_patch(build(None, nvml_message="gone"))
    assert patch["status"]["driver"] == {
        "driverVersion": None,
        "cudaVersion": None,
        "nvmlVersion": None,
    }
    assert patch["status"]["gpus"] == []


def test_the_patch_fits_the_api_models() -> None:
    report = build(reading(*(device(i) for i in range(8))))
    models.GPUNodeStatus.model_validate(status.status_patch(report)["status"])


def test_seen_gpus_remember_identities() -> None:
    seen = status.SeenGPUs()
    assert seen.vanished([device(0), device(1)]) == []
    assert [g.uuid for g in seen.vanished([device(0)])] == ["GPU-1"]
    assert seen.vanished([device(0), device(1, lost="GpuIsLost", name="")]) == []
    # A GPU keeps the name it had when it could still be read.
    assert seen.vanished([device(0)])[0].name == "NVIDIA H100 80GB HBM3"


def test_a_placeholder_for_an_unnamed_gpu_never_becomes_a_phantom() -> None:
    seen = status.SeenGPUs()
    unnamed = DeviceReading(models.GPU(uuid="GPU-unknown-index-0", index=0), lost="GpuIsLost")
    assert seen.vanished([unnamed]) == []
    assert seen.vanished([device(0)]) == []  # readable now, under its real UUID


def test_the_product_is_spelled_as_gpu_feature_discovery_labels_it() -> None:
    report = build(reading(device(0, name="NVIDIA H100 80GB HBM3")))
    assert report.summary.product == "NVIDIA-H100-80GB-HBM3"
    assert report.gpus[0].name == "NVIDIA H100 80GB HBM3"  # the GPU keeps NVML's own name


def test_the_summary_always_agrees_with_the_list_it_summarises() -> None:
    """What the GPUNode's CEL rules demand (api/models.py SUMMARY_RULES), for every kind of
    report: NVML up, lost GPUs, vanished ones, and NVML unavailable or released."""
    unhealthy_xid = [models.XidEvent(xid=79, time=NOW)]
    reports = [
        build(
            reading(device(0), device(1, lost="GpuIsLost"), device(2)),
            xids={"GPU-2": unhealthy_xid},
        ),
        build(reading(device(0)), vanished=[models.GPU(uuid="GPU-9", index=9)]),
        build(None, nvml_message="NVML released while the GPU Operator upgrades the driver"),
        build(reading()),
    ]
    for report in reports:
        listed = list(report.gpus)
        assert report.summary.gpus == len(listed)
        assert report.summary.unhealthy == sum(g.health.status == "Unhealthy" for g in listed)
