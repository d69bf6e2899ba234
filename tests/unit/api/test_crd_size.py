"""The largest GPUNode the schema admits stays far below etcd's 1.5 MiB request limit.

The object is built from the schema itself: every list at maxItems, every string at maxLength,
every map at maxProperties. A broken or hostile agent cannot write anything bigger.
"""

from __future__ import annotations

import json
from typing import Any

from gpu_inventory.api import crdgen, models

ETCD_REQUEST_LIMIT = 1_572_864  # 1.5 MiB, etcd's default --max-request-bytes


def largest(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "object":
        if "additionalProperties" in schema:
            count = schema["maxProperties"]
            key_limit = 317  # the largest key bound any map in our schemas declares
            return {
                f"{i:0{key_limit}d}": largest(schema["additionalProperties"]) for i in range(count)
            }
        return {name: largest(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [largest(schema["items"]) for _ in range(schema["maxItems"])]
    if kind == "string":
        if "enum" in schema:
            return max(schema["enum"], key=len)
        if schema.get("format") == "date-time":
            return "2026-11-25T00:00:00.000000Z"
        return "x" * schema["maxLength"]
    if kind == "integer":
        return -(10**18)
    if kind == "number":
        return -1.2345678901234567e300
    return True


def test_the_largest_valid_gpunode_is_far_below_the_etcd_limit() -> None:
    root = crdgen.gpunode_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    size = len(json.dumps(largest(root["properties"]["status"])))
    assert size < ETCD_REQUEST_LIMIT // 2, f"worst-case GPUNode status is {size} bytes"


def test_a_node_row_is_compact() -> None:
    root = crdgen.inventory_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    row_schema = root["properties"]["status"]["properties"]["nodes"]["items"]
    typical = {
        "name": "ip-10-0-0-153.ec2.internal",
        "product": "NVIDIA-H100-80GB-HBM3",
        "ready": True,
        "allocatable": 8,
        "allocated": 6,
        "gpus": 8,
        "unhealthy": 0,
        "agent": "Reporting",
    }
    # `source` is written only on DRA nodes' rows: a device-plugin row is as compact as ever.
    assert set(typical) | {"source"} == set(row_schema["properties"])
    assert models.NodeRow.model_validate(typical).to_wire() == typical
    # 5,000 such rows fit well under the limit, leaving room for everything else.
    assert 5_000 * len(json.dumps(typical)) < ETCD_REQUEST_LIMIT * 0.6
