"""The agent's loop over the real NVML backend and a simulated NVML, with a recording sink;
time is the test's (one clock for the agent and the scenario)."""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gpu_inventory.nodeagent.agent import Agent
from gpu_inventory.nodeagent.backend import NodeReading, NVMLUnavailableError, XidSeen
from gpu_inventory.nodeagent.config import AgentConfig, ConfigError
from gpu_inventory.nodeagent.health import HealthPolicy
from gpu_inventory.nodeagent.nvml import NVMLBackend
from gpu_inventory.nodeagent.ports import NodeFacts, PreviousUnavailableError, WriteOutcome
from gpu_inventory.nodeagent.reporter import ReportPolicy
from gpu_inventory.testing.scenario import Timeline, load_scenario, simulate
from gpu_inventory.testing.simnvml import SimulatedNVML
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
    """Records the patches; `previous` is what the GPUNode held before this agent started."""

    def __init__(self, previous: Mapping[str, Any] | None = None) -> None:
        self.patches: list[dict[str, Any]] = []
        self.answer = WriteOutcome(ok=True)
        self.earlier = previous
        self.unreadable = ""
        self.lock = threading.Lock()

    def write(self, patch: dict[str, Any]) -> WriteOutcome:
        with self.lock:
            self.patches.append(patch)
        return self.answer

    def previous(self) -> Mapping[str, Any] | None:
        if self.unreadable:
            raise PreviousUnavailableError(self.unreadable)
        return self.earlier

    @property
    def last(self) -> dict[str, Any]:
        with self.lock:
            status: dict[str, Any] = self.patches[-1]["status"]
            return status


class Node:
    """A `NodeView` whose labels, boot ID and XID-clearing annotation the test sets."""

    def __init__(self, boot_id: str = "boot-1") -> None:
        self.labels: dict[str, str] = {}
        self.boot_id = boot_id
        self.cleared_at: datetime | None = None

    def facts(self, now: datetime) -> NodeFacts:
        return NodeFacts(
            labels=dict(self.labels), boot_id=self.boot_id, xids_cleared_at=self.cleared_at
        )


@contextlib.contextmanager
def simulated(scenario: str | Path, clock: Clock, seed: str = "node-a") -> Iterator[Timeline]:
    _, parsed = load_scenario(scenario)
    timeline = simulate(parsed, seed=seed, elapsed=clock.elapsed)
    with timeline.sim.installed():
        yield timeline


def agent_for(clock: Clock, sink: Sink | None = None, **options: Any) -> tuple[Agent, Sink]:
    cluster = {"node": options.pop("node")} if "node" in options else {}
    options.setdefault("report", ReportPolicy(write_floor_seconds=10, heartbeat_seconds=60))
    config = AgentConfig(node_name="node-a", pod_name="agent-abc", **options)
    sink = sink or Sink()
    agent = Agent(config, NVMLBackend(), sink, version="0.1.0", clock=clock.now, **cluster)
    return agent, sink


def turn(agent: Agent, clock: Clock, seconds: float) -> str | None:
    clock.seconds = seconds
    return agent.run_once(clock.now()).reason


def test_readings_are_written_then_only_on_change_or_heartbeat() -> None:
    clock = Clock()
    with simulated("t4-single", clock):
        agent, sink = agent_for(clock)
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
    with simulated("h100-8x-events", clock):
        agent, sink = agent_for(clock)
        turn(agent, clock, 0)
        turn(agent, clock, 8)  # floor not passed since the first write: nothing
        assert turn(agent, clock, 10) is not None  # XID 79 on GPU 3 arrived at 10 s
        gpu3 = sink.last["gpus"][3]
        assert gpu3["health"]["status"] == "Unhealthy"
        assert gpu3["recoveryAction"] == "NodeReboot"
        assert gpu3["xids"] == [
            {
                "xid": 79,
                "time": "2026-11-01T12:00:10Z",
                "firstTime": "2026-11-01T12:00:10Z",
                "count": 1,
                "class": "Hardware",
                "action": "RebootNode",
                "resolution": "RESTART_BM",
                "mnemonic": "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS",
            }
        ]
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


