"""Whether the API server serves DRA, and the kopf handlers that feed its kinds to the store.

Decided once at start-up, by discovery: on a cluster without `resource.k8s.io/v1` (older than
Kubernetes 1.34, or the API switched off with `--runtime-config`) the operator runs as before
and says so in one log line; it never registers a watch that could only fail, and the store's
phase never waits for a kind that is not served (`Store.watch_dra`). The same holds when its
RBAC does not grant list and watch on the three kinds (an older chart, or rules copied by
hand): a SelfSubjectAccessReview, which every authenticated identity may make, says so first,
and a warning names what is missing, instead of an inventory stuck waiting for a 403.

The handlers are registered from the `configure()` start-up handler: kopf starts its resource
observer, which collects the registry's handlers and the resources to watch, only after every
start-up handler has finished (kopf/_core/reactor/running.py: the "resource observer" task is
guarded by `started_flag`, set by `startup_cleanup_activities` after the STARTUP activity).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Final, NamedTuple

import kopf
import urllib3
from kubernetes import client

from gpu_inventory.operator import listing
from gpu_inventory.operator.dra import feeding
from gpu_inventory.operator.dra.projections import GROUP, VERSION
from gpu_inventory.operator.kubeapi import new_api_client
from gpu_inventory.operator.store import DRA_KINDS, Kind, Store

logger = logging.getLogger(__name__)

NEEDED_VERBS: Final = frozenset({"list", "watch"})
MAX_DELAY: Final = 30.0


class Discovery(NamedTuple):
    """Whether to watch DRA's kinds, and what RBAC refuses where the API serves them (the
    inventory's conditions say so: its numbers leave out every DRA GPU)."""

    watch: bool
    refused: tuple[str, ...] = ()


async def served(*, delay: float = 0.5) -> Discovery:
    """Whether `resource.k8s.io/v1` serves all three kinds with list and watch; logs the
    verdict either way. Waits (with backoff) while the API server does not answer."""
    while True:
        try:
            missing, refused = await asyncio.to_thread(_discover)
        except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            status = getattr(error, "status", 0) or 0
            if 400 <= status < 500 and status != 429:
                logger.warning(
                    "cannot discover %s/%s (HTTP %s); counting device-plugin GPUs only",
                    GROUP,
                    VERSION,
                    status,
                )
                return Discovery(watch=False)
            logger.warning("cannot discover %s/%s yet (%s); retrying", GROUP, VERSION, error)
            await asyncio.sleep(delay)
            delay = min(MAX_DELAY, delay * 2)
            continue
        if missing:
            logger.info(
                "Dynamic Resource Allocation (%s/%s) is not served here (%s): counting"
                " device-plugin GPUs only",
                GROUP,
                VERSION,
                ", ".join(missing),
            )
            return Discovery(watch=False)
        if refused:
            logger.warning(
                "Dynamic Resource Allocation (%s/%s) is served, but RBAC does not let this"
                " operator %s: counting device-plugin GPUs only (the chart grants list and"
                " watch on resourceslices, resourceclaims and deviceclasses)",
                GROUP,
                VERSION,
                ", ".join(refused),
            )
            return Discovery(watch=False, refused=tuple(refused))
        logger.info(
            "Dynamic Resource Allocation (%s/%s) is served: watching %s",
            GROUP,
            VERSION,
            ", ".join(sorted(kind.value for kind in DRA_KINDS)),
        )
        return Discovery(watch=True)


def _discover() -> tuple[list[str], list[str]]:
    """What the API server does not serve, else what RBAC does not allow (see below)."""
    api = new_api_client(pool_size=1)
    try:
        missing = missing_kinds(api)
        return missing, [] if missing else denied(api)
    finally:
        api.close()


def missing_kinds(api: client.ApiClient) -> list[str]:
    """The DRA kinds (with what they lack) the API server does not serve; all of them when
    the group-version is not served at all (404)."""
    try:
        resources = client.ResourceV1Api(api).get_api_resources(_request_timeout=10)
    except client.ApiException as error:
        if error.status == 404:
            return ["the group-version is not served"]
        raise
    verbs = {r.name: set(r.verbs or ()) for r in resources.resources or ()}
    return [
        f"{kind.value} {'cannot be listed and watched' if kind.value in verbs else 'missing'}"
        for kind in sorted(DRA_KINDS, key=lambda k: k.value)
        if not verbs.get(kind.value, set()) >= NEEDED_VERBS
    ]


def denied(api: client.ApiClient) -> list[str]:
    """The verbs on DRA's kinds this identity may not use, as `verb plural`."""
    authorization = client.AuthorizationV1Api(api)
    refused = []
    for kind in sorted(DRA_KINDS, key=lambda k: k.value):
        for verb in sorted(NEEDED_VERBS):
            attributes = {"group": GROUP, "resource": kind.value, "verb": verb}
            review = authorization.create_self_subject_access_review(
                {"spec": {"resourceAttributes": attributes}}, _request_timeout=10
            )
            if not review.status.allowed:
                refused.append(f"{verb} {kind.value}")
    return refused


_registered: set[str] = set()


def register(store: Store, logger: logging.Logger) -> None:
    """Watch the three kinds (once per process): the store waits for their listings, which go
    straight to it (`listing.consume_listings`, as for the core kinds), and their watch events
    reach the handlers below through kopf's default registry."""
    if _registered:
        return
    store.watch_dra()
    for kind in sorted(DRA_KINDS, key=lambda k: k.value):
        listing.consume_listings(kind.value, functools.partial(_listed, store, kind, logger))
    kopf.on.event(GROUP, VERSION, Kind.RESOURCE_SLICES.value, id="resourceslice_event")(
        resourceslice_event
    )
    kopf.on.event(GROUP, VERSION, Kind.RESOURCE_CLAIMS.value, id="resourceclaim_event")(
        resourceclaim_event
    )
    kopf.on.event(GROUP, VERSION, Kind.DEVICE_CLASSES.value, id="deviceclass_event")(
        deviceclass_event
    )
    _registered.add("dra")


def _listed(store: Store, kind: Kind, logger: logging.Logger, event: dict[str, Any]) -> bool:
    return feeding.event(store, kind, event, logger)


async def resourceslice_event(
    event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    feeding.event(memo.gpu_inventory.store, Kind.RESOURCE_SLICES, event, logger)


async def resourceclaim_event(
    event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    feeding.event(memo.gpu_inventory.store, Kind.RESOURCE_CLAIMS, event, logger)


async def deviceclass_event(
    event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    feeding.event(memo.gpu_inventory.store, Kind.DEVICE_CLASSES, event, logger)
