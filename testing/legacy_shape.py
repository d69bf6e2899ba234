"""The `get_gpu_inventory` answer users already parse: the older gateway tool's, as a fixture.

`tests/fixtures/get_gpu_inventory.target.json` is that tool's own example answer. This server
answers a superset of it; the tests check, at every level, that each field of the example is
present with the same JSON type (`shape_problems`), and that the example's cluster, stored as
CRs, gives back the example's values (`project` cuts an answer down to the example's fields).
`target_cluster` builds that cluster the way the operator and agents would write it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gpu_inventory.api.models import GPUInventory, GPUNode
from gpu_inventory.testing import samples
from gpu_inventory.testing.binaries import REPO_ROOT

TARGET_FILE = REPO_ROOT / "tests" / "fixtures" / "get_gpu_inventory.target.json"
DATA_MAPS = frozenset({"labels", "conditions"})
"""Objects whose keys are data (label keys, condition types), not field names."""


def target() -> dict[str, Any]:
    return dict(json.loads(TARGET_FILE.read_text()))


def json_type(value: object) -> str:
    """The JSON type of a parsed value (bool is not a number, an integer is not a float)."""
    if value is None:
        return "null"
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string")):
        if isinstance(value, kind):
            return name
    return "array" if isinstance(value, list) else "object"


def shape_problems(expected: object, actual: object, where: str = "$") -> list[str]:
    """Each place where `actual` lacks a field of `expected` or has another JSON type there."""
    if json_type(expected) != json_type(actual):
        return [f"{where}: {json_type(actual)} where the legacy answer has {json_type(expected)}"]
    problems: list[str] = []
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        if where.rsplit(".", 1)[-1] in DATA_MAPS:
            kinds = {json_type(v) for v in expected.values()}
            for key, value in actual.items():
                if json_type(value) not in kinds:
                    problems.append(f"{where}.{key}: {json_type(value)}, expected {kinds}")
            return problems
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{where}.{key}: missing")
            else:
                problems.extend(shape_problems(value, actual[key], f"{where}.{key}"))
    elif isinstance(expected, list) and isinstance(actual, list) and expected:
        for index, item in enumerate(actual):
            problems.extend(shape_problems(expected[0], item, f"{where}[{index}]"))
    return problems


def project(expected: object, actual: object) -> object:
    """`actual` cut down to the fields `expected` has (data maps are kept whole)."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return {
            key: actual[key] if key in DATA_MAPS else project(value, actual[key])
            for key, value in expected.items()
            if key in actual
        }
    if isinstance(expected, list) and isinstance(actual, list) and expected:
        return [project(expected[0], item) for item in actual]
    return actual


def target_cluster(now: datetime) -> tuple[GPUInventory, list[GPUNode]]:
    """The example's cluster: its T4 node exactly as shown, and an A100 node making up the
    example's totals (2 nodes, 4 GPUs, 2 of 4 allocated, types "Tesla T4" and "A100")."""
    example = target()["nodes"][0]
    gpu = example["gpus"][0]
    labels = example["kubernetes"]["labels"]
    conditions = dict(example["kubernetes"]["conditions"])
    t4 = samples.gpunode(
        example["node_name"],
        gpus=[
            samples.gpu(
                gpu["index"],
                name=gpu["name"],
                uuid=gpu["uuid"],
                memory_total=gpu["memory_total"],
                temperature=gpu["temperature"],
                utilization=gpu["utilization"],
            )
        ],
        product=labels["nvidia.com/gpu.product"],
        labels=labels,
        ready=conditions.pop("Ready"),
        conditions=conditions,
        allocated=example["kubernetes"]["gpu_resources"]["allocated"],
        pod_name=example["pod_name"],
        heartbeat=now,
    )
    a100 = samples.gpunode(
        "ip-10-0-0-154", gpus=3, product="A100", gpu_name="A100", allocated=1, heartbeat=now
    )
    return samples.inventory([t4, a100], now=now), [t4, a100]


def assert_is_the_seed_answer(data: Mapping[str, Any]) -> None:
    """`data` (the answer for the example's node in `target_cluster`) is the example: every
    field with its type and value. The legacy gateway listed `gpu_types` in no promised order
    (ours are sorted), and the operator keeps more GPU labels than the example shows."""
    expected = target()
    assert shape_problems(expected, data) == []
    got: Any = project(expected, data)
    assert sorted(got["cluster_summary"].pop("gpu_types")) == sorted(
        expected["cluster_summary"].pop("gpu_types")
    )
    got_labels = got["nodes"][0]["kubernetes"].pop("labels")
    assert got_labels.items() >= expected["nodes"][0]["kubernetes"].pop("labels").items()
    assert got == expected
