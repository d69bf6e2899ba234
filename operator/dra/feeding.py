"""DRA watch events -> the projection store, as `operator.feeding` does for the core kinds.

Pure apart from logging. Each event is projected under the store's current spec (which drivers
are GPU drivers) and handed to the store; the body is dropped right after. An object the API
server should never have accepted is logged with what is wrong and kept out of the counts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from gpu_inventory.operator.dra import projections
from gpu_inventory.operator.projections import Projector, object_name
from gpu_inventory.operator.store import Kind, Store
from gpu_inventory.operator.tables import stream_of

_EMPTY: Final[Mapping[str, Any]] = {}
Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
_POOLS_LOG: Final = logging.getLogger(__name__)


def key_of(kind: Kind, body: Mapping[str, Any]) -> str:
    """An object's store key: a claim's uid (claims are re-created under the same name, as
    pods are), a slice's or class's name."""
    if kind is Kind.RESOURCE_CLAIMS:
        return projections.claim_key(body)
    return str((body.get("metadata") or _EMPTY).get("name", ""))


def project(kind: Kind, body: Mapping[str, Any], projector: Projector) -> object | None:
    """An object's projection; None: not kept. Raises MalformedError."""
    if kind is Kind.RESOURCE_SLICES:
        return projections.project_slice(body, projector.drivers)
    if kind is Kind.RESOURCE_CLAIMS:
        return projections.project_claim(body, projector.drivers)
    return projections.project_class(body)


def event(store: Store, kind: Kind, event: Mapping[str, Any], logger: Log) -> bool:
    """One raw, stamped kopf event of a DRA kind; True: the store took it (every one is, if
    only as "not kept"), so a listed one counts toward its LIST."""
    body = event.get("object") or _EMPTY
    stream = stream_of(event)
    key = key_of(kind, body)
    uid = str((body.get("metadata") or _EMPTY).get("uid", ""))
    value: object | None = None
    if event.get("type") != "DELETED":
        try:
            value = project(kind, body, store.projector)
        except projections.MalformedError as error:
            name = object_name(body)
            logger.warning("%s %s: %s; left out of the counts", kind.value, name, error)
        if isinstance(value, projections.ClassProjection) and value.unreadable:
            old = store.dra.classes.live.get(key)
            if old is None or old.unreadable != value.unreadable:
                logger.warning(
                    "DeviceClass %s maps %s, but its selector cannot be read (%s): its devices"
                    " count under their default names",
                    key,
                    value.resource_name,
                    value.unreadable,
                )
    if kind is Kind.RESOURCE_SLICES:
        store.resource_slice(key, uid, value, stream)  # type: ignore[arg-type]
        for counted, problem in store.dra.take_problems():
            # An invalid pool is an error to the allocator (pools_stable.go poolIsInvalid), one
            # never seen complete counts nothing: warnings. A republication under way, its last
            # complete generation counted meanwhile, is routine. Either way, said once.
            # The module's logger, not the slice's: the pool is the subject, and kopf's
            # per-object loggers drop INFO.
            _POOLS_LOG.log(
                logging.INFO if counted else logging.WARNING, "%s (DRA devices)", problem
            )
    elif kind is Kind.RESOURCE_CLAIMS:
        store.resource_claim(key, value, stream)  # type: ignore[arg-type]
    else:
        store.device_class(key, uid, value, stream)  # type: ignore[arg-type]
    return True
