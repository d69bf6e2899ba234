"""The smallest JSON merge patch (RFC 7386) from what the server has to what we want.

Pure: no I/O. Keys that are equal are left out, keys that must go are set to null (the only
way a merge patch removes a map key, e.g. a node label that left), and lists are replaced
whole (merge patches cannot address list items). An empty patch means: send nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The patch that turns `current` into `desired`; `{}` when they are equal."""
    if current is None:
        return {key: _clean(value) for key, value in desired.items()}
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        if key not in current:
            patch[key] = _clean(value)
            continue
        old = current[key]
        if old == value:
            continue
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        else:
            patch[key] = _clean(value)
    for key in current:
        if key not in desired:
            patch[key] = None
    return patch


def _clean(value: Any) -> Any:
    """A value as sent; nulls inside a new map would read as deletions, so drop them."""
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    return value


def inventory_status_patch(
    current: Mapping[str, Any] | None,
    desired: Mapping[str, Any],
    *,
    resource_version: str | None,
) -> dict[str, Any]:
    """Patch for GPUInventory `/status`, or `{}` when the status is already as desired.

    The resourceVersion makes the write conditional: the patch is a difference from the
    status we know, so if the object moved meanwhile the server answers 409 and the writer
    re-reads instead of patching on top of a status it has not seen.
    """
    status = merge_patch(current, desired)
    if not status:
        return {}
    patch: dict[str, Any] = {"status": status}
    if resource_version:
        patch["metadata"] = {"resourceVersion": resource_version}
    return patch


def gpunode_status_patch(
    current: Mapping[str, Any] | None,
    desired: Mapping[str, Any],
    *,
    resource_version: str | None,
) -> dict[str, Any]:
    """Patch for a GPUNode's `/status` touching only `status.kubernetes` (the agent owns the
    rest), or `{}` when it is already as desired. Conditional on the resourceVersion the view
    was diffed against, like the inventory's: an agent write meanwhile costs one 409 and a
    retry once its watch event arrives, and a replica that lost the Lease cannot overwrite
    what the new leader wrote."""
    kubernetes = merge_patch(current, desired)
    if not kubernetes:
        return {}
    patch: dict[str, Any] = {"status": {"kubernetes": kubernetes}}
    if resource_version:
        patch["metadata"] = {"resourceVersion": resource_version}
    return patch