def test_a_burst_of_application_xids_cannot_evict_a_fatal_one() -> None:
    """Memory is per XID code: 40 XID 13/31 from a crashing job after an XID 79 (catalog:
    RESTART_BM) leave the 79 in place, and the GPU Unhealthy."""
    clock = Clock()
    with simulated("h100-8x-mig", clock) as timeline:
        agent, sink = agent_for(clock)
        timeline.sim.xid(4, 79)  # before the event set exists: lost, as with NVML
        turn(agent, clock, 0)
        timeline.sim.xid(4, 79)
        for _ in range(20):
            timeline.sim.xid(4, 13)
            timeline.sim.xid(4, 31)
        for seconds in range(1, 60):
            turn(agent, clock, seconds)  # one event per turn, as a slow drain would
    gpu4 = sink.last["gpus"][4]
    assert {x["xid"]: x["count"] for x in gpu4["xids"]} == {13: 20, 31: 20, 79: 1}
    assert gpu4["health"]["status"] == "Unhealthy"
    assert "XID 79 " in gpu4["health"]["reasons"][0]


def test_after_a_restart_the_xids_it_wrote_come_back_before_its_first_write() -> None:
    """NVML does not replay events: a restarted agent takes them back from its GPUNode."""
    clock = Clock()
    node = Node(boot_id="boot-1")
    with simulated("h100-8x-events", clock):
        first, sink = agent_for(clock, node=node)
        for seconds in (0, 10, 20):
            turn(first, clock, seconds)
        written = sink.last
    assert [x["xid"] for x in written["gpus"][3]["xids"]] == [79]
    assert written["agent"]["bootId"] == "boot-1"

    restarted = Clock()  # a new process: its NVML knows nothing of that XID
    with simulated("h100-8x-mig", restarted):  # same node, same GPUs, healthy readings
        second, sink2 = agent_for(restarted, sink=Sink(previous=written), node=node)
        turn(second, restarted, 30)
    first_write = sink2.patches[0]["status"]
    gpu3 = first_write["gpus"][3]
    assert gpu3["uuid"] == written["gpus"][3]["uuid"]
    assert gpu3["xids"] == written["gpus"][3]["xids"]  # count, first and last time kept
    assert gpu3["health"]["status"] == "Unhealthy"
    assert first_write["summary"]["unhealthy"] == 1


def test_restored_xids_keep_the_gpu_unhealthy_after_a_restart() -> None:
    clock = Clock()
    node = Node()
    with simulated("h100-8x-events", clock):
        first, sink = agent_for(clock, node=node)
        for seconds in (0, 10):
            turn(first, clock, seconds)
        written = sink.last
    with simulated("h100-8x-events", Clock()) as timeline:  # before the script's XID fires
        timeline.sim.gpus[3].recovery_action = "NONE"  # the driver says "no action needed"
        second, sink2 = agent_for(clock, sink=Sink(previous=written), node=node)
        turn(second, clock, 11)
    gpu3 = sink2.patches[0]["status"]["gpus"][3]
    assert gpu3["health"]["status"] == "Unhealthy"
    assert [x["xid"] for x in gpu3["xids"]] == [79]


def test_xids_from_an_earlier_boot_are_not_restored() -> None:
    """A node reboot resolves RESTART_BM and resets every GPU: a new boot ID forgets them."""
    clock = Clock()
    with simulated("h100-8x-events", clock):
        first, sink = agent_for(clock, node=Node(boot_id="boot-1"))
        for seconds in (0, 10):
            turn(first, clock, seconds)
    with simulated("h100-8x-mig", Clock(), seed="node-a"):
        second, _ = agent_for(clock, sink=Sink(previous=sink.last), node=Node("boot-2"))
        turn(second, clock, 11)
    assert second.xids.snapshot(clock.now()) == {}


def test_a_gpu_gone_after_a_restart_in_the_same_boot_is_reported_vanished() -> None:
    """GPU 3 took XID 79 and fell off the bus; after a rollout NVML no longer lists it. The
    restarted agent remembers it from its GPUNode (same boot) and reports it Vanished."""
    clock = Clock()
    node = Node(boot_id="boot-1")
    with simulated("h100-8x-events", clock):
        first, sink = agent_for(clock, node=node)
        for seconds in (0, 10):
            turn(first, clock, seconds)
        written = sink.last
    assert written["gpus"][3]["health"]["status"] == "Unhealthy"
    gone = written["gpus"][3]["uuid"]

    with simulated("h100-8x-events", Clock()) as timeline:
        del timeline.sim.gpus[3]  # not enumerated any more
        second, sink2 = agent_for(clock, sink=Sink(previous=written), node=node)
        turn(second, clock, 30)
    status = sink2.patches[0]["status"]
    vanished = next(g for g in status["gpus"] if g["uuid"] == gone)
    assert vanished["index"] == 3
    assert "no longer listed by NVML" in " ".join(vanished["health"]["reasons"])
    assert [x["xid"] for x in vanished["xids"]] == [79]
    assert (status["summary"]["gpus"], status["summary"]["unhealthy"]) == (8, 1)

    with simulated("h100-8x-events", Clock()) as timeline:  # after a reboot: not missed
        del timeline.sim.gpus[3]
        third, sink3 = agent_for(clock, sink=Sink(previous=written), node=Node("boot-2"))
        turn(third, clock, 30)
    assert gone not in [g["uuid"] for g in sink3.patches[0]["status"]["gpus"]]


