"""The agent's loop with the fake backend and a recording sink; time is the test's."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gpu_inventory.nodeagent.agent import Agent
from gpu_inventory.nodeagent.backend import NodeReading, NVMLUnavailableError, XidSeen
from gpu_inventory.nodeagent.config import AgentConfig
from gpu_inventory.nodeagent.fake import FakeBackend, load_scenario
from gpu_inventory.nodeagent.reporter import ReportPolicy
from gpu_inventory.nodeagent.writer import WriteOutcome
from gpu_inventory.testing.wait import eventually, holds

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class Clock:
    """One clock for both the agent (wall time) and the scenario (seconds since start)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)

    def elapsed(self) -> float:
        return self.seconds


class Sink:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.answer = WriteOutcome(ok=True)
        self.lock = threading.Lock()

    def write(self, patch: dict[str, Any]) -> WriteOutcome:
        with self.lock:
            self.patches.append(patch)
        return self.answer

    @property
    def last(self) -> dict[str, Any]:
        with self.lock:
            status: dict[str, Any] = self.patches[-1]["status"]
            return status


def agent_for(
    scenario: str | Path, clock: Clock, **options: Any
) -> tuple[Agent, FakeBackend, Sink]:
    _, parsed = load_scenario(scenario)
    backend = FakeBackend(parsed, seed="node-a", elapsed=clock.elapsed)
    options.setdefault("report", ReportPolicy(write_floor_seconds=10, heartbeat_seconds=60))
    config = AgentConfig(node_name="node-a", pod_name="agent-abc", **options)
    sink = Sink()
    return Agent(config, backend, sink, version="0.1.0", clock=clock.now), backend, sink


def turn(agent: Agent, clock: Clock, seconds: float) -> str | None:
    clock.seconds = seconds
    return agent.run_once(clock.now()).reason


def test_readings_are_written_then_only_on_change_or_heartbeat() -> None:
    clock = Clock()
    agent, _, sink = agent_for("t4-single", clock)
    reasons = {s: turn(agent, clock, s) for s in range(0, 121, 5)}
    assert {s: r for s, r in reasons.items() if r} == {
        0: "first report",
        60: "heartbeat",
        120: "heartbeat",
    }
    status = sink.last
    assert status["agent"]["podName"] == "agent-abc"
    assert status["agent"]["version"] == "0.1.0"
    assert status["agent"]["heartbeatTime"] == "2026-11-01T12:02:00Z"
    assert status["gpus"][0]["name"] == "Tesla T4"
    assert status["summary"] == {
        "gpus": 1,
        "product": "Tesla-T4",
        "health": "Healthy",
        "unhealthy": 0,
    }


def test_the_scripted_events_reach_the_status_within_one_floor() -> None:
    clock = Clock()
    agent, _, sink = agent_for("h100-8x-events", clock)
    turn(agent, clock, 0)
    turn(agent, clock, 8)  # floor not passed since the first write: nothing
    assert turn(agent, clock, 10) is not None  # XID 79 on GPU 3 arrived at 10 s
    gpu3 = sink.last["gpus"][3]
    assert gpu3["health"]["status"] == "Unhealthy"
    assert gpu3["recoveryAction"] == "NodeReboot"
    assert [x["xid"] for x in gpu3["xids"]] == [79]
    assert gpu3["xids"][0] == {
        "xid": 79,
        "time": "2026-11-01T12:00:10Z",
        "class": "Hardware",
        "action": "RebootNode",
    }

    for seconds in range(11, 46):
        turn(agent, clock, seconds)
    by_index = {g["index"]: g for g in sink.last["gpus"]}
    assert {i: g["health"]["status"] for i, g in by_index.items()} == {
        0: "Healthy",
        1: "Healthy",
        2: "Healthy",
        3: "Unhealthy",
        4: "Healthy",
        5: "Degraded",
        6: "Healthy",
        7: "Unhealthy",
    }
    assert by_index[2]["ecc"]["volatileCorrected"] == 480
    assert by_index[5]["remappedRows"]["pending"] is True
    assert "no longer listed by NVML" in by_index[7]["health"]["reasons"][0]
    assert "GPU is lost" in by_index[3]["health"]["reasons"][0]
    assert sink.last["summary"]["unhealthy"] == 2
    # Writes were paced: at most one per floor.
    assert len(sink.patches) <= 1 + 45 // 10


def test_no_nvml_is_reported_and_init_is_retried_periodically() -> None:
    clock = Clock()
    agent, backend, sink = agent_for("no-driver", clock, nvml_retry_seconds=30)
    starts = 0
    original = backend.start

    def counting_start() -> None:
        nonlocal starts
        starts += 1
        original()

    backend.start = counting_start  # type: ignore[method-assign]
    for seconds in range(0, 61, 5):
        turn(agent, clock, seconds)
    assert starts == 3  # at 0, 30 and 60 s: not every turn
    assert sink.last["agent"]["nvmlAvailable"] is False
    assert sink.last["agent"]["message"] == "NVML: Driver Not Loaded"
    assert sink.last["gpus"] == []
    assert sink.last["summary"]["health"] == "Unknown"


