"""When to write: on a meaningful change or a heartbeat, never more often than a floor.

Pure: no I/O; the caller passes `now`. Live numbers (utilization, power, clocks, throttle
reasons) never cause a write: time series belong in Prometheus (dcgm-exporter), not in etcd.
Memory used and temperature count only when they move by more than a deadband from the value
last written, so slow drift is written eventually and jitter never is.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any, Final

from gpu_inventory.api import models
from gpu_inventory.nodeagent.status import NodeReport

# Fields that change with load; see the module docstring.
_LIVE: Final = frozenset(
    {
        "memory_used",
        "temperature",
        "utilization_gpu",
        "utilization_memory",
        "power_draw_watts",
        "clocks",
        "clocks_event_reasons",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class ReportPolicy:
    """Write pacing. Times in seconds."""

    write_floor_seconds: float = 10.0
    """Minimum time between two writes, however much changes (default 10)."""
    heartbeat_seconds: float = 60.0
    """A write at least this often even when nothing changed, so the operator can tell a
    live agent from a dead one (default 60; must not be below the floor)."""
    memory_deadband_bytes: int = 256 * 2**20
    """Memory used must move this much from the value last written to count (256 MiB)."""
    temperature_deadband_celsius: int = 5
    """Temperature must move this much from the value last written to count (5 C)."""
    retry_initial_seconds: float = 5.0
    """First wait after a failed write; doubles per failure (default 5)."""
    retry_max_seconds: float = 300.0
    """Longest wait between failed writes (default 300)."""

    def __post_init__(self) -> None:
        # The messages name the options as `gpu-inventory-agent` takes them.
        if self.write_floor_seconds <= 0:
            raise ValueError(f"--write-floor must be > 0 s, got {self.write_floor_seconds}")
        if self.heartbeat_seconds < self.write_floor_seconds:
            raise ValueError(
                f"--heartbeat ({self.heartbeat_seconds} s) must not be shorter than "
                f"--write-floor ({self.write_floor_seconds} s)"
            )
        if self.memory_deadband_bytes < 0 or self.temperature_deadband_celsius < 0:
            raise ValueError("--memory-deadband-mib and --temperature-deadband must be >= 0")
        if not 0 < self.retry_initial_seconds <= self.retry_max_seconds:
            raise ValueError(
                f"need 0 < --retry-initial ({self.retry_initial_seconds}) <= --retry-max "
                f"({self.retry_max_seconds})"
            )


def changes(old: NodeReport, new: NodeReport, policy: ReportPolicy) -> list[str]:
    """What differs meaningfully between two reports, e.g. ["gpus[3].health", "driver"]."""
    found: list[str] = []
    if [g.uuid for g in old.gpus] != [g.uuid for g in new.gpus]:
        found.append("gpu set")
    if old.driver != new.driver:
        found.append("driver")
    if _agent_state(old.agent) != _agent_state(new.agent):
        found.append("agent")
    before = {g.uuid: g for g in old.gpus}
    for gpu in new.gpus:
        previous = before.get(gpu.uuid)
        if previous is not None:
            found.extend(
                f"gpus[{gpu.index}].{name}" for name in _gpu_changes(previous, gpu, policy)
            )
    return found


def _agent_state(agent: models.AgentInfo) -> tuple[Any, ...]:
    return agent.version, agent.pod_name, agent.nvml_available, agent.message, agent.boot_id


def _gpu_changes(old: models.GPU, new: models.GPU, policy: ReportPolicy) -> list[str]:
    names = [
        name
        for name in type(new).model_fields
        if name not in _LIVE and getattr(old, name) != getattr(new, name)
    ]
    if _moved(old.memory_used, new.memory_used, policy.memory_deadband_bytes):
        names.append("memory_used")
    if _moved(old.temperature, new.temperature, policy.temperature_deadband_celsius):
        names.append("temperature")
    return names


def _moved(old: float | None, new: float | None, deadband: float) -> bool:
    if old is None or new is None:
        return (old is None) != (new is None)
    return abs(new - old) >= deadband if deadband else new != old


class Reporter:
    """Remembers what was last written and when, and decides whether to write now."""

    def __init__(self, policy: ReportPolicy = ReportPolicy()) -> None:
        self.policy = policy
        self._last: NodeReport | None = None
        self._last_at: datetime | None = None
        self._retry_at: datetime | None = None
        self._backoff = policy.retry_initial_seconds

    def due(self, report: NodeReport, now: datetime) -> str | None:
        """Why `report` should be written at `now`, or None if it should not."""
        if self._retry_at is not None and now < self._retry_at:
            return None
        if self._last is None or self._last_at is None:
            return "first report"
        elapsed = (now - self._last_at).total_seconds()
        if elapsed < self.policy.write_floor_seconds:
            return None
        changed = changes(self._last, report, self.policy)
        if changed:
            more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
            return f"changed: {', '.join(changed[:6])}{more}"
        if elapsed >= self.policy.heartbeat_seconds:
            return "heartbeat"
        return None

    def written(self, report: NodeReport, now: datetime) -> None:
        self._last, self._last_at = report, now
        self._retry_at = None
        self._backoff = self.policy.retry_initial_seconds

    def failed(self, now: datetime) -> float:
        """Note a failed write; the seconds until the next attempt (exponential backoff)."""
        wait = self._backoff
        self._retry_at = now + timedelta(seconds=wait)
        self._backoff = min(self._backoff * 2, self.policy.retry_max_seconds)
        return wait

    def seconds_until_due(self, report: NodeReport, now: datetime) -> float:
        """How long until `report` (if it stays as it is) or a heartbeat would be written."""
        if self._retry_at is not None and now < self._retry_at:
            return (self._retry_at - now).total_seconds()
        if self._last is None or self._last_at is None:
            return 0.0
        elapsed = (now - self._last_at).total_seconds()
        if changes(self._last, report, self.policy):
            return max(self.policy.write_floor_seconds - elapsed, 0.0)
        return max(self.policy.heartbeat_seconds - elapsed, 0.0)
