"""Scenario files drive the simulated NVML, read by the agent's real NVML backend: shipped
scenarios, scripted time, and clear errors for bad files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpu_inventory.nodeagent.backend import NVMLUnavailableError, XidSeen
from gpu_inventory.nodeagent.nvml import NVMLBackend
from gpu_inventory.testing.scenario import (
    ScenarioError,
    Timeline,
    load_scenario,
    scenario_names,
    simulate,
)


class Clock:
    """Seconds since start, moved by the test."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


@pytest.fixture
def node() -> Iterator[NodeFactory]:
    factory = NodeFactory()
    yield factory
    factory.close()


class NodeFactory:
    """Installs one scenario's NVML at a time and hands out the backend reading it."""

    def __init__(self) -> None:
        self.undo: Callable[[], None] = lambda: None
        self.backend = NVMLBackend()

    def __call__(
        self, ref: str | Path, clock: Clock | None = None, seed: str = "node-a"
    ) -> tuple[NVMLBackend, Timeline]:
        self.close()
        _, scenario = load_scenario(ref)
        timeline = simulate(scenario, seed=seed, elapsed=clock or Clock())
        self.undo = timeline.sim.install()
        self.backend = NVMLBackend()
        return self.backend, timeline

    def close(self) -> None:
        self.backend.stop()
        self.undo()


def test_the_shipped_scenarios() -> None:
    assert scenario_names() == [
        "h100-8x-events",
        "h100-8x-mig",
        "no-driver",
        "t4-single",
        "too-many-gpus",
    ]


def test_t4_single_is_one_pre_ampere_gpu_without_mig_or_nvlink(node: NodeFactory) -> None:
    backend, _ = node("t4-single")
    backend.start()
    reading = backend.read()
    (device,) = reading.devices
    gpu = device.gpu
    assert (gpu.name, gpu.memory_total, gpu.temperature) == ("Tesla T4", 16106127360, 29)
    assert gpu.retired_pages is not None
    assert gpu.remapped_rows is None
    assert gpu.recovery_action is None  # R535 predates the field
    assert gpu.nvlink is None
    assert gpu.mig.enabled is False
    assert gpu.unsupported == ["recoveryAction", "mig", "nvlink", "remappedRows"]
    assert reading.driver.driver_version == "535.183.01"
    assert reading.driver.cuda_version == "12.2"


def test_h100_mig_has_two_gpus_with_seven_instances_each(node: NodeFactory) -> None:
    backend, _ = node("h100-8x-mig")
    backend.start()
    gpus = [d.gpu for d in backend.read().devices]
    assert len(gpus) == 8
    assert [g.mig.enabled for g in gpus] == [True, True] + [False] * 6
    profiles = [i.profile for g in gpus for i in g.mig.instances]
    assert profiles == ["1g.10gb"] * 14  # the node advertises 14 nvidia.com/mig-1g.10gb
    uuids = [i.uuid for g in gpus for i in g.mig.instances] + [g.uuid for g in gpus]
    assert len(set(uuids)) == len(uuids)
    assert gpus[0].utilization_gpu is None
    assert "utilizationGpu" in gpus[0].unsupported
    assert gpus[2].utilization_gpu == 0


def test_uuids_are_stable_per_node_and_differ_between_nodes(node: NodeFactory) -> None:
    def uuids(seed: str) -> list[str]:
        backend, _ = node("h100-8x-mig", seed=seed)
        backend.start()
        return [d.gpu.uuid for d in backend.read().devices]

    assert uuids("node-a") == uuids("node-a")
    assert not set(uuids("node-a")) & set(uuids("node-b"))


def test_the_events_scenario_plays_out_on_the_injected_clock(node: NodeFactory) -> None:
    clock = Clock()
    backend, _ = node("h100-8x-events", clock)
    backend.start()
    assert backend.wait_xids(0) == []
    gpu3 = backend.read().devices[3].gpu.uuid

    clock.seconds = 5
    assert backend.read().devices[2].gpu.ecc.volatile_corrected == 12

    clock.seconds = 10
    assert backend.wait_xids(0.5) == [XidSeen(uuid=gpu3, xid=79)]
    assert backend.wait_xids(0) == []  # delivered once
    assert backend.read().devices[3].gpu.recovery_action == "NodeReboot"

    clock.seconds = 12
    device = backend.read().devices[3]
    assert (device.lost, device.gpu.uuid, device.gpu.temperature) == ("GpuIsLost", gpu3, None)

    clock.seconds = 25
    reading = backend.read()
    assert reading.devices[2].gpu.ecc.volatile_corrected == 480
    rows = reading.devices[5].gpu.remapped_rows
    assert rows is not None
    assert rows.pending
    assert [x.xid for x in backend.wait_xids(0.5)] == [63]

    clock.seconds = 40
    assert [d.gpu.index for d in backend.read().devices] == [0, 1, 2, 3, 4, 5, 6]


def test_a_time_jump_applies_every_event_in_order(node: NodeFactory) -> None:
    clock = Clock()
    backend, _ = node("h100-8x-events", clock)
    backend.start()
    clock.seconds = 1000
    assert [x.xid for x in backend.wait_xids(0.5) + backend.wait_xids(0.5)] == [79, 63]
    assert len(backend.read().devices) == 7


def test_no_driver_scenario_has_no_nvml(node: NodeFactory) -> None:
    backend, _ = node("no-driver")
    with pytest.raises(NVMLUnavailableError, match="Driver Not Loaded"):
        backend.start()
    with pytest.raises(NVMLUnavailableError):
        backend.read()


def test_nvml_can_go_away_and_come_back(node: NodeFactory, tmp_path: Path) -> None:
    path = tmp_path / "flaky.yaml"
    path.write_text(
        "gpus: [{name: Tesla T4}]\n"
        "events:\n  - {at: 10, nvml: DriverNotLoaded}\n  - {at: 20, nvml: ok}\n"
    )
    clock = Clock()
    backend, _ = node(path, clock)
    backend.start()
    assert len(backend.read().devices) == 1
    clock.seconds = 10
    with pytest.raises(NVMLUnavailableError):
        backend.read()
    backend.stop()
    clock.seconds = 20
    backend.start()
    assert len(backend.read().devices) == 1


def test_too_many_gpus_is_read_as_is(node: NodeFactory) -> None:
    backend, _ = node("too-many-gpus")
    backend.start()
    assert len(backend.read().devices) == 40  # the API server, not the agent, enforces the bound


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
    ("unknown-field", "gpus: [{warp_drive: 1}]\n", "warp_drive"),
    ("unknown-nested", "gpus: [{ecc: {nope: 1}}]\n", "nope"),
    ("unknown-architecture", "gpus: [{architecture: MARS}]\n", "NVML_DEVICE_ARCH_"),
    ("unknown-nvml-error", "nvml: Sleepy\n", "'Sleepy' is not an NVML error"),
    ("unknown-function", "gpus: [{errors: {nvmlFoo: NotSupported}}]\n", "'nvmlFoo'"),
    (
        "event-unknown-nested",
        "gpus: [{}]\nevents: [{at: 1, gpu: 0, set: {remapped_rows: {pend: true}}}]\n",
        "event at 1.0s",
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
