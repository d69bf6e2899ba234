"""Generate `crds/*.yaml` from the pydantic models (`make crds`).

Pure apart from `main()`, which writes the files. Pydantic's JSON schema is turned into a
Kubernetes structural schema: `$ref`s inlined, `Optional[X]` as `nullable`, titles dropped,
defaults kept only under `spec` (status has one writer, which writes every field it means).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from gpu_inventory.api import constants
from gpu_inventory.api.models import GPUInventorySpec, GPUInventoryStatus, GPUNodeStatus

Schema = dict[str, Any]

_DROP = {"title", "$defs", "discriminator"}


def structural(model: type[BaseModel], *, keep_defaults: bool) -> Schema:
    """The structural OpenAPI v3 schema of `model`'s wire form."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema: Schema = _convert(raw, defs, keep_defaults=keep_defaults)
    return schema


def _convert(node: Any, defs: dict[str, Schema], *, keep_defaults: bool) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs, keep_defaults=keep_defaults) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _convert({**target, **extra}, defs, keep_defaults=keep_defaults)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {node['anyOf']!r} structurally")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        merged = _convert({**options[0], **rest}, defs, keep_defaults=keep_defaults)
        merged["nullable"] = True
        return merged

    out: Schema = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and not keep_defaults):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "propertyNames":
            # Structural schemas cannot constrain map keys; CEL can.
            limit = value.get("maxLength")
            if limit is not None:
                out.setdefault("x-kubernetes-validations", []).append(
                    {
                        "rule": f"self.all(k, size(k) <= {limit})",
                        "message": f"keys must be at most {limit} characters",
                    }
                )
        elif key in ("properties",):
            out[key] = {
                name: _convert(sub, defs, keep_defaults=keep_defaults)
                for name, sub in value.items()
            }
        else:
            out[key] = _convert(value, defs, keep_defaults=keep_defaults)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("format") == "date-time":
        out["type"] = "string"
    return _ordered(out)


_FIRST = ("type", "description", "format", "nullable")


def _ordered(schema: Schema) -> Schema:
    """Type and description first: the YAML reads like `kubectl explain`."""
    head = {key: schema[key] for key in _FIRST if key in schema}
    return {**head, **{k: v for k, v in schema.items() if k not in head}}


def _root(spec: Schema | None, status: Schema, validations: list[Schema]) -> Schema:
    properties: Schema = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
    }
    if spec is not None:
        properties["spec"] = {**spec, "default": {}}
    properties["status"] = status
    root: Schema = {"type": "object", "properties": properties}
    if validations:
        root["x-kubernetes-validations"] = validations
    return root


def _crd(
    *,
    kind: str,
    plural: str,
    short_name: str,
    description: str,
    schema: Schema,
    columns: list[Schema],
) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{constants.GROUP}"},
        "spec": {
            "group": constants.GROUP,
            "scope": "Cluster",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": [constants.CATEGORY],
            },
            "versions": [
                {
                    "name": constants.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": {"description": description, **schema}},
                }
            ],
        },
    }


def _column(name: str, type_: str, path: str, description: str = "") -> Schema:
    column: Schema = {"name": name, "type": type_, "jsonPath": path}
    if description:
        column["description"] = description
    return column


_AGE = _column("Age", "date", ".metadata.creationTimestamp")


def inventory_crd() -> Schema:
    summary = ".status.summary"
    return _crd(
        kind=constants.INVENTORY_KIND,
        plural=constants.INVENTORY_PLURAL,
        short_name="gpuinv",
        description=(
            "The cluster's GPU inventory: capacity, allocatable, allocated and health, kept "
            "current by the gpu-inventory operator. Exactly one exists, named 'cluster'."
        ),
        schema=_root(
            structural(GPUInventorySpec, keep_defaults=True),
            structural(GPUInventoryStatus, keep_defaults=False),
            [
                {
                    "rule": f"self.metadata.name == '{constants.INVENTORY_NAME}'",
                    "message": (
                        "GPUInventory is a cluster singleton: its name must be "
                        f"'{constants.INVENTORY_NAME}'"
                    ),
                }
            ],
        ),
        columns=[
            _column("Nodes", "integer", f"{summary}.nodes", "GPU nodes"),
            _column("GPUs", "integer", f"{summary}.gpus", "Physical GPUs"),
            _column("Allocatable", "integer", f"{summary}.allocatable"),
            _column("Allocated", "integer", f"{summary}.allocated"),
            _column("Available", "integer", f"{summary}.available"),
            _column("Unhealthy", "integer", f"{summary}.unhealthyGPUs"),
            _column("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
            _AGE,
        ],
    )


def gpunode_crd() -> Schema:
    return _crd(
        kind=constants.NODE_KIND,
        plural=constants.NODE_PLURAL,
        short_name="gpunode",
        description=(
            "One GPU node: NVML readings and GPU health written by the node agent, and the "
            "Kubernetes view (labels, conditions, GPU resources) written by the operator."
        ),
        schema=_root(None, structural(GPUNodeStatus, keep_defaults=False), []),
        columns=[
            _column("GPUs", "integer", ".status.summary.gpus"),
            _column("Product", "string", ".status.summary.product"),
            _column("Allocated", "integer", ".status.kubernetes.allocated"),
            _column("Health", "string", ".status.summary.health"),
            _column("Agent", "string", ".status.kubernetes.agentState"),
            _AGE,
        ],
    )


def render(crd: Schema) -> str:
    header = "# Generated by `make crds` from api/models.py. Do not edit by hand.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=100)


def generated() -> dict[str, str]:
    """File name -> content, for every CRD."""
    return {
        f"{constants.GROUP}_{constants.INVENTORY_PLURAL}.yaml": render(inventory_crd()),
        f"{constants.GROUP}_{constants.NODE_PLURAL}.yaml": render(gpunode_crd()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("crds"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, content in generated().items():
        (args.out / name).write_text(content)
        print(f"wrote {args.out / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