def test_nvml_that_comes_back_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "flaky.yaml"
    path.write_text(
        "gpus: [{name: Tesla T4}]\n"
        "events:\n"
        "  - {at: 20, nvml: DriverNotLoaded}\n"
        "  - {at: 50, nvml: ok}\n"
    )
    clock = Clock()
    agent, _, sink = agent_for(path, clock, nvml_retry_seconds=15)
    for seconds in range(0, 81, 5):
        turn(agent, clock, seconds)
        if seconds == 30:
            assert sink.last["agent"]["nvmlAvailable"] is False
            assert sink.last["gpus"] == []
    assert sink.last["agent"]["nvmlAvailable"] is True
    assert len(sink.last["gpus"]) == 1


def test_a_failed_write_is_retried_with_backoff() -> None:
    clock = Clock()
    policy = ReportPolicy(
        write_floor_seconds=10, heartbeat_seconds=60, retry_initial_seconds=5, retry_max_seconds=20
    )
    agent, _, sink = agent_for("t4-single", clock, report=policy)
    sink.answer = WriteOutcome(ok=False)
    attempts = [s for s in range(0, 61) if turn(agent, clock, s)]
    assert attempts == [0, 5, 15, 35, 55]  # waits of 5, 10, 20, 20 s
    sink.answer = WriteOutcome(ok=True)
    assert turn(agent, clock, 75) == "first report"
    assert turn(agent, clock, 80) is None


class ExplodingOnce:
    """A backend whose first read raises an unexpected error."""

    def __init__(self, inner: FakeBackend) -> None:
        self.inner = inner
        self.reads = 0

    def start(self) -> None:
        self.inner.start()

    def stop(self) -> None:
        self.inner.stop()

    def read(self) -> NodeReading:
        self.reads += 1
        if self.reads == 1:
            raise RuntimeError("a bug")
        return self.inner.read()

    def wait_xids(self, timeout: float) -> list[XidSeen]:
        return self.inner.wait_xids(timeout)


@contextlib.contextmanager
def running(agent: Agent) -> Iterator[threading.Thread]:
    """`agent.run` on a thread, stopped and joined on the way out, even when the test fails."""
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        agent.wake()
        thread.join(10)


def test_run_survives_a_bad_turn_and_stops_cleanly_on_request() -> None:
    _, scenario = load_scenario("t4-single")
    fake = FakeBackend(scenario)
    backend = ExplodingOnce(fake)
    sink = Sink()
    config = AgentConfig(
        node_name="node-a",
        read_interval_seconds=0.05,
        report=ReportPolicy(write_floor_seconds=0.05, heartbeat_seconds=0.1),
    )
    agent = Agent(config, backend, sink)
    with running(agent) as thread:
        eventually(lambda: holds(len(sink.patches) >= 2), timeout=10, what="writes")
        assert thread.is_alive()
    assert not thread.is_alive()
    assert fake.started is False  # stop() was called: the event thread is gone, NVML shut down
    assert not agent.watcher.alive


def test_run_records_xids_from_its_event_thread() -> None:
    clock = Clock()
    _, scenario = load_scenario("h100-8x-events")
    backend = FakeBackend(scenario, elapsed=clock.elapsed)
    sink = Sink()
    config = AgentConfig(
        node_name="node-a",
        read_interval_seconds=30,  # only the XID can wake the loop early
        event_wait_seconds=0.05,
        report=ReportPolicy(write_floor_seconds=0.01, heartbeat_seconds=60),
    )
    agent = Agent(config, backend, sink)
    with running(agent) as thread:
        eventually(lambda: holds(len(sink.patches) == 1), timeout=10, what="first write")
        eventually(lambda: holds(agent.watcher.alive), timeout=10, what="event thread")
        clock.seconds = 10  # XID 79 on GPU 3
        eventually(
            lambda: holds(sink.last["gpus"][3]["health"]["status"] == "Unhealthy"),
            timeout=10,
            what="the XID to be written",
        )
        assert [x["xid"] for x in sink.last["gpus"][3]["xids"]] == [79]
    assert not thread.is_alive()


def test_an_unavailable_backend_in_the_event_thread_ends_that_thread_only() -> None:
    class Gone(ExplodingOnce):
        def wait_xids(self, timeout: float) -> list[XidSeen]:
            raise NVMLUnavailableError("NVML: Uninitialized")

    _, scenario = load_scenario("t4-single")
    agent = Agent(AgentConfig(node_name="n"), Gone(FakeBackend(scenario)), Sink())
    agent.watcher.start()
    eventually(lambda: holds(not agent.watcher.alive), timeout=10, what="thread end")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"node_name": ""}, "NODE_NAME is not set"),
        ({"backend": "fake"}, "the fake backend needs a scenario"),
        ({"backend": "dcgm"}, "backend must be 'nvml' or 'fake'"),
        ({"read_interval_seconds": 0}, "read_interval_seconds must be > 0"),
        ({"health_port": 70000}, "health port must be 0..65535"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, Any], message: str) -> None:
    from gpu_inventory.nodeagent.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        AgentConfig(**{"node_name": "n", **options})
