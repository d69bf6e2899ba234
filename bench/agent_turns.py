"""Node agent cost and write pacing per shipped scenario. Prints figures; asserts nothing.

Drives `Agent.run_once` with a simulated clock over the fake backend (no cluster, no GPU):
one turn every read interval (5 s) for --seconds of simulated time, with the default report
policy (10 s write floor, 60 s heartbeat, deadbands). The sink records each status patch
instead of sending it, so the figures are the agent's own work per turn (read, assess, build
the report, decide, serialise the patch) and how many writes it would send.

    make bench-agent
    PYTHONSAFEPATH=1 .venv/bin/python bench/agent_turns.py --seconds 1000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime, timedelta

from gpu_inventory.nodeagent.agent import Agent
from gpu_inventory.nodeagent.config import AgentConfig
from gpu_inventory.nodeagent.fake import FakeBackend, load_scenario, scenario_names
from gpu_inventory.nodeagent.writer import WriteOutcome

SCENARIOS = ("t4-single", "h100-8x-mig", "h100-8x-events")


class RecordingSink:
    """Counts the patches the agent would send, and their JSON size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def write(self, patch: dict[str, object]) -> WriteOutcome:
        self.sizes.append(len(json.dumps(patch, separators=(",", ":"))))
        return WriteOutcome(ok=True)


def run(scenario_name: str, seconds: int) -> str:
    _, scenario = load_scenario(scenario_name)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    elapsed = 0.0
    backend = FakeBackend(scenario, seed="bench", elapsed=lambda: elapsed)
    config = AgentConfig(node_name="bench", backend="fake", scenario=scenario_name)
    sink = RecordingSink()
    agent = Agent(
        config, backend, sink, version="bench", clock=lambda: start + timedelta(seconds=elapsed)
    )
    step = config.read_interval_seconds
    turn_ms: list[float] = []
    while elapsed <= seconds:
        began = time.perf_counter()
        agent.run_once(start + timedelta(seconds=elapsed))
        turn_ms.append((time.perf_counter() - began) * 1000)
        elapsed += step
    cuts = statistics.quantiles(turn_ms, n=100, method="inclusive")
    return (
        f"  {scenario_name:<16} {len(sink.sizes):4d} writes in {seconds} s   turn p50 "
        f"{statistics.median(turn_ms):5.2f} ms  p99 {cuts[98]:5.2f} ms   largest patch "
        f"{max(sink.sizes) / 1024:5.1f} KiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=1000, help="simulated seconds")
    parser.add_argument("--scenario", action="append", choices=scenario_names())
    options = parser.parse_args()
    print(f"agent turns every 5 s for {options.seconds} simulated s (floor 10 s, heartbeat 60 s)")
    for name in options.scenario or SCENARIOS:
        print(run(name, options.seconds))


if __name__ == "__main__":
    main()
