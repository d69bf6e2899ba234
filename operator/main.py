"""kopf registration: settings, the event handlers that feed the store, start and stop.

Run: `gpu-inventory-operator` (see `__main__`, which also gives kopf the trimmed per-object
memory of `observing`).

Why `@kopf.on.event` and not `@kopf.index`: kopf removes an object from its indexes on
deletion *without calling* the index handler, so a store that keeps per-node sums could not
subtract the pod that left; an event handler sees DELETED with the body. kopf indexes also
hold every listed body in memory until all kinds are indexed (each object's worker waits on
the global "indexed" gate with its body), which at 150,000 pods is the memory budget several
times over. So each handler below projects the body and feeds the `store.Store`; where each
LIST begins and ends, which the index gate would have known, comes from `listing`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from gpu_inventory.api import constants
from gpu_inventory.operator import feeding, listing
from gpu_inventory.operator.config import POD_FIELD_SELECTOR, OperatorConfig
from gpu_inventory.operator.dra import watching as dra_watching
from gpu_inventory.operator.observing import NoDiffBase
from gpu_inventory.operator.runtime import NotServedError, Runtime

_LOG = logging.getLogger("gpu_inventory.operator.listed")
"""Warnings about listed objects (kopf's handlers log per object through kopf.objects)."""


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    config = memo.get("config") or OperatorConfig.from_env()
    listing.install()
    # The kinds are named by the handlers (below, and DRA's); kopf need not scan CRDs and
    # namespaces for them (which the least-privilege RBAC forbids, and kopf logged as ERRORs).
    settings.scanning.disabled = True
    # Only bound, unfinished pods reach the operator: the API server filters (kopf 1.45+),
    # so finished or pending pods are never sent, parsed or remembered. A pod that finishes
    # stops matching and arrives as DELETED.
    settings.watching.field_selectors[("v1", "pods")] = POD_FIELD_SELECTOR
    # Page every LIST: one page of 500 in memory at a time instead of all pods at once.
    settings.watching.chunk_size = config.list_chunk_size
    # Watches end server-side every 5 minutes and resume from the last resourceVersion; a
    # stream that goes silent (no event, no 60 s bookmark) for 70 s is dropped as dead.
    settings.watching.server_timeout = 300
    settings.watching.inactivity_timeout = 70
    settings.watching.connect_timeout = 10
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 120
    # kopf turns WARNING+ log lines into Kubernetes Events; INFO would flood etcd with them.
    settings.posting.level = logging.WARNING
    # worker_limit stays None: a limit below the number of objects deadlocks the initial
    # listing (nolar/kopf#1243). Per-object workers exit 5 s after their last event.
    settings.queueing.worker_limit = None
    # One writer among replicas is the Lease's job (`election`): every replica keeps watching
    # (a warm standby), so kopf's peering, which pauses the watching, stays off.
    settings.peering.standalone = True
    # Only event handlers here: no essence to build and diff per event (see `observing`).
    settings.persistence.diffbase_storage = NoDiffBase()
    try:
        runtime = await Runtime.start(config)
    except NotServedError as error:
        raise kopf.PermanentError(str(error)) from error  # kopf exits: the pod restarts
    memo.gpu_inventory = runtime
    store = runtime.store
    listing.subscribe(
        lambda plural, epoch, count: feeding.listed(
            store, plural, epoch, count, now=time.monotonic()
        )
    )
    # Listed objects go straight to the store, in stream order; watch events through kopf.
    listing.consume_listings("pods", lambda e: feeding.pod(store, e, _LOG, now=time.monotonic()))
    listing.consume_listings("nodes", lambda e: feeding.node(store, e, _LOG))
    listing.consume_listings(constants.NODE_PLURAL, lambda e: feeding.gpunode(store, e, _LOG))
    listing.consume_listings(
        constants.INVENTORY_PLURAL, lambda e: feeding.inventory(store, e, _LOG)
    )
    # ResourceSlices, ResourceClaims and DeviceClasses only where resource.k8s.io/v1 is served
    # (decided here, before kopf collects the handlers to watch with).
    discovery = await dra_watching.served()
    store.dra_refused = discovery.refused
    if discovery.watch:
        dra_watching.register(store, _LOG)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("gpu_inventory")
    if runtime is not None:
        await asyncio.shield(runtime.stop())


@kopf.on.event("v1", "pods")
async def pod_event(event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    feeding.pod(memo.gpu_inventory.store, event, logger, now=time.monotonic())


@kopf.on.event("v1", "nodes")
async def node_event(event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    feeding.node(memo.gpu_inventory.store, event, logger)


@kopf.on.event(constants.GROUP, constants.VERSION, constants.NODE_PLURAL)
async def gpunode_event(
    event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    feeding.gpunode(memo.gpu_inventory.store, event, logger)


@kopf.on.event(constants.GROUP, constants.VERSION, constants.INVENTORY_PLURAL)
async def inventory_event(
    event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    feeding.inventory(memo.gpu_inventory.store, event, logger)
