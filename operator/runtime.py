"""The operator's live parts, kept in kopf's `memo`: store, writer, Lease, metrics, tasks.

`Runtime.start()` wires them once at start-up; `stop()` cancels the background tasks
(releasing the Lease) at cleanup. Keeping them in one object leaves `memo` a single key,
which matters because kopf copies the memo for every object it sees (100,000 pods).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

from gpu_inventory.operator.config import OperatorConfig
from gpu_inventory.operator.election import LeaseElector
from gpu_inventory.operator.inventory_metrics import InventoryCollector
from gpu_inventory.operator.kubeapi import KubeApi, new_api_client
from gpu_inventory.operator.metrics import Metrics
from gpu_inventory.operator.store import Projections
from gpu_inventory.operator.writer import Writer

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Runtime:
    config: OperatorConfig
    store: Projections
    writer: Writer
    metrics: Metrics
    elector: LeaseElector | None = None
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)

    @classmethod
    def start(cls, config: OperatorConfig) -> Runtime:
        """Build everything and start the writer (and the Lease) as background tasks."""
        api = KubeApi(
            new_api_client(pool_size=config.write_concurrency + 4),
            timeout=config.request_timeout,
        )
        store = Projections(now=time.monotonic())
        metrics = Metrics()
        elector: LeaseElector | None = None
        if not config.standalone:
            elector = LeaseElector(
                api,
                config.lease_namespace,
                config.lease_name,
                config.identity,
                duration=config.lease_duration,
                retry=config.lease_renew_interval,
            )
        writer = Writer(
            store,
            api,
            config,
            metrics=metrics,
            is_leader=elector.is_leader if elector is not None else _always,
        )
        runtime = cls(config=config, store=store, writer=writer, metrics=metrics, elector=elector)
        # Only the Lease holder exports the inventory: a standby's (or a deposed leader's) copy
        # is old, and two replicas must not both report the fleet.
        metrics.registry.register(
            InventoryCollector(
                status=lambda: writer.latest_status if writer.is_leader() else None,
                last_write=lambda: writer.last_write_time,
            )
        )
        if config.metrics_port:
            metrics.serve(config.metrics_port, config.metrics_host)
        runtime.tasks.append(asyncio.create_task(writer.run(), name="gpu-inventory writer"))
        if elector is not None:
            runtime.tasks.append(asyncio.create_task(elector.run(), name="gpu-inventory lease"))
        logger.info(
            "gpu-inventory operator started (%s, write window %.2fs)",
            "standalone"
            if elector is None
            else f"Lease {config.lease_namespace}/{config.lease_name} as {config.identity}",
            config.write_window,
        )
        return runtime

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.writer.close()


def _always() -> bool:
    return True
