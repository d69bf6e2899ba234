"""The operator's live parts, kept in kopf's `memo`: store, writers, Lease, metrics, tasks.

`Runtime.start()` wires them once at start-up; `stop()` stops the writers first, waits for the
writes in flight, and only then releases the Lease, so no write of this replica can land after
a standby took over. Keeping them in one object leaves `memo` a single key, which matters
because kopf copies the memo for every object it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from gpu_inventory.api import constants
from gpu_inventory.operator import projections
from gpu_inventory.operator.config import OperatorConfig
from gpu_inventory.operator.election import LeaseElector
from gpu_inventory.operator.gpunode_writer import GPUNodeWriter
from gpu_inventory.operator.inventory_metrics import InventoryCollector
from gpu_inventory.operator.inventory_writer import InventoryWriter
from gpu_inventory.operator.kubeapi import ApiError, KubeApi, UnavailableError, new_api_client
from gpu_inventory.operator.metrics import Metrics
from gpu_inventory.operator.store import Phase, Store
from gpu_inventory.operator.writing import Shared

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Runtime:
    config: OperatorConfig
    store: Store
    inventory_writer: InventoryWriter
    gpunode_writer: GPUNodeWriter
    metrics: Metrics
    elector: LeaseElector | None = None
    writers: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    lease: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, config: OperatorConfig) -> Runtime:
        """Build everything and start the writers (and the Lease) as background tasks."""
        elector: LeaseElector | None = None
        api = KubeApi(
            new_api_client(pool_size=config.write_concurrency + 4),
            timeout=config.request_timeout,
        )
        if not config.standalone:
            elector = LeaseElector(
                api,
                config.lease_namespace,
                config.lease_name,
                config.identity,
                duration=config.lease_duration,
                renew_deadline=config.lease_renew_deadline,
                retry=config.lease_renew_interval,
            )
            api.fence = elector
        await _check_served(api, config)
        store = Store(projector=await _initial_projector(api, config))
        if elector is not None:
            elector.may_take_over = lambda: store.phase() is not Phase.INDEXING
        metrics = Metrics()
        shared = Shared(
            store,
            config,
            metrics=metrics,
            is_leader=elector.is_leader if elector is not None else _always,
        )
        inventory_writer = InventoryWriter(shared, api)
        runtime = cls(
            config=config,
            store=store,
            inventory_writer=inventory_writer,
            gpunode_writer=GPUNodeWriter(shared, api),
            metrics=metrics,
            elector=elector,
        )
        # Only the Lease holder exports the inventory: a standby's (or a deposed leader's) copy
        # is old, and two replicas must not both report the fleet.
        metrics.registry.register(
            InventoryCollector(
                status=lambda: inventory_writer.latest_status if shared.is_leader() else None,
                last_write=lambda: inventory_writer.last_written() if shared.is_leader() else None,
            )
        )
        if config.metrics_port:
            metrics.serve(
                config.metrics_port,
                config.metrics_host,
                ready=lambda: store.phase() is not Phase.INDEXING,
            )
        runtime.writers = [
            asyncio.create_task(runtime.inventory_writer.run(), name="inventory writer"),
            asyncio.create_task(runtime.gpunode_writer.run(), name="GPUNode writer"),
        ]
        if elector is not None:
            elector.on_change = lambda _leading: runtime.wake_writers()
            runtime.lease = asyncio.create_task(elector.run(), name="gpu-inventory lease")
        logger.info(
            "gpu-inventory operator started (%s, write window %.2fs)",
            "standalone"
            if elector is None
            else f"Lease {config.lease_namespace}/{config.lease_name} as {config.identity}",
            config.write_window,
        )
        return runtime

    def wake_writers(self) -> None:
        self.inventory_writer.wake()
        self.gpunode_writer.wake()

    async def stop(self) -> None:
        """Writers first (and the writes in flight), the Lease last."""
        for task in self.writers:
            task.cancel()
        for task in self.writers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.gpunode_writer.close)
        await asyncio.to_thread(self.inventory_writer.close)
        if self.lease is not None:
            self.lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.lease


REQUIRED: tuple[str, ...] = (constants.INVENTORY_PLURAL, constants.NODE_PLURAL)


class NotServedError(RuntimeError):
    """The API server does not serve the CRDs the operator needs (not installed yet)."""


async def _check_served(api: KubeApi, config: OperatorConfig) -> None:
    """kopf resolves the resources it watches once, at start (scanning is off), and waits
    forever, quietly, for one it cannot resolve: fail instead, so the pod restarts until the
    CRDs are installed, and say why."""
    delay = 0.5
    while True:
        try:
            served = await asyncio.to_thread(api.served, constants.GROUP, constants.VERSION)
            break
        except UnavailableError as error:
            logger.warning("cannot reach the API server yet (%s); retrying", error)
            await asyncio.sleep(delay)
            delay = min(config.backoff_max, delay * 2)
    missing = [plural for plural in REQUIRED if plural not in served]
    if missing:
        raise NotServedError(
            f"the API server does not serve {', '.join(missing)} in {constants.API_VERSION}:"
            " install the CRDs (crds/, or the Helm chart) before the operator"
        )


async def _initial_projector(api: KubeApi, config: OperatorConfig) -> projections.Projector:
    """The spec's projector, read before kopf lists anything: pods listed under the wrong
    resource names would have to be listed again."""
    delay = 0.5
    while True:
        try:
            body = await asyncio.to_thread(api.get_inventory)
        except UnavailableError as error:
            logger.warning("cannot read GPUInventory/cluster yet (%s); retrying", error)
            await asyncio.sleep(delay)
            delay = min(config.backoff_max, delay * 2)
            continue
        except ApiError as error:
            logger.error("cannot read GPUInventory/cluster (%s); using the default spec", error)
            return projections.DEFAULT_PROJECTOR
        if body is None:
            return projections.DEFAULT_PROJECTOR
        return projections.Projector.for_spec(projections.project_inventory(body).spec)


def _always() -> bool:
    return True
