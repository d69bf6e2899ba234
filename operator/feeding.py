"""Watch events -> the projection store: what each kopf event handler does, in one call.

Each returns whether the store took the event (a listed object not taken does not count toward
its LIST's total, so the listing still completes).

Pure apart from logging: the raw event (`{"type": ..., "object": body}`, stamped with its
place in kopf's stream by `listing`) is projected under the store's current spec and handed
to the store; the body is dropped right after. Nothing here talks to the API server, so a
handler costs microseconds and never blocks kopf's workers. Bad input is logged once per
object and kept out of the totals (and counted); it never raises into kopf.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from gpu_inventory.api import constants
from gpu_inventory.operator import projections
from gpu_inventory.operator.store import Kind, Store
from gpu_inventory.operator.tables import stream_of

_EMPTY: Final[Mapping[str, Any]] = {}
Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


def _parts(event: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any], Mapping[str, Any]]:
    body = event.get("object") or _EMPTY
    return event.get("type"), body, body.get("metadata") or _EMPTY


def pod(store: Store, event: Mapping[str, Any], logger: Log, *, now: float) -> bool:
    type_, body, _meta = _parts(event)
    key = projections.pod_key(body)
    stream = stream_of(event)
    if type_ == "DELETED":
        store.pod(key, None, stream, now=now)
        return True
    projection = projections.project_pod(body, store.projector.matcher)
    if projection is not None and projection.malformed:
        old = store.pods.live.get(key)
        if old is None or old.malformed != projection.malformed:
            for why in projection.malformed:
                logger.warning("%s; left out of the totals until fixed", why)
    store.pod(key, projection, stream, now=now)
    return True


def node(store: Store, event: Mapping[str, Any], logger: Log) -> bool:
    type_, body, meta = _parts(event)
    name, uid = str(meta.get("name", "")), str(meta.get("uid", ""))
    stream = stream_of(event)
    if type_ == "DELETED":
        store.node(name, uid, None, stream)
        return True
    projection = projections.project_node(body, store.projector)
    if projection.malformed:
        old = store.nodes.live.get(name)
        if old is None or old.malformed != projection.malformed:
            for why in projection.malformed:
                logger.warning("%s; left out of the totals until fixed", why)
    store.node(name, uid, projection, stream)
    return True


def gpunode(store: Store, event: Mapping[str, Any], logger: Log) -> bool:
    """A GPUNode event; a broken agent's content is ignored (agent state Invalid), not raised."""
    type_, body, meta = _parts(event)
    name, uid = str(meta.get("name", "")), str(meta.get("uid", ""))
    stream = stream_of(event)
    if type_ == "DELETED":
        store.gpunode(name, uid, None, stream)
        return True
    projection = projections.project_gpunode(body)
    previous = store.gpunodes.live.get(name)
    if projection.agent_error and (
        previous is None or previous.agent_error != projection.agent_error
    ):
        logger.warning("agent data of GPUNode %s ignored: %s", name, projection.agent_error)
    store.gpunode(name, uid, projection, stream)
    return True


def inventory(store: Store, event: Mapping[str, Any], logger: Log) -> bool:
    """A GPUInventory event. Deleting `cluster` by hand is undone by the writer."""
    type_, body, meta = _parts(event)
    if meta.get("name") != constants.INVENTORY_NAME:
        return False  # the CRD refuses other names; one that slips through is not counted
    uid = str(meta.get("uid", ""))
    stream = stream_of(event)
    if type_ == "DELETED":
        current = store.inventory
        if current is not None and current.uid == uid:
            logger.warning("GPUInventory/cluster was deleted; the writer re-creates it")
        store.inventory_event(uid, None, stream)  # a predecessor's late DELETED removes nothing
        return True
    old = store.inventory
    if old is not None and old.resource_version == meta.get("resourceVersion"):
        # The echo of our own write: the writer projected the server's answer already, and
        # a status with a thousand rows costs milliseconds to project again.
        store.inventory_event(uid, old, stream)
        return True
    projection = projections.project_inventory(body)
    if projection.spec_error and (old is None or old.spec_error != projection.spec_error):
        logger.error("GPUInventory/cluster: %s", projection.spec_error)
    store.inventory_event(uid, projection, stream)
    return True


def listed(store: Store, plural: str, epoch: int, count: int, *, now: float) -> None:
    """kopf's LIST of `plural` is over (from `listing`)."""
    try:
        kind = Kind(plural)
    except ValueError:
        return  # a kind the store does not keep
    store.listing_over(kind, epoch, count, now=now)
