"""XID events: a thread that waits on the backend's event set and records what it sees.

The wait uses a short timeout (`nvmlEventSetWait` releases the GIL while it blocks), so
stopping the thread takes at most that long; k8s-device-plugin waits the same way in
`internal/rm/health.go`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from gpu_inventory.nodeagent.backend import GPUBackend, NVMLUnavailableError
from gpu_inventory.nodeagent.memory import XidMemory

log = logging.getLogger(__name__)


class XidWatcher:
    """Moves XID events from the backend into the agent's `XidMemory`, in a thread or on demand."""

    def __init__(
        self,
        backend: GPUBackend,
        xids: XidMemory,
        *,
        clock: Callable[[], datetime],
        on_event: Callable[[], None] = lambda: None,
        wait_seconds: float = 0.5,
    ) -> None:
        self._backend = backend
        self._xids = xids
        self._clock = clock
        self._on_event = on_event
        self._wait_seconds = wait_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def drain(self, timeout: float = 0.0, *, now: datetime | None = None) -> None:
        """Wait up to `timeout` for events and record them, stamped `now` (default: the
        clock on arrival)."""
        seen = self._backend.wait_xids(timeout)
        now = now if now is not None else self._clock()
        for event in seen:
            info = self._xids.record(event.uuid, event.xid, now)
            log.warning(
                "XID %d %s on GPU %s: %s (NVIDIA catalog: %s)",
                event.xid,
                info.mnemonic or "(not in NVIDIA's catalog)",
                event.uuid,
                info.guidance,
                info.resolution or "no resolution",
            )
        if seen:
            self._on_event()

    def start(self) -> None:
        if self.alive:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="xid-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; returns once it has left the backend's wait."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the XID event thread did not stop within %.1fs", timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain(self._wait_seconds)
            except NVMLUnavailableError as error:
                log.warning("XID events stopped: %s", error)
                return  # the main loop sees NVML gone on its next read and restarts us
            except Exception:
                log.exception("XID event wait failed; retrying")
                self._stop.wait(self._wait_seconds)
