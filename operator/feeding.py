"""Watch events -> the projection store: what each kopf event handler does, in one call.

Pure apart from logging: the raw event (`{"type": ..., "object": body}`; type None while kopf
lists) is projected and handed to the store; the body is dropped right after. Nothing here
talks to the API server, so a handler costs microseconds and never blocks kopf's workers.
Bad input is logged once per object and skipped; it never raises into kopf.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from gpu_inventory.api import constants
from gpu_inventory.operator import projections
from gpu_inventory.operator.store import Projections

_EMPTY: Final[Mapping[str, Any]] = {}
Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


def _parts(event: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any], Mapping[str, Any]]:
    body = event.get("object") or _EMPTY
    return event.get("type"), body, body.get("metadata") or _EMPTY


def pod(store: Projections, event: Mapping[str, Any], logger: Log, *, now: float) -> bool:
    """A pod event; returns whether the store changed."""
    type_, body, _meta = _parts(event)
    key = projections.pod_key(body)
    listing = type_ is None
    if type_ == "DELETED":
        return store.pod_event(key, None, listing=False, now=now)
    try:
        projection = projections.project_pod(body)
    except projections.ProjectionError as error:
        if key not in store.skipped_pods:
            logger.warning("%s; not counted until fixed", error)
        return store.pod_skipped(key, listing=listing, now=now)
    return store.pod_event(key, projection, listing=listing, now=now)


def node(store: Projections, event: Mapping[str, Any], logger: Log, *, now: float) -> bool:
    """A Node event; a Node with unreadable GPU quantities is logged and left out."""
    type_, body, meta = _parts(event)
    name, uid = str(meta.get("name", "")), str(meta.get("uid", ""))
    listing = type_ is None
    if type_ == "DELETED":
        return store.node_event(name, uid, None, listing=False, now=now)
    try:
        projection = projections.project_node(body, store.labels)
    except projections.ProjectionError as error:
        if name in store.nodes or type_ in (None, "ADDED"):  # once per arrival, not per update
            logger.warning("%s; left out of the inventory until fixed", error)
        return store.node_event(name, uid, None, listing=listing, now=now)
    return store.node_event(name, uid, projection, listing=listing, now=now)


def gpunode(store: Projections, event: Mapping[str, Any], logger: Log, *, now: float) -> bool:
    """A GPUNode event; a broken agent's content is ignored (agent state Invalid), not raised."""
    type_, body, meta = _parts(event)
    name, uid = str(meta.get("name", "")), str(meta.get("uid", ""))
    if type_ == "DELETED":
        return store.gpunode_event(name, uid, None, listing=False, now=now)
    projection = projections.project_gpunode(body)
    previous = store.gpunodes.get(name)
    if projection.agent_error and (
        previous is None or previous.agent_error != projection.agent_error
    ):
        logger.warning("agent data of GPUNode %s ignored: %s", name, projection.agent_error)
    return store.gpunode_event(name, uid, projection, listing=type_ is None, now=now)


def inventory(store: Projections, event: Mapping[str, Any], logger: Log, *, now: float) -> bool:
    """A GPUInventory event. Deleting `cluster` by hand is undone by the writer."""
    type_, body, meta = _parts(event)
    if meta.get("name") != constants.INVENTORY_NAME:
        return False  # the CRD refuses other names; nothing to do if one slips through
    if type_ == "DELETED":
        logger.warning("GPUInventory/cluster was deleted; the writer re-creates it")
        return store.inventory_event(None, listing=False, now=now)
    old = store.inventory
    if old is not None and old.resource_version == meta.get("resourceVersion"):
        # The echo of our own write: the writer projected the server's answer already, and
        # at 5,000 rows a projection costs tens of milliseconds.
        return store.inventory_event(old, listing=type_ is None, now=now)
    projection = projections.project_inventory(body)
    if projection.spec_error and (old is None or old.spec_error != projection.spec_error):
        logger.error("GPUInventory/cluster: %s", projection.spec_error)
    return store.inventory_event(projection, listing=type_ is None, now=now)
