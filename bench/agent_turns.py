"""Node agent cost and write pacing per shipped scenario. Prints figures; asserts nothing.

Drives `Agent.run_once` with a simulated clock over the real NVML backend (`nvml.py`) reading a
simulated NVML (`gpu_inventory.testing.simnvml`, installed into `pynvml`; no cluster, no GPU):
one turn every read interval (5 s) for --seconds of simulated time, with the default report
policy (10 s write floor, 60 s heartbeat, deadbands). The sink records each status patch
instead of sending it. Figures per turn: the whole turn, and the agent's own part of it (the
turn minus the time spent inside the simulated NVML calls, which stand in for the driver:
read, assess, build the report, decide, serialise the patch), how many writes it would send,
and the largest patch.

    make bench-agent
    PYTHONSAFEPATH=1 .venv/bin/python bench/agent_turns.py --seconds 1000
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from gpu_inventory.nodeagent.agent import Agent
from gpu_inventory.nodeagent.config import AgentConfig
from gpu_inventory.nodeagent.nvml import NVMLBackend
from gpu_inventory.nodeagent.ports import WriteOutcome
from gpu_inventory.testing.scenario import load_scenario, scenario_names, simulate

SCENARIOS = ("t4-single", "h100-8x-mig", "h100-8x-events")


class RecordingSink:
    """Counts the patches the agent would send, and their JSON size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def write(self, patch: dict[str, Any]) -> WriteOutcome:
        self.sizes.append(len(json.dumps(patch, separators=(",", ":"))))
        return WriteOutcome(ok=True)

    def previous(self) -> Mapping[str, Any] | None:
        return None


def run(scenario_name: str, seconds: int) -> str:
    _, scenario = load_scenario(scenario_name)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    elapsed = 0.0
    timeline = simulate(scenario, seed="bench", elapsed=lambda: elapsed)
    undo = timeline.sim.install()
    try:
        sink = RecordingSink()
        agent = Agent(
            AgentConfig(node_name="bench"),
            NVMLBackend(),
            sink,
            version="bench",
            clock=lambda: start + timedelta(seconds=elapsed),
        )
        step = agent.config.read_interval_seconds
        turn_ms: list[float] = []
        own_ms: list[float] = []
        while elapsed <= seconds:
            in_nvml = timeline.sim.seconds_in_calls
            began = time.perf_counter()
            agent.run_once(start + timedelta(seconds=elapsed))
            took = time.perf_counter() - began
            turn_ms.append(took * 1000)
            own_ms.append((took - (timeline.sim.seconds_in_calls - in_nvml)) * 1000)
            elapsed += step
        agent.backend.stop()
    finally:
        undo()
    return (
        f"  {scenario_name:<16} {len(sink.sizes):4d} writes in {seconds} s   turn p50/p99 "
        f"{_p50_p99(turn_ms)}   agent's own p50/p99 {_p50_p99(own_ms)}   largest patch "
        f"{max(sink.sizes) / 1024:5.1f} KiB"
    )


def _p50_p99(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"{statistics.median(values):5.2f}/{cuts[98]:5.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=1000, help="simulated seconds")
    parser.add_argument("--scenario", action="append", choices=scenario_names())
    options = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the agent's per-XID warnings are not figures
    print(f"agent turns every 5 s for {options.seconds} simulated s (floor 10 s, heartbeat 60 s)")
    for name in options.scenario or SCENARIOS:
        print(run(name, options.seconds))


if __name__ == "__main__":
    main()
