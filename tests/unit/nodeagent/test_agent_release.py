"""Driver upgrades must not stall: while the GPU Operator works on the driver, the agent holds
no NVML (event thread stopped, event set freed, nvmlShutdown) and says why."""

from __future__ import annotations

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

# NVIDIA/k8s-operator-libs pkg/upgrade/consts.go: every UpgradeState*; GetUpgradesInProgress
# counts all but "", upgrade-required and upgrade-done as in progress.
STATES = [
    ("", False),
    ("upgrade-required", False),
    ("cordon-required", True),
    ("wait-for-jobs-required", True),
    ("pod-deletion-required", True),
    ("drain-required", True),
    ("node-maintenance-required", True),
    ("post-maintenance-required", True),
    ("pod-restart-required", True),
    ("validation-required", True),
    ("uncordon-required", True),
    ("upgrade-done", False),
    ("upgrade-failed", True),
]


@pytest.mark.parametrize(("state", "releases"), STATES, ids=[s or "absent" for s, _ in STATES])
def test_the_upgrade_state_label(state: str, releases: bool) -> None:
    labels = {STATE: state} if state else {}
    reason = release.release_reason(labels)
    assert (reason is not None) == releases
    if reason:
        assert f"{STATE}={state}" in reason


@pytest.mark.parametrize(
    ("value", "releases"),
    [
        ("true", False),
        ("false", False),
        ("paused-for-driver-upgrade", True),  # k8s-driver-manager v0.12.0 maybeSetPaused
        ("custom_paused-for-driver-upgrade", True),
        ("paused-for-mig-change", True),  # the MIG manager while it repartitions
    ],
)
def test_the_gpu_client_deploy_label(value: str, releases: bool) -> None:
    assert (release.release_reason({CLIENTS: value}) is not None) == releases


class Node:
    def __init__(self) -> None:
        self.labels: dict[str, str] = {}

    def facts(self, now: datetime) -> NodeFacts:
        return NodeFacts(labels=dict(self.labels), boot_id="b")


class Sink:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def write(self, patch: dict[str, Any]) -> WriteOutcome:
        self.patches.append(patch)
        return WriteOutcome(ok=True)

    def previous(self) -> None:
        return None

    @property
    def last(self) -> dict[str, Any]:
        status: dict[str, Any] = self.patches[-1]["status"]
        return status


def test_an_upgrade_releases_nvml_and_the_agent_takes_it_back_after(nvml: SimulatedNVML) -> None:
    node, sink = Node(), Sink()
    config = AgentConfig(
        node_name="n", report=ReportPolicy(write_floor_seconds=1, heartbeat_seconds=60)
    )
    agent = Agent(config, NVMLBackend(), sink, node=node)
    agent.watcher.start()  # as `run` has it: the event thread waits on the event set
    clock = T0

    def turn(seconds: float) -> None:
        nonlocal clock
        clock = T0 + timedelta(seconds=seconds)
        agent.run_once(clock)

    turn(0)
    nvml.xid(1, 79)
    agent.watcher.drain(0.5)
    turn(5)
    assert sink.last["agent"]["nvmlAvailable"] is True
    assert nvml.initialised == 1

    node.labels[STATE] = "pod-restart-required"
    turn(10)
    assert not agent.watcher.alive  # stopped before the set was freed
    assert (nvml.initialised, nvml.event_sets_freed, nvml.waiting) == (0, 1, 0)
    status = sink.last
    assert status["agent"]["nvmlAvailable"] is False
    assert status["agent"]["message"] == (
        "NVML released while the GPU Operator upgrades the NVIDIA driver on this node "
        f"({STATE}=pod-restart-required)"
    )
    assert (status["summary"]["gpus"], status["summary"]["unhealthy"], status["gpus"]) == (0, 0, [])
    calls = len(nvml.calls)
    turn(20)
    assert len(nvml.calls) == calls  # not one NVML call while released

    node.labels[STATE] = "upgrade-done"
    turn(30)
    assert nvml.initialised == 1
    status = sink.last
    assert status["agent"]["nvmlAvailable"] is True
    assert len(status["gpus"]) == 4
    assert [x["xid"] for x in status["gpus"][1]["xids"]] == [79]  # remembered across it
    assert status["gpus"][1]["health"]["status"] == "Unhealthy"
    agent.watcher.stop()
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