def test_a_restored_time_from_the_future_counts_one_window_at_most() -> None:
    """A skewed or hostile entry (time 2099) is clamped to the restart: it expires with the
    window instead of never."""
    clock = Clock()
    future = "2099-01-01T00:00:00Z"
    earlier = {
        "agent": {"bootId": "boot-1"},
        "gpus": [
            {
                "uuid": "GPU-x",
                "index": 0,
                "xids": [{"xid": 79, "time": future, "firstTime": future, "count": 1}],
            }
        ],
    }
    with simulated("t4-single", clock):
        agent, _ = agent_for(
            clock,
            sink=Sink(previous=earlier),
            node=Node(),
            health=HealthPolicy(xid_window_seconds=60),
        )
        turn(agent, clock, 0)
        (entry,) = agent.xids.snapshot(clock.now())["GPU-x"]
        assert entry.time == entry.first_time == clock.now()
        clock.seconds = 61
        assert agent.xids.snapshot(clock.now()) == {}


def test_xids_cleared_by_hand_stay_forgotten_across_a_restart() -> None:
    """After fixing a GPU by hand (a reset the agent cannot see) an admin annotates the Node;
    every XID last seen before that time is forgotten, by this run and any later one."""
    clock = Clock()
    node = Node()
    with simulated("h100-8x-events", clock):
        first, sink = agent_for(clock, node=node)
        for seconds in (0, 10, 20):
            turn(first, clock, seconds)
        assert [x["xid"] for x in sink.last["gpus"][3]["xids"]] == [79]
        node.cleared_at = clock.now()
        turn(first, clock, 30)
        assert sink.last["gpus"][3]["xids"] == []
        written = sink.last
    earlier = copy.deepcopy(written)
    earlier["gpus"][3]["xids"] = [{"xid": 79, "time": "2026-11-01T12:00:10Z"}]  # a stale copy
    with simulated("h100-8x-mig", Clock()):
        second, sink2 = agent_for(clock, sink=Sink(previous=earlier), node=node)
        turn(second, clock, 40)
    assert sink2.patches[0]["status"]["gpus"][3]["xids"] == []


def test_the_first_write_waits_until_the_earlier_status_can_be_read() -> None:
    clock = Clock()
    with simulated("t4-single", clock):
        agent, sink = agent_for(clock, node=Node())
        sink.unreadable = "HTTP 503 Service Unavailable"
        assert turn(agent, clock, 0) is None
        assert turn(agent, clock, 5) is None
        sink.unreadable = ""
        assert turn(agent, clock, 10) == "first report"


