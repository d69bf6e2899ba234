"""The scenario-driven fake backend: shipped scenarios, scripted time, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_inventory.nodeagent.backend import NVMLUnavailableError, XidSeen
from gpu_inventory.nodeagent.fake import FakeBackend, ScenarioError, load_scenario, scenario_names


class Clock:
    """Seconds since start, moved by the test."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def backend(name: str, clock: Clock | None = None, seed: str = "node-a") -> FakeBackend:
    _, scenario = load_scenario(name)
    return FakeBackend(scenario, seed=seed, elapsed=clock or Clock())


def test_the_shipped_scenarios() -> None:
    assert scenario_names() == [
        "h100-8x-events",
        "h100-8x-mig",
        "no-driver",
        "t4-single",
        "too-many-gpus",
    ]


def test_t4_single_is_one_pre_ampere_gpu_without_mig_or_nvlink() -> None:
    fake = backend("t4-single")
    fake.start()
    reading = fake.read()
    (device,) = reading.devices
    gpu = device.gpu
    assert (gpu.name, gpu.memory_total, gpu.temperature) == ("Tesla T4", 16106127360, 29)
    assert gpu.retired_pages is not None
    assert gpu.remapped_rows is None
    assert gpu.recovery_action is None
    assert gpu.nvlink is None
    assert gpu.mig.enabled is False
    assert gpu.unsupported == ["remappedRows", "recoveryAction", "mig", "nvlink"]
    assert reading.driver.driver_version == "535.183.01"
    assert reading.driver.cuda_version == "12.2"


def test_h100_mig_has_two_gpus_with_seven_instances_each() -> None:
    fake = backend("h100-8x-mig")
    fake.start()
    gpus = [d.gpu for d in fake.read().devices]
    assert len(gpus) == 8
    assert [g.mig.enabled for g in gpus] == [True, True] + [False] * 6
    profiles = [i.profile for g in gpus for i in g.mig.instances]
    assert profiles == ["1g.10gb"] * 14  # the node advertises 14 nvidia.com/mig-1g.10gb
    uuids = [i.uuid for g in gpus for i in g.mig.instances] + [g.uuid for g in gpus]
    assert len(set(uuids)) == len(uuids)
    assert gpus[0].utilization_gpu is None
    assert "utilizationGpu" in gpus[0].unsupported
    assert gpus[2].utilization_gpu == 0


def test_uuids_are_stable_per_node_and_differ_between_nodes() -> None:
    def uuids(seed: str) -> list[str]:
        fake = backend("h100-8x-mig", seed=seed)
        fake.start()
        return [d.gpu.uuid for d in fake.read().devices]

    assert uuids("node-a") == uuids("node-a")
    assert not set(uuids("node-a")) & set(uuids("node-b"))


def test_the_events_scenario_plays_out_on_the_injected_clock() -> None:
    clock = Clock()
    fake = backend("h100-8x-events", clock)
    fake.start()
    assert fake.wait_xids(0) == []
    gpu3 = fake.read().devices[3].gpu.uuid

    clock.seconds = 5
    assert fake.read().devices[2].gpu.ecc.volatile_corrected == 12

    clock.seconds = 10
    assert fake.wait_xids(0) == [XidSeen(uuid=gpu3, xid=79)]
    assert fake.wait_xids(0) == []  # delivered once
    assert fake.read().devices[3].gpu.recovery_action == "NodeReboot"

    clock.seconds = 12
    device = fake.read().devices[3]
    assert (device.lost, device.gpu.uuid, device.gpu.temperature) == ("GpuIsLost", gpu3, None)

    clock.seconds = 25
    reading = fake.read()
    assert reading.devices[2].gpu.ecc.volatile_corrected == 480
    rows = reading.devices[5].gpu.remapped_rows
    assert rows is not None
    assert rows.pending
    assert [x.xid for x in fake.wait_xids(0)] == [63]

    clock.seconds = 40
    assert [d.gpu.index for d in fake.read().devices] == [0, 1, 2, 3, 4, 5, 6]


def test_time_jumps_apply_every_event_in_order() -> None:
    clock = Clock()
    fake = backend("h100-8x-events", clock)
    clock.seconds = 1000
    fake.start()
    assert [x.xid for x in fake.wait_xids(0)] == [79, 63]
    assert len(fake.read().devices) == 7


