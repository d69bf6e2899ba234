"""The agent's loop: read -> assess -> maybe write, with NVML retried and XIDs on a thread.

`run_once(now)` is one turn and does no waiting, so tests drive it with their own clock;
`run(stop)` turns it until `stop` is set. Observe and report only: nothing here cordons,
drains or resets anything.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from gpu_inventory.nodeagent import status
from gpu_inventory.nodeagent.backend import GPUBackend, NodeReading, NVMLUnavailableError
from gpu_inventory.nodeagent.config import AgentConfig
from gpu_inventory.nodeagent.events import XidLog, XidWatcher
from gpu_inventory.nodeagent.healthz import Liveness
from gpu_inventory.nodeagent.reporter import Reporter
from gpu_inventory.nodeagent.writer import WriteOutcome

log = logging.getLogger(__name__)


class StatusSink(Protocol):
    """Where reports go: `writer.GPUNodeWriter`, or a recorder in tests."""

    def write(self, patch: dict[str, object]) -> WriteOutcome: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Turn:
    """What one turn did: the report, and why it was written (None: not due)."""

    report: status.NodeReport
    reason: str | None


def utcnow() -> datetime:
    return datetime.now(UTC)


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        backend: GPUBackend,
        sink: StatusSink,
        *,
        version: str = "",
        clock: Callable[[], datetime] = utcnow,
        liveness: Liveness | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.sink = sink
        self.version = version
        self.clock = clock
        self.liveness = liveness
        self.reporter = Reporter(config.report)
        self.xids = XidLog()
        self._wake = threading.Event()
        self.watcher = XidWatcher(
            backend,
            self.xids,
            clock=clock,
            on_event=self._wake.set,
            wait_seconds=config.event_wait_seconds,
        )
        self._seen = status.SeenGPUs()
        self._threaded = False
        self._nvml_up = False
        self._nvml_message = ""
        self._next_init: datetime | None = None

    # --- one turn -------------------------------------------------------------------------------

    def run_once(self, now: datetime) -> Turn:
        reading = self._read(now)
        report = status.build_report(
            reading,
            now=now,
            xids=self.xids.snapshot(),
            vanished=self._seen.vanished(reading.devices) if reading is not None else (),
            nvml_message=self._nvml_message,
            version=self.version,
            pod_name=self.config.pod_name,
            policy=self.config.health,
        )
        reason = self.reporter.due(report, now)
        if reason is None:
            return Turn(report, None)
        log.info("writing GPUNode/%s status (%s)", self.config.node_name, reason)
        outcome = self.sink.write(status.status_patch(report))
        if outcome.ok:
            self.reporter.written(report, now)
        else:
            wait = self.reporter.failed(now)
            log.warning("status write failed; next attempt in %.1fs", wait)
        return Turn(report, reason)

    def _read(self, now: datetime) -> NodeReading | None:
        if not self._ensure_nvml(now):
            return None
        try:
            if not self._threaded:
                self.watcher.drain(0.0, now=now)
            elif not self.watcher.alive:
                self.watcher.start()
            return self.backend.read()
        except NVMLUnavailableError as error:
            log.warning("NVML went away: %s", error)
            self._nvml_down(now, str(error))
            return None

    def _ensure_nvml(self, now: datetime) -> bool:
        if self._nvml_up:
            return True
        if self._next_init is not None and now < self._next_init:
            return False
        try:
            self.backend.start()
        except NVMLUnavailableError as error:
            if str(error) != self._nvml_message:
                log.warning(
                    "NVML unavailable: %s; retrying every %.0fs",
                    error,
                    self.config.nvml_retry_seconds,
                )
            self._nvml_down(now, str(error))
            return False
        log.info("NVML initialised")  # the XID thread starts with the first read (`_read`)
        self._nvml_up, self._nvml_message, self._next_init = True, "", None
        return True

    def _nvml_down(self, now: datetime, message: str) -> None:
        self.watcher.stop()
        self.backend.stop()
        self._nvml_up = False
        self._nvml_message = message
        self._next_init = now + timedelta(seconds=self.config.nvml_retry_seconds)

    # --- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Turn until `stop` is set; then stop the event thread and shut NVML down."""
        self._threaded = True
        last: status.NodeReport | None = None
        try:
            while not stop.is_set():
                now = self.clock()
                try:
                    last = self.run_once(now).report
                except Exception:  # one bad turn must not end the agent
                    log.exception("agent turn failed")
                if self.liveness is not None:
                    self.liveness.beat()
                self._sleep(stop, self._seconds_to_next_turn(now, last))
        finally:
            self.watcher.stop()
            self.backend.stop()
            self._threaded = False
            log.info("agent stopped")

    def wake(self) -> None:
        """Start the next turn now (e.g. after a signal)."""
        self._wake.set()

    def _seconds_to_next_turn(self, now: datetime, last: status.NodeReport | None) -> float:
        wait = self.config.read_interval_seconds
        if last is not None:
            wait = min(wait, self.reporter.seconds_until_due(last, now))
        if not self._nvml_up and self._next_init is not None:
            wait = min(wait, max((self._next_init - now).total_seconds(), 0.0))
        return max(wait, 0.01)

    def _sleep(self, stop: threading.Event, seconds: float) -> None:
        """Sleep, waking early for an XID, a `wake()` or `stop` (checked every 0.2 s)."""
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._wake.wait(min(left, 0.2)):
                break
        self._wake.clear()
