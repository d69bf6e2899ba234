"""An in-memory stand-in for the operator's API calls, for the writers' unit tests.

Pure: no I/O. It applies JSON merge patches and resourceVersion preconditions as kube-apiserver
does, and raises the operator's own `ApiError` / `UnavailableError` from queued failures. The
behaviour of the real server (RBAC, schema, etcd limits, watches) is covered by the
integration tests; this is for the writers' decisions: which writes a change causes, none
when nothing changed, and what each failure leads to.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from gpu_inventory.operator.kubeapi import ApiError
from gpu_inventory.operator.store import Kind


def apply_merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 on dicts: null removes, maps merge, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            apply_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeApi:
    """Objects in dicts, a resourceVersion counter, failures queued per method."""

    def __init__(self) -> None:
        self.inventory: dict[str, Any] | None = None
        self.gpunodes: dict[str, dict[str, Any]] = {}
        self.listed: dict[Kind, list[dict[str, Any]]] = {}
        self.calls: list[str] = []
        self.failures: dict[str, list[Exception]] = {}
        self.before: dict[str, Callable[[], None]] = {}
        """Run at the start of a method (e.g. to lose the Lease mid-pass)."""
        self._rv = itertools.count(1)

    def fail(self, method: str, *errors: Exception) -> None:
        self.failures.setdefault(method, []).extend(errors)

    def count(self, method: str) -> int:
        return self.calls.count(method)

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        hook = self.before.get(method)
        if hook is not None:
            hook()
        queued = self.failures.get(method)
        if queued:
            raise queued.pop(0)

    def _version(self, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(body)

    def _check_version(self, body: Mapping[str, Any], patch: Mapping[str, Any], what: str) -> None:
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != body["metadata"]["resourceVersion"]:
            raise ApiError(409, "the object has been modified", what)

    # --- the GPUInventory -----------------------------------------------------------------------

    def get_inventory(self) -> dict[str, Any] | None:
        self._enter("get_inventory")
        return copy.deepcopy(self.inventory)

    def create_inventory(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._enter("create_inventory")
        if self.inventory is not None:
            raise ApiError(409, "already exists", "create gpuinventories")
        self.inventory = copy.deepcopy(dict(body))
        self.inventory["metadata"].update(uid="inv", generation=1)
        return self._version(self.inventory)

    def patch_inventory_status(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        self._enter("patch_inventory_status")
        if self.inventory is None:
            raise ApiError(404, "not found", "patch gpuinventories/status")
        self._check_version(self.inventory, patch, "patch gpuinventories/status")
        apply_merge(self.inventory.setdefault("status", {}), patch["status"])
        return self._version(self.inventory)

    def touch_inventory(self) -> None:
        """Someone else wrote the object (its resourceVersion moves)."""
        assert self.inventory is not None
        self._version(self.inventory)

    # --- GPUNodes -------------------------------------------------------------------------------

    def create_gpunode(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._enter("create_gpunode")
        name = body["metadata"]["name"]
        if name in self.gpunodes:
            raise ApiError(409, "already exists", "create gpunodes")
        self.gpunodes[name] = copy.deepcopy(dict(body))
        self.gpunodes[name]["metadata"]["uid"] = f"g-{name}"
        return self._version(self.gpunodes[name])

    def patch_gpunode_status(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self._enter("patch_gpunode_status")
        if name not in self.gpunodes:
            raise ApiError(404, "not found", "patch gpunodes/status")
        self._check_version(self.gpunodes[name], patch, "patch gpunodes/status")
        apply_merge(self.gpunodes[name].setdefault("status", {}), patch["status"])
        return self._version(self.gpunodes[name])

    # --- listings -------------------------------------------------------------------------------

    def iter_objects(self, kind: Kind, *, chunk: int = 500) -> Iterator[dict[str, Any]]:
        self._enter("iter_objects")
        return iter(copy.deepcopy(self.listed.get(kind, [])))
