"""What the operator's two writers share: their dependencies, their loop, and how they wait out
an API server that does not answer.

Each writer (`inventory_writer`, `gpunode_writer`) is one asyncio task: wait until woken (or
until something falls due), coalesce for one write window, run a pass. A pass that finds the
API server away raises `UnavailableError`, and the loop backs off (0.5 s doubling to
`backoff_max`); a refusal is the writers' own business (long per-operation backoff).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from gpu_inventory.api.constants import Reason
from gpu_inventory.operator import verdicts
from gpu_inventory.operator.backoff import Backoff
from gpu_inventory.operator.config import OperatorConfig
from gpu_inventory.operator.kubeapi import ApiError, FencedError, UnavailableError
from gpu_inventory.operator.metrics import Metrics
from gpu_inventory.operator.store import Store

T = TypeVar("T")

_RESULTS = {Reason.FORBIDDEN: "forbidden", Reason.TOO_LARGE: "too_large"}
"""The `result` label of a refusal in the writes metric (others: "invalid")."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class Shared:
    """The dependencies both writers take (a fake clock and leadership in tests)."""

    store: Store
    config: OperatorConfig
    refusals: verdicts.Refusals = dataclasses.field(default_factory=verdicts.Refusals)
    metrics: Metrics | None = None
    is_leader: Callable[[], bool] = lambda: True
    clock: Callable[[], float] = time.monotonic
    wallclock: Callable[[], datetime] = utcnow


class Writer:
    """The loop of one writer; subclasses implement `run_pass` and `until_due`."""

    name = "writer"

    def __init__(self, shared: Shared, *, threads: int = 1) -> None:
        self.store = shared.store
        self.config = shared.config
        self.refusals = shared.refusals
        self.metrics = shared.metrics
        self.is_leader = shared.is_leader
        self.clock = shared.clock
        self.wallclock = shared.wallclock
        self.backoff = Backoff(ceiling=shared.config.refused_backoff_max)
        self.logger = logging.getLogger(type(self).__module__)
        self._outage = 0
        self._leading = False
        self._wake = asyncio.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=self.name)
        """API calls run on threads of this writer's own: `close()` waits for the ones in
        flight, so none lands after the Lease is released."""

    async def run_pass(self) -> Any:
        raise NotImplementedError

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` (a blocking API call) on this writer's threads."""
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(fn, *args)
        )

    def close(self) -> None:
        """Wait for the calls in flight (each bounded by the Lease's fence), free the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def wake(self) -> None:
        """Run a pass now (e.g. this replica just took the Lease)."""
        self._wake.set()

    def until_due(self) -> float:
        """Seconds until a pass is due even if nothing wakes the writer."""
        return self.config.resync_interval

    def pending(self) -> bool:
        """Whether changes wait already (then no waiting for a wake-up)."""
        return False

    async def run(self) -> None:
        """Pass after pass until cancelled."""
        while True:
            if not self.pending():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(0.05, self.until_due()))
            await asyncio.sleep(self.config.write_window)
            self._wake.clear()
            try:
                await self.run_pass()
            except UnavailableError as error:
                await self._back_off(error)
            except FencedError as error:
                self.logger.info("%s stopped: %s", self.name, error)
            except Exception:
                self.logger.exception("%s pass failed; retrying after a pause", self.name)
                await asyncio.sleep(self.config.backoff_max / 10)
            else:
                if self._outage:
                    self.logger.info("API server reachable again; %s resumed", self.name)
                self._outage = 0

    async def _back_off(self, error: Exception) -> None:
        self._outage += 1
        delay = min(self.config.backoff_max, 0.5 * 2 ** min(self._outage, 10))
        log = self.logger.warning if self._outage == 1 else self.logger.debug
        log("API server unavailable for the %s (%s); retrying in %.1fs", self.name, error, delay)
        await asyncio.sleep(delay)

    def count(self, kind: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.count_write(kind, result)

    def refused(self, key: str, error: ApiError, *, kind: str) -> bool:
        """Note a refusal of the write `key` (backoff, the shared refusals, a metric); ERROR
        once per key, DEBUG after. Returns whether it is new (the conditions must change)."""
        reason = error.refusal
        delay = self.backoff.failed(key, now=self.clock())
        self.count(kind, _RESULTS.get(reason, "invalid"))
        new = self.refusals.refuse(verdicts.Refusal(key, reason, error.message[:300]))
        log = self.logger.error if new else self.logger.debug
        log(
            "the API server refused to %s (%s); next try in %.0fs: %s",
            key,
            reason,
            delay,
            error.message,
        )
        return new

    def accepted(self, *keys: str) -> bool:
        """Note a success of the writes `keys`; whether one had been refused."""
        was = False
        for key in keys:
            was = (self.backoff.succeeded(key) | self.refusals.accept(key)) or was
        if was:
            self.logger.info("the API server accepts %s again", " and ".join(keys))
        return was
