"""NVML's event set for XID events: registered on every GPU that has them, waited on by the
agent's event thread, and freed only when no wait runs on it.

NVML's rules followed here (NVML API reference, "Event Handling Methods"):
- nvmlDeviceRegisterEvents: "If function reports NVML_ERROR_UNKNOWN, event set is in undefined
  state and should be freed"; events before registration are not recorded.
- nvmlEventSetFree must not race a nvmlEventSetWait on the same set: one lock covers every use.

Where XIDs cannot be watched the agent must say so rather than read Healthy: a GPU whose
registration failed, or every GPU while waits keep failing, is reported as `xids_unwatched`.
NVIDIA's device plugin is stricter and marks such devices unhealthy (k8s-device-plugin v0.20.0,
internal/rm/health.go: a failed RegisterEvents marks the device unhealthy, any failed wait
marks all devices unhealthy, NotSupported only logs "too old to support healthchecking");
an observer says "unknown" instead. After `REREGISTER_AFTER` failed waits in a row the set is
freed and registered anew, which also drops a GPU that broke it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from typing import Any, Final

import pynvml

from gpu_inventory.nodeagent.backend import NVMLUnavailableError, XidSeen, XidWatch
from gpu_inventory.nodeagent.nvmlbase import describe, error_kind, error_name, handle_key, text

log = logging.getLogger(__name__)

XID_EVENTS: Final = pynvml.nvmlEventTypeXidCriticalError
REREGISTER_AFTER: Final = 5
"""Failed waits in a row (not timeouts) after which the event set is registered anew."""
_NOT_SUPPORTED: Final = XidWatch("NotSupported", fault=False)


class XidEventSet:
    """The XID event set of one NVML session: `open` after nvmlInit, `close` before
    nvmlShutdown; `wait` from one thread at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        """Held for every use of the event set, so `close` never frees it under a wait."""
        self._set: Any = None
        self._stopping = threading.Event()
        self._uuid_by_handle: dict[Hashable, str] = {}
        # Read by the agent's loop while the event thread waits: replaced whole, never mutated.
        self._unwatched: dict[int, XidWatch] = {}
        """GPU index -> why its XIDs are not watched (this NVML session's indices)."""
        self._all_unwatched: XidWatch | None = None
        """Set while no GPU's XIDs are watched (no event set, or waits keep failing)."""
        self._failed_waits = 0
        self._wait_error = ""

    # --- lifecycle ------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the set and register every GPU's XID events (NVML must be initialised)."""
        self._stopping.clear()
        with self._lock:
            self._uuid_by_handle.clear()
            self._failed_waits, self._wait_error = 0, ""
            self._register()

    def close(self) -> None:
        """Make a running wait return (at most its timeout), then free the set."""
        self._stopping.set()
        with self._lock:
            self._free()

    def name(self, handle: Any, uuid: str) -> None:
        """Note a device handle's UUID (the reads learn it), so an event names its GPU even
        when the GPU no longer answers."""
        self._uuid_by_handle[handle_key(handle)] = uuid

    def unwatched(self, index: int) -> XidWatch | None:
        """Why GPU `index`'s XIDs are not watched now; None when they are."""
        return self._all_unwatched or self._unwatched.get(index)

    # --- registration (the lock held) -----------------------------------------------------------

    def _register(self) -> None:
        """Ask NVML for XID events on every GPU that supports them (k8s-device-plugin does the
        same in `internal/rm/health.go`)."""
        unwatched: dict[int, XidWatch] = {}
        try:
            self._set = pynvml.nvmlEventSetCreate()
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as error:
            log.warning("no XID events on any GPU: %s", describe(error))
            self._free()
            absent = error_kind(error) == "absent"
            self._all_unwatched = _NOT_SUPPORTED if absent else XidWatch(error_name(error), True)
            self._unwatched = {}
            return
        self._all_unwatched = None
        registered: list[tuple[Any, int]] = []
        for index in range(count):
            problem = self._register_one(index, registered)
            if problem is not None:
                unwatched[index] = problem
            if self._set is None:  # renewing it failed: nothing is watched
                self._all_unwatched = problem
                break
        self._unwatched = unwatched

    def _register_one(self, index: int, registered: list[tuple[Any, int]]) -> XidWatch | None:
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.name(handle, text(pynvml.nvmlDeviceGetUUID(handle)))
            mask = pynvml.nvmlDeviceGetSupportedEventTypes(handle) & XID_EVENTS
        except pynvml.NVMLError as error:
            log.warning("GPU %d: no XID events: %s", index, describe(error))
            return XidWatch(error_name(error), fault=error_kind(error) != "absent")
        if not mask:
            log.warning("GPU %d: does not report XID events", index)
            return _NOT_SUPPORTED
        try:
            pynvml.nvmlDeviceRegisterEvents(handle, mask, self._set)
        except pynvml.NVMLError as error:
            log.warning("GPU %d: no XID events: %s", index, describe(error))
            if error.value == pynvml.NVML_ERROR_UNKNOWN:
                self._renew(registered)
            return XidWatch(error_name(error), fault=error_kind(error) != "absent")
        registered.append((handle, mask))
        return None

    def _renew(self, registered: list[tuple[Any, int]]) -> None:
        """nvmlDeviceRegisterEvents: "If function reports NVML_ERROR_UNKNOWN, event set is in
        undefined state and should be freed." Free it, and register the GPUs that had been
        registered again on a new one."""
        self._free()
        try:
            self._set = pynvml.nvmlEventSetCreate()
            for handle, mask in registered:
                pynvml.nvmlDeviceRegisterEvents(handle, mask, self._set)
        except pynvml.NVMLError as error:
            log.warning("no XID events: a new event set failed too: %s", describe(error))
            self._free()

    def _free(self) -> None:
        if self._set is not None:
            try:
                pynvml.nvmlEventSetFree(self._set)
            except pynvml.NVMLError as error:
                log.debug("nvmlEventSetFree: %s", describe(error))
            self._set = None

    # --- waiting --------------------------------------------------------------------------------

    def wait(self, timeout: float) -> list[XidSeen]:
        """Block up to `timeout` seconds for one XID event; [] on timeout or without a set."""
        with self._lock:
            if self._set is not None and not self._stopping.is_set():
                return self._wait(timeout)
        self._stopping.wait(timeout)
        return []

    def _wait(self, timeout: float) -> list[XidSeen]:
        try:
            data = pynvml.nvmlEventSetWait(self._set, max(int(timeout * 1000), 0))
        except pynvml.NVMLError as error:
            if error_kind(error) == "node":
                raise NVMLUnavailableError(describe(error)) from error
            if error.value != pynvml.NVML_ERROR_TIMEOUT:
                self._wait_failed(error)
                self._stopping.wait(timeout)  # do not spin on a failing wait
                return []
            self._wait_worked()
            return []
        self._wait_worked()
        if not data.eventType & XID_EVENTS:
            return []
        uuid = self._uuid_for(data.device)
        if uuid is None:
            log.warning("XID %d from a GPU this agent cannot name; dropped", data.eventData)
            return []
        return [XidSeen(uuid=uuid, xid=int(data.eventData))]

    def _wait_failed(self, error: pynvml.NVMLError) -> None:
        said = describe(error)
        if said != self._wait_error:
            log.warning("waiting for XID events failed: %s", said)
            self._wait_error = said
        self._failed_waits += 1
        if self._failed_waits < REREGISTER_AFTER:
            return
        self._all_unwatched = XidWatch(error_name(error), fault=True)
        log.warning("%d failed waits in a row: registering XID events anew", self._failed_waits)
        self._failed_waits = 0
        self._free()
        self._register()
        if self._all_unwatched is None:  # registered again; unwatched until a wait works
            self._all_unwatched = XidWatch(error_name(error), fault=True)

    def _wait_worked(self) -> None:
        if self._wait_error:
            log.info("waiting for XID events works again")
        self._failed_waits, self._wait_error = 0, ""
        if self._all_unwatched is not None and self._all_unwatched.fault and self._set is not None:
            self._all_unwatched = None

    def _uuid_for(self, handle: Any) -> str | None:
        known = self._uuid_by_handle.get(handle_key(handle))
        if known is not None:
            return known
        try:
            return text(pynvml.nvmlDeviceGetUUID(handle))
        except pynvml.NVMLError:
            return None
