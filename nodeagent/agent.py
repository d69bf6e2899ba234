"""The agent's loop: read -> assess -> maybe write, with NVML retried and XIDs on a thread.

`run_once(now)` is one turn and does no waiting, so tests drive it with their own clock;
`run(stop)` turns it until `stop` is set. Before its first write the agent restores the XIDs it
wrote before a restart (NVML does not replay them); while the GPU Operator works on the driver it
releases NVML (`release.py`), and once a driver upgrade is over, or nvmlInit says this
container's NVML library no longer matches the driver, `run` returns so that the process exits
and the kubelet starts a new container with the driver's current library. Observe and report
only: nothing here cordons, drains or resets.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from gpu_inventory.api import models
from gpu_inventory.nodeagent import release, status
from gpu_inventory.nodeagent.backend import (
    GPUBackend,
    NodeReading,
    NVMLStaleLibraryError,
    NVMLUnavailableError,
)
from gpu_inventory.nodeagent.config import AgentConfig
from gpu_inventory.nodeagent.earlier import read_earlier
from gpu_inventory.nodeagent.events import XidWatcher
from gpu_inventory.nodeagent.healthz import Liveness
from gpu_inventory.nodeagent.memory import XidMemory
from gpu_inventory.nodeagent.ports import (
    XIDS_CLEARED_ANNOTATION,
    NodeFacts,
    NodeView,
    PreviousUnavailableError,
    StatusSink,
)
from gpu_inventory.nodeagent.reporter import Reporter

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Turn:
    """What one turn did: the report, and why it was written (None: not written)."""

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
        node: NodeView | None = None,
        version: str = "",
        clock: Callable[[], datetime] = utcnow,
        liveness: Liveness | None = None,
        boot_id: str = "",
        once: bool = False,
    ) -> None:
        self.config = config
        self.backend = backend
        self.sink = sink
        self.node = node
        self.version = version
        self.clock = clock
        self.liveness = liveness
        self.boot_id = boot_id
        """This machine's boot ID (/proc/sys/kernel/random/boot_id), where the Node has none."""
        self.once = once
        """One turn and exit (`--once`): nothing is retried or written later, so no log line
        promises it."""
        self.reporter = Reporter(config.report)
        self.xids = XidMemory(config.health.xid_window_seconds)
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
        self._restored = False
        self._unrestorable = ""
        self._driver: models.DriverInfo | None = None
        """The driver last read (or restored), written while NVML is unavailable."""
        self._resets_due = False
        """NVML was released: the GPUs may have been reset before it is taken again."""
        self._released_for_driver = False
        self.restart_reason: str | None = None
        """Set when only a new container can read NVML again; `run` then returns."""

    # --- one turn -------------------------------------------------------------------------------

    def run_once(self, now: datetime) -> Turn:
        facts = self.node.facts(now) if self.node is not None else None
        restored = self._restore(facts, now)
        if facts is not None and facts.xids_cleared_at is not None:
            self._clear_by_hand(facts.xids_cleared_at)
        asked = release.release_for(facts.labels) if facts is not None else None
        reading = None
        if self.restart_reason is not None:
            pass  # NVML stays released until the process ends
        elif self.node is not None and facts is None:
            self._release(f"waiting to read Node/{self.config.node_name} before taking NVML")
        elif asked is not None:
            self._release(asked.reason)
            self._resets_due = True
            self._released_for_driver |= asked.driver
        elif self._released_for_driver and facts is not None:
            self._restart(
                "the GPU Operator's driver upgrade on this node is over "
                f"({release.signals(facts.labels)}), and this container still holds the old "
                "driver's NVML library"
            )
        else:
            reading = self._read(now)
        report = status.build_report(
            reading,
            now=now,
            xids=self.xids.snapshot(now),
            vanished=self._seen.vanished(reading.devices) if reading is not None else (),
            remembered=self._seen.known() if reading is None else (),
            last_driver=self._driver,
            nvml_message=self._nvml_message,
            version=self.version,
            pod_name=self.config.pod_name,
            boot_id=self._boot_id(facts),
            policy=self.config.health,
        )
        if not restored:
            return Turn(report, None)  # a first write now would erase what a restore brings
        due = self.reporter.due(report, now)
        if due is None and self.restart_reason is not None:
            due = "the last report before exiting"  # why, for the GPUNode's readers
        if due is None:
            return Turn(report, None)
        if not self.once:
            log.info("GPUNode/%s status due (%s)", self.config.node_name, due)
        outcome = self.sink.write(status.status_patch(report))
        if outcome.ok:
            self.reporter.written(report, now)
        else:
            wait = self.reporter.failed(now)
            log.warning("status write failed; next attempt in %.1fs", wait)
        return Turn(report, due)

    def _read(self, now: datetime) -> NodeReading | None:
        if not self._ensure_nvml(now):
            return None
        try:
            if not self._threaded:
                self.watcher.drain(0.0, now=now)
            elif not self.watcher.alive:
                self.watcher.start()
            reading = self.backend.read()
        except NVMLUnavailableError as error:
            log.warning("NVML went away: %s", error)
            self._nvml_down(now, str(error))
            return None
        self._after_reset(reading.driver)
        return reading

    def _after_reset(self, driver: models.DriverInfo) -> None:
        """Forget the XIDs a GPU reset resolves once the GPUs were surely reset: NVML is back
        after a release, or the driver version changed (a driver reload resets every GPU)."""
        before = self._driver.driver_version if self._driver is not None else None
        now_loaded = driver.driver_version
        changed = bool(before and now_loaded and before != now_loaded)
        if self._resets_due or changed:
            dropped = self.xids.forget_resets()
            if dropped:
                why = f"driver {before} -> {now_loaded}" if changed else "NVML released and back"
                log.info("forgot %d reset-class XID entries (%s)", dropped, why)
        self._resets_due = False
        self._driver = driver

    def _clear_by_hand(self, moment: datetime) -> None:
        dropped = self.xids.forget_before(moment)
        if dropped:
            log.info(
                "forgot %d XID entries last seen at or before %s (%s on Node/%s)",
                dropped,
                moment.isoformat(),
                XIDS_CLEARED_ANNOTATION,
                self.config.node_name,
            )

    def _boot_id(self, facts: NodeFacts | None) -> str:
        return facts.boot_id if facts is not None and facts.boot_id else self.boot_id

    def _ensure_nvml(self, now: datetime) -> bool:
        if self._nvml_up:
            return True
        if self._next_init is not None and now < self._next_init:
            return False
        try:
            self.backend.start()
        except NVMLStaleLibraryError as error:
            self._restart(str(error))
            return False
        except NVMLUnavailableError as error:
            if self.once:
                log.warning("NVML unavailable: %s", error)
            elif str(error) != self._nvml_message:
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
        self._let_go()
        self._nvml_message = message
        self._next_init = now + timedelta(seconds=self.config.nvml_retry_seconds)

    def _release(self, reason: str) -> None:
        """Let go of NVML (event thread stopped, event set freed, nvmlShutdown) while the GPU
        Operator works on the driver; it is taken again on the first turn after."""
        if self._nvml_up or self._nvml_message != reason:
            log.warning("%s", reason)
        self._let_go()
        self._nvml_message = reason
        self._next_init = None  # initialise again as soon as the reason is gone

    def _restart(self, reason: str) -> None:
        """Only a new container can read NVML now (its library is mounted at container
        creation and never unloaded): release it, say why, and end `run`. The kubelet
        recreates the container, and the NVIDIA runtime mounts the driver's current library."""
        if self.restart_reason is None and not self.once:
            log.error("%s: exiting so that the kubelet starts a new container", reason)
        self.restart_reason = reason
        self._let_go()
        self._nvml_message = (
            reason if self.once else f"{reason}; the agent exits for a new container"
        )

    def _let_go(self) -> None:
        self.watcher.stop()
        self.backend.stop()
        self._nvml_up = False

    def _restore(self, facts: NodeFacts | None, now: datetime) -> bool:
        """Before the first write: take back what an earlier run wrote (its XIDs; in the same
        boot also the GPUs it listed, so one NVML no longer lists is reported Vanished).

        False while that cannot be done yet (the GPUNode cannot be read, or the Node not yet):
        writing first would replace the only copy.
        """
        if self._restored:
            return True
        if self.node is not None and facts is None:
            return False
        try:
            previous = self.sink.previous()
        except PreviousUnavailableError as error:
            if str(error) != self._unrestorable:
                log.warning("cannot read this node's GPUNode to restore its XIDs yet: %s", error)
                self._unrestorable = str(error)
            return False
        self._restored = True
        if not previous:
            return True
        earlier = read_earlier(previous, now)
        for skipped in earlier.skipped:
            log.warning("GPUNode/%s: not restored: %s", self.config.node_name, skipped)
        boot, was = self._boot_id(facts), earlier.boot_id
        if boot and was and boot != was:
            log.info(
                "the node rebooted since the last status (boot %s, now %s): XIDs not restored",
                was,
                boot,
            )
            return True
        taken = self.xids.restore(earlier.gpus)
        # Only in the same boot may a GPU the earlier run listed be missed now; with no boot ID
        # to compare, only GPUs that still carry XIDs are kept (they expire with the window).
        same_boot = bool(boot and boot == was)
        self._seen.seed(gpu for gpu in earlier.gpus if same_boot or gpu.xids)
        if earlier.driver.driver_version:
            self._driver = earlier.driver
        if taken:
            log.info("restored %d XID entries from GPUNode/%s", taken, self.config.node_name)
        return True

    # --- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> str | None:
        """Turn until `stop` is set, or until only a new container can read NVML (then the
        reason is returned); either way the event thread is stopped and NVML shut down."""
        self._threaded = True
        last: status.NodeReport | None = None
        try:
            while not stop.is_set() and self.restart_reason is None:
                now = self.clock()
                try:
                    last = self.run_once(now).report
                except Exception:  # one bad turn must not end the agent
                    log.exception("agent turn failed")
                if self.liveness is not None:
                    self.liveness.beat()
                if self.restart_reason is None:
                    self._sleep(stop, self._seconds_to_next_turn(now, last))
        finally:
            self._let_go()
            self._threaded = False
            log.info("agent stopped")
        return self.restart_reason

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