def test_a_malformed_earlier_status_loses_only_its_bad_entries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Restore reads only the agent's own memory, entry by entry: a bad GPU or XID entry is
    skipped and named, and neither the operator's part (here out of this version's bounds) nor
    a bad neighbour blocks the good entries."""
    clock = Clock()
    good = {"xid": 79, "time": "2026-11-01T11:00:00Z", "count": 2}
    earlier = {
        "agent": {"bootId": "boot-1"},
        "kubernetes": {"conditions": {f"Cond{i}": False for i in range(99)}},
        "gpus": [
            {"uuid": "GPU-bad", "index": "first", "xids": [good]},
            {
                "uuid": "GPU-good",
                "index": 1,
                "name": "Tesla T4",
                "temperature": "hot",  # not restored anyway: only identity and XIDs are read
                "xids": [{"xid": 79, "time": "yesterday"}, "lots", good],
            },
        ],
    }
    with simulated("t4-single", clock):
        agent, _ = agent_for(clock, sink=Sink(previous=earlier), node=Node())
        assert turn(agent, clock, 0) == "first report"
    restored = agent.xids.snapshot(clock.now())
    assert [(e.xid, e.count) for e in restored["GPU-good"]] == [(79, 2)]
    assert "GPU-bad" not in restored
    skipped = [r.getMessage() for r in caplog.records if "not restored" in r.getMessage()]
    assert [m.split("not restored: ")[1].split(":")[0] for m in skipped] == [
        "gpus[0]",
        "gpus[1].xids[0]",
        "gpus[1].xids[1]",
    ]


def test_no_nvml_is_reported_and_init_is_retried_periodically() -> None:
    clock = Clock()
    with simulated("no-driver", clock) as timeline:
        agent, sink = agent_for(clock, nvml_retry_seconds=30)
        for seconds in range(0, 61, 5):
            turn(agent, clock, seconds)
        starts = timeline.sim.calls.count("nvmlInit")
    assert starts == 3  # at 0, 30 and 60 s: not every turn
    assert sink.last["agent"]["nvmlAvailable"] is False
    assert sink.last["agent"]["message"] == "NVML: Driver Not Loaded (DriverNotLoaded)"
    assert sink.last["gpus"] == []
    assert (sink.last["summary"]["gpus"], sink.last["summary"]["unhealthy"]) == (0, 0)
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
    with simulated(path, clock):
        agent, sink = agent_for(clock, nvml_retry_seconds=15)
        for seconds in range(0, 81, 5):
            turn(agent, clock, seconds)
            if seconds == 30:  # the GPU read before is listed, not read (no stale readings)
                assert sink.last["agent"]["nvmlAvailable"] is False
                (listed,) = sink.last["gpus"]
                assert listed["name"] == "Tesla T4"
                assert "temperature" not in listed
                assert listed["health"]["status"] == "Unknown"
                assert sink.last["driver"]["driverVersion"] == "570.124.06"  # last read
    assert sink.last["agent"]["nvmlAvailable"] is True
    assert len(sink.last["gpus"]) == 1


def test_a_failed_write_is_retried_with_backoff() -> None:
    clock = Clock()
    policy = ReportPolicy(
        write_floor_seconds=10, heartbeat_seconds=60, retry_initial_seconds=5, retry_max_seconds=20
    )
    with simulated("t4-single", clock):
        agent, sink = agent_for(clock, report=policy)
        sink.answer = WriteOutcome(ok=False)
        attempts = [s for s in range(0, 61) if turn(agent, clock, s)]
        assert attempts == [0, 5, 15, 35, 55]  # waits of 5, 10, 20, 20 s
        sink.answer = WriteOutcome(ok=True)
        assert turn(agent, clock, 75) == "first report"
        assert turn(agent, clock, 80) is None


class ExplodingOnce(NVMLBackend):
    """The real backend, whose first read raises an unexpected error."""

    reads = 0

    def read(self) -> NodeReading:
        self.reads += 1
        if self.reads == 1:
            raise RuntimeError("a bug")
        return super().read()


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
    clock = Clock()
    with simulated("t4-single", clock) as timeline:
        sink = Sink()
        config = AgentConfig(
            node_name="node-a",
            read_interval_seconds=0.05,
            event_wait_seconds=0.05,
            report=ReportPolicy(write_floor_seconds=0.05, heartbeat_seconds=0.1),
        )
        agent = Agent(config, ExplodingOnce(), sink)
        with running(agent) as thread:
            eventually(lambda: holds(len(sink.patches) >= 2), timeout=10, what="writes")
            assert thread.is_alive()
        assert not thread.is_alive()
        sim = timeline.sim
    # stop(): the event thread is gone, the event set freed, NVML shut down.
    assert not agent.watcher.alive
    assert (sim.initialised, sim.event_sets_freed, sim.waiting) == (0, 1, 0)


def test_run_records_xids_from_its_event_thread() -> None:
    clock = Clock()
    with simulated("h100-8x-events", clock):
        sink = Sink()
        config = AgentConfig(
            node_name="node-a",
            read_interval_seconds=30,  # only the XID can wake the loop early
            event_wait_seconds=0.05,
            report=ReportPolicy(write_floor_seconds=0.01, heartbeat_seconds=60),
        )
        agent = Agent(config, NVMLBackend(), sink)
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


def test_an_unavailable_backend_in_the_event_thread_ends_that_thread_only(
    nvml: SimulatedNVML,
) -> None:
    class Gone(NVMLBackend):
        def wait_xids(self, timeout: float) -> list[XidSeen]:
            raise NVMLUnavailableError("NVML: Uninitialized")

    agent = Agent(AgentConfig(node_name="n"), Gone(), Sink())
    agent.watcher.start()
    eventually(lambda: holds(not agent.watcher.alive), timeout=10, what="thread end")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"node_name": ""}, "NODE_NAME is not set"),
        ({"read_interval_seconds": 0}, "--interval must be > 0 s, got 0"),
        ({"node_poll_seconds": -1}, "--node-poll must be > 0 s, got -1"),
        ({"health_port": 70000}, "--health-port must be 0..65535"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AgentConfig(**{"node_name": "n", **options})


def test_the_log_names_what_nvml_said(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    clock = Clock()
    with simulated("no-driver", clock):
        agent, _ = agent_for(clock)
        turn(agent, clock, 0)
    assert "NVML unavailable: NVML: Driver Not Loaded (DriverNotLoaded)" in caplog.text