def test_waiting_for_xids_returns_at_the_timeout_or_on_stop() -> None:
    fake = backend("t4-single")
    fake.start()
    assert fake.wait_xids(0.05) == []
    fake.stop()
    assert fake.wait_xids(30) == []  # returns at once: stopped


def test_no_driver_scenario_has_no_nvml() -> None:
    fake = backend("no-driver")
    with pytest.raises(NVMLUnavailableError, match="Driver Not Loaded"):
        fake.start()
    with pytest.raises(NVMLUnavailableError):
        fake.read()


def test_nvml_can_go_away_and_come_back(tmp_path: Path) -> None:
    path = tmp_path / "flaky.yaml"
    path.write_text(
        "gpus: [{name: Tesla T4}]\n"
        "events:\n"
        "  - {at: 10, nvml: DriverNotLoaded}\n"
        "  - {at: 20, nvml: ok}\n"
    )
    clock = Clock()
    _, scenario = load_scenario(path)
    fake = FakeBackend(scenario, elapsed=clock)
    fake.start()
    assert len(fake.read().devices) == 1
    clock.seconds = 10
    with pytest.raises(NVMLUnavailableError):
        fake.read()
    clock.seconds = 20
    fake.start()
    assert len(fake.read().devices) == 1


def test_too_many_gpus_is_read_as_is() -> None:
    fake = backend("too-many-gpus")
    fake.start()
    assert len(fake.read().devices) == 40  # the API server, not the agent, enforces the bound


def test_a_scenario_by_path_or_name(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("gpus: [{name: Tesla T4, count: 2}]\n")
    assert load_scenario(path)[0] == "mine"
    assert load_scenario(str(path))[0] == "mine"
    assert load_scenario("t4-single")[0] == "t4-single"
    assert load_scenario("t4-single.yaml")[0] == "t4-single"


BAD = [
    ("unknown-name", None, "no such file, and not a shipped scenario (shipped: h100-8x-events"),
    ("not-yaml", "gpus: [", "is not valid YAML"),
    ("not-a-mapping", "- 1\n- 2\n", "the top level must be a mapping"),
    ("unknown-top-level-key", "gpu: []\n", "gpu: Extra inputs are not permitted"),
    ("bad-reading", "gpus: [{temperature: hot}]\n", "temperature"),
    ("unknown-unsupported", "gpus: [{unsupported: [warp_drive]}]\n", "`warp_drive` is not a GPU"),
    ("unknown-reading", "gpus: [{warp_drive: 1}]\n", "`warp_drive` is not a field of GPU"),
    ("unknown-nested", "gpus: [{ecc: {nope: 1}}]\n", "gpu 0.ecc: `nope` is not a field of Ecc"),
    (
        "event-unknown-nested",
        "gpus: [{}]\nevents: [{at: 1, gpu: 0, set: {remapped_rows: {pend: true}}}]\n",
        "event at 1.0s.remapped_rows: `pend` is not a field of RemappedRows",
    ),
    ("uuid-with-count", "gpus: [{count: 2, uuid: GPU-1}]\n", "cannot set `uuid`"),
    ("event-gpu-out-of-range", "gpus: [{}]\nevents: [{at: 1, gpu: 3, xid: 79}]\n", "gpu 3"),
    ("event-bad-path", "gpus: [{}]\nevents: [{at: 1, gpu: 0, set: {ecc.nope: 1}}]\n", "ecc.nope"),
    ("event-bad-value", "gpus: [{}]\nevents: [{at: 1, gpu: 0, set: {temperature: x}}]\n", "temp"),
    ("event-identity", "gpus: [{}]\nevents: [{at: 1, gpu: 0, set: {uuid: x}}]\n", "identity"),
    ("event-without-gpu", "gpus: [{}]\nevents: [{at: 1, xid: 79}]\n", "names no `gpu`"),
    ("negative-time", "gpus: [{}]\nevents: [{at: -1, gpu: 0}]\n", "greater than or equal"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_scenario_fails_at_load_saying_where(
    tmp_path: Path, text: str | None, message: str
) -> None:
    ref: str | Path = "no-such-scenario"
    if text is not None:
        ref = tmp_path / "bad.yaml"
        ref.write_text(text)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(ref)
    assert message in str(raised.value)
    assert "scenario" in str(raised.value)
