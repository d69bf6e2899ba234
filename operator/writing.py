"""What the operator's two writers share: their dependencies, their loop, and how they wait out
an API server that does not answer.

Each writer (`inventory_writer`, `gpunode_writer`) is one asyncio task: wait until woken (or
until something falls due), coalesce for one write window, run a pass. A pass that finds the
API server away raises `UnavailableError`, and the loop backs off (0.5 s doubling to
`backoff_max`); a refusal is the writers' own business (long per-operation backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gpu_inventory.operator import verdicts
from gpu_inventory.operator.backoff import Backoff
from gpu_inventory.operator.config import OperatorConfig
from gpu_inventory.operator.kubeapi import FencedError, UnavailableError
from gpu_inventory.operator.metrics import Metrics
from gpu_inventory.operator.store import Store


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

    def __init__(self, shared: Shared) -> None:
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
        self._wake = asyncio.Event()

    async def run_pass(self) -> Any:
        raise NotImplementedError

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
