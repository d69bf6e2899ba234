"""The agent's memory of XIDs: per GPU, per XID code, how often and when (first and last).

Pure: no I/O (a lock, no clock: callers pass times). One entry per code, never one per event,
so a burst of application XIDs (13, 31 from a crashing job) cannot push a fatal one (79) out of
the bounded list. NVML does not replay events (nvmlDeviceRegisterEvents: "All events that
occurred before this call are not recorded"), so what was seen before a restart comes back only
from the agent's own GPUNode status (`restore`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Final

from gpu_inventory.api import models
from gpu_inventory.nodeagent import xid

_KEEP_FIRST: Final[dict[str, int]] = {"Unhealthy": 0, "Degraded": 1, "Healthy": 2}


@dataclasses.dataclass(slots=True)
class _Seen:
    count: int
    first: datetime
    last: datetime


class XidMemory:
    """XIDs seen in the last `window_seconds`, at most `per_gpu` codes per GPU (the schema's
    bound); when more codes than that are remembered, the least severe and oldest go first."""

    def __init__(self, window_seconds: float, per_gpu: int = models.MAX_XIDS) -> None:
        self._window = timedelta(seconds=window_seconds)
        self._per_gpu = per_gpu
        self._lock = threading.Lock()
        self._seen: dict[str, dict[int, _Seen]] = {}

    def record(self, uuid: str, code: int, at: datetime, count: int = 1) -> xid.XidInfo:
        """Note `count` sightings of `code` on GPU `uuid` at `at`; the catalog's view of it."""
        with self._lock:
            self._merge(uuid, code, _Seen(count, at, at))
        return xid.classify(code)

    def restore(self, gpus: Iterable[models.GPU]) -> int:
        """Merge what an earlier run of this agent wrote (its GPUNode's `gpus[].xids`); the
        number of entries taken. Class and action are recomputed from today's catalog."""
        taken = 0
        with self._lock:
            for gpu in gpus:
                for entry in gpu.xids:
                    first = entry.first_time or entry.time
                    self._merge(gpu.uuid, entry.xid, _Seen(entry.count, first, entry.time))
                    taken += 1
        return taken

    def forget_resets(self) -> int:
        """Drop every code a GPU reset resolves (`xid.cleared_by_gpu_reset`): the driver was
        reloaded, or NVML came back after a release. The number of entries dropped."""
        return self._forget(lambda code, _seen: xid.cleared_by_gpu_reset(code))

    def forget_before(self, moment: datetime) -> int:
        """Drop every entry last seen at or before `moment` (an admin cleared them by hand)."""
        return self._forget(lambda _code, seen: seen.last <= moment)

    def _forget(self, drop: Callable[[int, _Seen], bool]) -> int:
        dropped = 0
        with self._lock:
            for codes in self._seen.values():
                for code in [c for c, seen in codes.items() if drop(c, seen)]:
                    del codes[code]
                    dropped += 1
        return dropped

    def snapshot(self, now: datetime) -> dict[str, list[models.XidEvent]]:
        """Per GPU, the entries still inside the window, in code order."""
        since = now - self._window
        with self._lock:
            for codes in self._seen.values():
                for code in [c for c, seen in codes.items() if seen.last < since]:
                    del codes[code]
            return {
                uuid: [_event(code, seen) for code, seen in sorted(codes.items())]
                for uuid, codes in self._seen.items()
                if codes
            }

    def _merge(self, uuid: str, code: int, new: _Seen) -> None:
        codes = self._seen.setdefault(uuid, {})
        old = codes.get(code)
        if old is not None:
            count = min(old.count + new.count, models.MAX_XID_COUNT)  # saturates
            new = _Seen(count, min(old.first, new.first), max(old.last, new.last))
        codes[code] = new
        if len(codes) > self._per_gpu:
            del codes[min(codes.items(), key=_eviction_order)[0]]


def _eviction_order(item: tuple[int, _Seen]) -> tuple[int, datetime]:
    """Smallest first: the least severe verdict, then the oldest sighting."""
    code, seen = item
    return -_KEEP_FIRST[xid.classify(code).verdict], seen.last


def _event(code: int, seen: _Seen) -> models.XidEvent:
    info = xid.classify(code)
    return models.XidEvent(
        xid=code,
        time=seen.last,
        first_time=seen.first,
        count=seen.count,
        class_=info.xid_class,
        action=info.action,
        resolution=info.resolution,
        mnemonic=info.mnemonic,
    )
