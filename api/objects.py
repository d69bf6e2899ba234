"""Build the API objects the components create, and read raw objects into models.

Pure: no I/O. Reading fails with `InvalidObjectError`, whose message names the object and the
first offending fields, so a caller can log it and skip the object instead of crashing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic

from gpu_inventory.api import constants, errors
from gpu_inventory.api.models import GPUInventory, GPUInventorySpec, GPUNode

_M = TypeVar("_M", bound=pydantic.BaseModel)


class InvalidObjectError(ValueError):
    """A raw object does not fit the API models."""


def inventory_object(spec: GPUInventorySpec | None = None) -> dict[str, Any]:
    """The `cluster` GPUInventory with `spec` (defaults when None)."""
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.INVENTORY_KIND,
        "metadata": {"name": constants.INVENTORY_NAME},
        "spec": (spec or GPUInventorySpec()).to_wire(),
    }


def gpunode_object(node_name: str, node_uid: str) -> dict[str, Any]:
    """A GPUNode owned by its Node, so deleting the Node garbage-collects it."""
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.NODE_KIND,
        "metadata": {
            "name": node_name,
            "labels": {"app.kubernetes.io/managed-by": "gpu-inventory"},
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": node_name,
                    "uid": node_uid,
                    "blockOwnerDeletion": False,
                }
            ],
        },
    }


def _read(model: type[_M], body: Mapping[str, Any]) -> _M:
    try:
        return model.model_validate(dict(body))
    except pydantic.ValidationError as error:
        meta = body.get("metadata")
        name = meta.get("name", "?") if isinstance(meta, Mapping) else "?"
        raise InvalidObjectError(
            f"{model.__name__} {name!r} is invalid: {errors.validation_summary(error)}"
        ) from error


def read_inventory(body: Mapping[str, Any]) -> GPUInventory:
    return _read(GPUInventory, body)


def read_gpunode(body: Mapping[str, Any]) -> GPUNode:
    return _read(GPUNode, body)
