"""Driver upgrades must not stall: while the GPU Operator works on the driver, the agent holds
no NVML (event thread stopped, event set freed, nvmlShutdown) and says why."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpu_inventory.nodeagent import release
from gpu_inventory.nodeagent.agent import Agent
from gpu_inventory.nodeagent.config import AgentConfig
from gpu_inventory.nodeagent.nvml import NVMLBackend
from gpu_inventory.nodeagent.ports import NodeFacts, WriteOutcome
from gpu_inventory.nodeagent.reporter import ReportPolicy
from gpu_inventory.testing.simnvml import SimulatedNVML

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
STATE = "nvidia.com/gpu-driver-upgrade-state"
CLIENTS = "nvidia.com/gpu.deploy.client"

# NVIDIA/k8s-operator-libs pkg/upgrade/consts.go: every UpgradeState*. Only two touch the driver
# (pkg/upgrade/common_manager.go: ProcessPodRestartNodes restarts the driver pod;
# ProcessValidationRequiredNodes notes it may restart again); upgrade-failed may last until a
# person acts, and the agent keeps reporting through it.
STATES = [
    ("", False),
    ("upgrade-required", False),
    ("cordon-required", False),
    ("wait-for-jobs-required", False),
    ("pod-deletion-required", False),
    ("drain-required", False),
    ("node-maintenance-required", False),
    ("post-maintenance-required", False),
    ("pod-restart-required", True),
    ("validation-required", True),
    ("uncordon-required", False),
    ("upgrade-done", False),
    ("upgrade-failed", False),
]


@pytest.mark.parametrize(("state", "releases"), STATES, ids=[s or "absent" for s, _ in STATES])
def test_the_upgrade_state_label(state: str, releases: bool) -> None:
    labels = {STATE: state} if state else {}
    asked = release.release_for(labels)
    assert (asked is not None) == releases
    if asked is not None:
        assert f"{STATE}={state}" in asked.reason
        assert asked.driver  # the driver is replaced: only a new container reads it after


@pytest.mark.parametrize(
    ("value", "releases", "driver"),
    [
        ("true", False, False),
        ("false", False, False),
        ("paused-for-driver-upgrade", True, True),  # k8s-driver-manager v0.12.0 maybeSetPaused
        ("custom_paused-for-driver-upgrade", True, True),
        ("paused-for-mig-change", True, False),  # the MIG manager while it repartitions
    ],
)
def test_the_gpu_client_deploy_label(value: str, releases: bool, driver: bool) -> None:
    asked = release.release_for({CLIENTS: value})
    assert (asked is not None) == releases
    assert (asked is not None and asked.driver) == driver


class Node:
    def __init__(self) -> None:
        self.labels: dict[str, str] = {}

    def facts(self, now: datetime) -> NodeFacts:
        return NodeFacts(labels=dict(self.labels), boot_id="b")


class Sink:
    def __init__(self, previous: dict[str, Any] | None = None) -> None:
        self.patches: list[dict[str, Any]] = []
        self.earlier = previous

    def write(self, patch: dict[str, Any]) -> WriteOutcome:
        self.patches.append(patch)
        return WriteOutcome(ok=True)

    def previous(self) -> dict[str, Any] | None:
        return self.earlier

    @property
    def last(self) -> dict[str, Any]:
        status: dict[str, Any] = self.patches[-1]["status"]
        return status


def agent_over(node: Node, sink: Sink, *, later: timedelta = timedelta(minutes=5)) -> Agent:
    """An agent whose `run` turns at T0 + `later`."""
    config = AgentConfig(
        node_name="n", report=ReportPolicy(write_floor_seconds=1, heartbeat_seconds=60)
    )
    return Agent(config, NVMLBackend(), sink, node=node, clock=lambda: T0 + later)


def test_an_upgrade_releases_nvml_keeps_the_gpus_listed_and_ends_the_process_after(
    nvml: SimulatedNVML,
) -> None:
    """While the GPU Operator replaces the driver the agent holds no NVML and lists the GPUs it
    knows with their XIDs (the only copy), not read. Once the upgrade is over it cannot take NVML
    back in this process (the old library stays loaded: LibRmVersionMismatch), so it writes why
    and `run` returns for a new container."""
    node, sink = Node(), Sink()
    agent = agent_over(node, sink)
    agent.watcher.start()  # as `run` has it: the event thread waits on the event set
    agent.run_once(T0)
    nvml.xid(1, 79)
    nvml.xid(2, 48)
    agent.watcher.drain(0.5)
    agent.watcher.drain(0.5)
    agent.run_once(T0 + timedelta(seconds=5))
    assert sink.last["agent"]["nvmlAvailable"] is True
    assert nvml.initialised == 1

    node.labels[STATE] = "pod-restart-required"
    agent.run_once(T0 + timedelta(seconds=10))
    assert not agent.watcher.alive  # stopped before the set was freed
    assert (nvml.initialised, nvml.event_sets_freed, nvml.waiting) == (0, 1, 0)
    status = sink.last
    assert status["agent"]["nvmlAvailable"] is False
    assert status["agent"]["message"] == (
        "NVML released while the GPU Operator upgrades the NVIDIA driver on this node "
        f"({STATE}=pod-restart-required)"
    )
    assert [g["health"]["status"] for g in status["gpus"]] == [
        "Unknown",
        "Unhealthy",  # XID 79: RESTART_BM, still true
        "Unhealthy",  # XID 48: a reset or reboot clears it; not yet
        "Unknown",
    ]
    assert [x["xid"] for x in status["gpus"][1]["xids"]] == [79]
    assert "temperature" not in status["gpus"][0]  # listed, not read
    assert (status["summary"]["gpus"], status["summary"]["unhealthy"]) == (4, 2)
    assert status["driver"]["driverVersion"] == "570.124.06"  # the last read
    calls = len(nvml.calls)
    nvml.upgrade_driver("580.82.07")
    agent.run_once(T0 + timedelta(seconds=20))
    assert len(nvml.calls) == calls  # not one NVML call while released

    node.labels[STATE] = "upgrade-done"
    stop = threading.Event()
    returned: list[str | None] = []
    thread = threading.Thread(target=lambda: returned.append(agent.run(stop)))
    thread.start()
    thread.join(10)
    stop.set()
    assert not thread.is_alive(), "run must end by itself for a new container"
    (reason,) = returned
    assert reason is not None
    assert "driver upgrade on this node is over" in reason
    assert f"{STATE}=upgrade-done" in reason
    assert "nvmlInit" not in nvml.calls[calls:]  # it would answer LibRmVersionMismatch
    assert sink.last["agent"]["nvmlAvailable"] is False
    assert sink.last["agent"]["message"].endswith("the agent exits for a new container")
    written = sink.last

    # The new container: the NVIDIA runtime mounts the new driver's library.
    nvml.new_process()
    sink2 = Sink(previous=written)
    second = agent_over(node, sink2)
    second.run_once(T0 + timedelta(seconds=40))
    status = sink2.last
    assert status["agent"]["nvmlAvailable"] is True
    assert status["driver"]["driverVersion"] == "580.82.07"
    # The driver reload reset every GPU: XID 48 is resolved; XID 79 needs a reboot.
    assert [[x["xid"] for x in g["xids"]] for g in status["gpus"]] == [[], [79], [], []]
    assert [g["health"]["status"] for g in status["gpus"]].count("Unhealthy") == 1
    second.backend.stop()


def test_a_library_that_no_longer_matches_the_driver_ends_the_process(
    nvml: SimulatedNVML, caplog: pytest.LogCaptureFixture
) -> None:
    """nvmlInit answers LibRmVersionMismatch when the driver was replaced under this container
    (with no upgrade label to warn it): retrying in-process cannot help."""
    node, sink = Node(), Sink()
    agent = agent_over(node, sink)
    agent.run_once(T0)
    nvml.init_error = "DriverNotLoaded"  # the driver is unloaded under the agent...
    agent.run_once(T0 + timedelta(seconds=5))
    nvml.upgrade_driver("580.82.07")  # ...and a new one loaded
    nvml.init_error = None
    assert agent.run(threading.Event()) is not None
    assert "LibRmVersionMismatch" in (agent.restart_reason or "")
    assert sink.last["agent"]["nvmlAvailable"] is False
    assert "does not match the loaded NVIDIA driver" in sink.last["agent"]["message"]
    assert "exiting so that the kubelet starts a new container" in caplog.text
    assert nvml.calls.count("nvmlInit") == 2  # once more, then no retries


def test_a_mig_change_releases_nvml_and_the_agent_takes_it_back_itself(
    nvml: SimulatedNVML,
) -> None:
    """The MIG manager pauses GPU clients while it repartitions; the driver stays, so NVML is
    taken again in-process. Repartitioning resets the GPUs: reset-class XIDs are resolved."""
    node, sink = Node(), Sink()
    agent = agent_over(node, sink)
    agent.run_once(T0)
    nvml.xid(1, 79)
    nvml.xid(2, 48)
    agent.run_once(T0 + timedelta(seconds=5))
    node.labels[CLIENTS] = "paused-for-mig-change"
    agent.run_once(T0 + timedelta(seconds=10))
    assert nvml.initialised == 0
    node.labels[CLIENTS] = "true"
    agent.run_once(T0 + timedelta(seconds=20))
    assert agent.restart_reason is None
    assert nvml.initialised == 1
    assert sink.last["agent"]["nvmlAvailable"] is True
    assert [[x["xid"] for x in g["xids"]] for g in sink.last["gpus"]] == [[], [79], [], []]
    agent.backend.stop()


def test_nvml_is_not_taken_before_the_node_was_read(nvml: SimulatedNVML) -> None:
    class Unread:
        def facts(self, now: datetime) -> None:
            return None

    sink = Sink()
    agent = Agent(AgentConfig(node_name="n"), NVMLBackend(), sink, node=Unread())
    assert agent.run_once(T0).reason is None
    assert nvml.calls.count("nvmlInit") == 0
    assert sink.patches == []
