"""Feed the operator's store the way kopf does: LISTs, then watch events, each stamped.

Pure: no I/O. The unit tests of the store, the feeding and the writers use these to build a
store from plain API bodies (`testing.builders`) through the same `feeding` functions kopf's
handlers call, with the stamps `operator.listing` puts on real events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from gpu_inventory.api.models import GPUInventorySpec
from gpu_inventory.operator import feeding
from gpu_inventory.operator.aggregates import FactsCache
from gpu_inventory.operator.dra import feeding as dra_feeding
from gpu_inventory.operator.store import DRA_KINDS, Kind, Store
from gpu_inventory.operator.tables import STREAM_KEY, Stream

_LOG = logging.getLogger("gpu_inventory.tests")


def raw(type_: str | None, body: Mapping[str, Any], stream: Stream) -> dict[str, Any]:
    """A raw kopf event with its listing stamp."""
    return {"type": type_, "object": dict(body), STREAM_KEY: stream}


def feed(store: Store, kind: Kind, event: Mapping[str, Any], *, now: float = 0.0) -> None:
    """Hand one raw event to the feeding function of its kind."""
    if kind is Kind.PODS:
        feeding.pod(store, event, _LOG, now=now)
    elif kind is Kind.NODES:
        feeding.node(store, event, _LOG)
    elif kind is Kind.GPUNODES:
        feeding.gpunode(store, event, _LOG)
    elif kind in DRA_KINDS:
        dra_feeding.event(store, kind, event, _LOG)
    else:
        feeding.inventory(store, event, _LOG)


def listing(
    store: Store,
    kind: Kind,
    bodies: Iterable[Mapping[str, Any]],
    *,
    epoch: int = 1,
    now: float = 0.0,
) -> None:
    """One complete LIST of `kind`: every body as a listing event, then kopf's count."""
    count = 0
    for body in bodies:
        feed(store, kind, raw(None, body, Stream(epoch, listing=True)), now=now)
        count += 1
    feeding.listed(store, kind.value, epoch, count, now=now)


def watch(
    store: Store,
    kind: Kind,
    type_: str,
    body: Mapping[str, Any],
    *,
    epoch: int = 1,
    now: float = 0.0,
) -> None:
    """One watch event (ADDED, MODIFIED or DELETED) after the LIST of stream `epoch`."""
    feed(store, kind, raw(type_, body, Stream(epoch, listing=False)), now=now)


def synced_store(
    *,
    nodes: Iterable[Mapping[str, Any]] = (),
    pods: Iterable[Mapping[str, Any]] = (),
    gpunodes: Iterable[Mapping[str, Any]] = (),
    inventory: Mapping[str, Any] | None = None,
    dra: bool = False,
    slices: Iterable[Mapping[str, Any]] = (),
    claims: Iterable[Mapping[str, Any]] = (),
    classes: Iterable[Mapping[str, Any]] = (),
) -> Store:
    """A store whose first listing of every kind is complete (with `dra`, or any DRA object
    given, as on a cluster that serves resource.k8s.io/v1)."""
    store = Store()
    listing(store, Kind.INVENTORY, [inventory] if inventory is not None else [])
    if dra or slices or claims or classes:
        store.watch_dra()
        listing(store, Kind.DEVICE_CLASSES, classes)
        listing(store, Kind.RESOURCE_SLICES, slices)
        listing(store, Kind.RESOURCE_CLAIMS, claims)
    listing(store, Kind.NODES, nodes)
    listing(store, Kind.GPUNODES, gpunodes)
    listing(store, Kind.PODS, pods)
    return store


def with_uid(body: dict[str, Any], uid: str | None = None) -> dict[str, Any]:
    """`body` with a uid (pods are keyed by it), derived from its name unless given."""
    meta = body["metadata"]
    meta["uid"] = uid or f"uid-{meta.get('namespace', '')}-{meta['name']}"
    return body


def facts_cache_of(store: Store, *, spec: GPUInventorySpec, now: datetime) -> FactsCache:
    """Every GPU node's facts and the running totals, computed from the store as the inventory
    writer computes them (DRA counts included)."""
    cache = FactsCache()
    cache.update(
        nodes=store.nodes.live,
        gpunodes=store.gpunodes.live,
        allocated=store.allocated,
        dirty=(),
        spec=spec,
        now=now,
        dra=store.dra_counts,
    )
    return cache
