"""Whether the snapshot can answer at all, and how much its status can be trusted.

Pure: no I/O. The status-age rule is the API's (`api.freshness`), so what an assistant is told
and what `kubectl get gpuinventory` readers and the operator's own gauges say never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gpu_inventory.api import constants, freshness
from gpu_inventory.api.conditions import find_condition
from gpu_inventory.api.models import GPUInventory, GPUInventoryStatus
from gpu_inventory.mcpserver.snapshot import Snapshot

_INVALID_SHOWN = 3


class InventoryUnavailableError(Exception):
    """The inventory cannot be answered from right now; the message says why and what to do."""


@dataclass(frozen=True)
class Trusted:
    """An inventory an answer may be built from, with what the answer must say about it."""

    inventory: GPUInventory
    status: GPUInventoryStatus
    current: bool
    """The operator confirmed the status within `STATUS_MAX_AGE_SECONDS` (`api.freshness`)."""
    age_seconds: float | None
    """Seconds since the operator last confirmed the status; None when it never said."""
    warnings: tuple[str, ...]

    def freshness(self) -> dict[str, Any]:
        """The fields every answer carries about it (`shapes._Freshness`)."""
        return {
            "inventory_current": self.current,
            "inventory_age_seconds": self.age_seconds,
            "warnings": list(self.warnings),
        }


def not_ready(snapshot: Snapshot, *, now: datetime, max_staleness_seconds: float) -> str | None:
    """Why this server cannot answer from its cache right now, or None when it can.

    Only the reasons that belong to this process (its cache has not listed yet, or has lost the
    API server for longer than it may serve cached data): readiness is judged on them, so a
    Service sends callers to a replica that can answer. A missing or old GPUInventory is the
    cluster's state, the same for every replica, and every answer says it.
    """
    where = f" at {snapshot.server}" if snapshot.server else ""
    if not snapshot.synced:
        if snapshot.last_error:
            return (
                f"The Kubernetes API server{where} cannot be reached, so the GPU inventory is "
                f"unavailable: {snapshot.last_error}. The MCP server keeps retrying."
            )
        return (
            "The GPU inventory is still loading from the Kubernetes API server; "
            "try again in a few seconds."
        )
    if snapshot.disconnected_since is not None:
        away = max((now - snapshot.disconnected_since).total_seconds(), 0.0)
        if away > max_staleness_seconds:
            return (
                f"Lost contact with the Kubernetes API server{where} {away:.0f}s ago "
                f"({snapshot.last_error or 'no detail'}); the cached GPU inventory is too old "
                "to trust. The MCP server keeps retrying."
            )
    return None


def require_inventory(
    snapshot: Snapshot, *, now: datetime, max_staleness_seconds: float
) -> Trusted:
    """The inventory and what to warn about, or `InventoryUnavailableError` saying why not."""
    reason = not_ready(snapshot, now=now, max_staleness_seconds=max_staleness_seconds)
    if reason is not None:
        raise InventoryUnavailableError(reason)
    warnings: list[str] = []
    if snapshot.disconnected_since is not None:
        away = max((now - snapshot.disconnected_since).total_seconds(), 0.0)
        warnings.append(
            f"Serving cached data: lost contact with the Kubernetes API server {away:.0f}s ago "
            f"({snapshot.last_error or 'no detail'}); the answer may be out of date."
        )
    inventory = snapshot.inventory
    if inventory is None:
        raise InventoryUnavailableError(
            f"GPUInventory '{constants.INVENTORY_NAME}' does not exist: the gpu-inventory "
            "operator is not running yet (or has not created it). Start the operator; this "
            "server only reads what it writes."
        )
    status = inventory.status
    if status is None:
        raise InventoryUnavailableError(
            f"GPUInventory '{constants.INVENTORY_NAME}' has no status yet: the gpu-inventory "
            "operator has not reconciled it. Check that the operator is running."
        )
    age = freshness.status_age(status, now=now)
    current = freshness.status_is_current(status, now=now)
    if not current:
        warnings.append(_age_warning(age))
    ready = find_condition(status.conditions, constants.ConditionType.READY)
    if ready is not None and ready.status != "True":
        warnings.append(
            f"The inventory is not current (Ready={ready.status}, {ready.reason})"
            + (f": {ready.message}" if ready.message else ".")
        )
    stalled = find_condition(status.conditions, constants.ConditionType.STALLED)
    if stalled is not None and stalled.status == "True":
        warnings.append(
            f"The operator is stalled ({stalled.reason})"
            + (f": {stalled.message}" if stalled.message else ".")
        )
    if snapshot.invalid_nodes:
        warnings.append(_unreadable_warning(snapshot.invalid_nodes))
    return Trusted(
        inventory=inventory,
        status=status,
        current=current,
        age_seconds=None if age is None else round(age.total_seconds(), 1),
        warnings=tuple(warnings),
    )


def _unreadable_warning(invalid: Mapping[str, str]) -> str:
    count = len(invalid)
    shown = "; ".join(invalid[name] for name in sorted(invalid)[:_INVALID_SHOWN])
    more = f"; and {count - _INVALID_SHOWN} more" if count > _INVALID_SHOWN else ""
    nodes = (
        f"{count} GPUNode could not be read, so its node's"
        if count == 1
        else (f"{count} GPUNodes could not be read, so their nodes'")
    )
    return (
        f"{nodes} GPUs are missing from this answer (an agent of another version, or a hand "
        f"edit?): {shown}{more}."
    )


def _age_warning(age: timedelta | None) -> str:
    limit = constants.STATUS_MAX_AGE_SECONDS
    if age is None:
        return (
            "The inventory status does not say when the operator last confirmed it "
            "(no lastSyncTime), so it is not known to be current: check that the "
            "gpu-inventory operator is running and up to date."
        )
    seconds = age.total_seconds()
    if seconds < 0:
        return (
            f"The inventory status claims to be confirmed {-seconds:.0f}s in the future: a "
            "clock is wrong, so it is not treated as current."
        )
    return (
        f"The inventory status was last confirmed by the operator {seconds:.0f}s ago (more "
        f"than {limit}s): the operator may be down, so the numbers may be out of date."
    )
