"""XID events: a thread that waits on the backend's event set, and the bounded log it fills.

The wait uses a short timeout (`nvmlEventSetWait` releases the GIL while it blocks), so
stopping the thread takes at most that long; k8s-device-plugin waits the same way in
`internal/rm/health.go`.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from gpu_inventory.api import models
from gpu_inventory.nodeagent import xid
from gpu_inventory.nodeagent.backend import GPUBackend, NVMLUnavailableError

log = logging.getLogger(__name__)


class XidLog:
    """The most recent XIDs per GPU (at most `per_gpu`, the schema's bound), thread-safe."""

    def __init__(self, per_gpu: int = models.MAX_XIDS) -> None:
        self._per_gpu = per_gpu
        self._lock = threading.Lock()
        self._events: dict[str, collections.deque[models.XidEvent]] = {}

    def record(self, uuid: str, code: int, at: datetime) -> models.XidEvent:
        info = xid.classify(code)
        event = models.XidEvent(xid=code, time=at, class_=info.xid_class, action=info.action)
        with self._lock:
            events = self._events.get(uuid)
            if events is None:
                events = self._events[uuid] = collections.deque(maxlen=self._per_gpu)
            events.append(event)
        return event

    def snapshot(self) -> dict[str, list[models.XidEvent]]:
        with self._lock:
            return {uuid: list(events) for uuid, events in self._events.items()}


class XidWatcher:
    """Moves XID events from the backend into an `XidLog`, in a thread or on demand."""

    def __init__(
        self,
        backend: GPUBackend,
        xids: XidLog,
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
            recorded = self._xids.record(event.uuid, event.xid, now)
            log.warning(
                "XID %d on GPU %s (%s; recommended action: %s)",
                event.xid,
                event.uuid,
                recorded.class_,
                recorded.action,
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
