"""The output schemas clients validate against: flat (no `$ref`, nullable scalars as type
arrays) so the SDK's `Client` validates quickly, and judging every answer as pydantic's own
schema does. Checked with `jsonschema`, the validator the SDK's client runs."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # the validator the SDK client runs
import pytest
from mcp import Client
from mcp.server.mcpserver.utilities.func_metadata import StrictJsonSchema
from pydantic import BaseModel, TypeAdapter

from gpu_inventory.mcpserver import schemas, shapes, views
from gpu_inventory.mcpserver.cache import InventoryCache
from gpu_inventory.mcpserver.server import build_server
from gpu_inventory.testing import samples

NOW = samples.EPOCH + timedelta(minutes=1)
Mutation = Callable[[dict[str, Any]], None]


def pydantic_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The schema the SDK would publish (its own generator)."""
    return dict(TypeAdapter(model).json_schema(schema_generator=StrictJsonSchema))


def cluster() -> list[Any]:
    odd = samples.gpu(0, node="odd").model_copy(update={"memory_total": None, "temperature": None})
    sick = samples.gpu(
        1, node="odd", health="Degraded", reasons=["XID 94"], xids=[samples.xid(94, minute=3)]
    )
    return [samples.production_node("a"), samples.gpunode("odd", gpus=[odd, sick])]


def answers() -> list[tuple[type[BaseModel], dict[str, Any]]]:
    snapshot = samples.snapshot(cluster())
    common: dict[str, Any] = {"now": NOW, "max_staleness_seconds": 300}
    return [
        (
            shapes.InventoryAnswer,
            json.loads(views.inventory_answer(snapshot, **common).model_dump_json()),
        ),
        (
            shapes.HealthAnswer,
            json.loads(views.health_answer(snapshot, **common).model_dump_json()),
        ),
        (
            shapes.CapacityAnswer,
            json.loads(views.capacity_answer(snapshot, count=1, **common).model_dump_json()),
        ),
    ]


def nullable_choices(schema: Any) -> list[Any]:
    """Every `anyOf` that lets null through, anywhere in `schema`."""
    if isinstance(schema, list):
        return [found for item in schema for found in nullable_choices(item)]
    if not isinstance(schema, dict):
        return []
    own = [schema["anyOf"]] if {"type": "null"} in schema.get("anyOf", []) else []
    return own + [found for value in schema.values() for found in nullable_choices(value)]


async def test_published_output_schemas_are_flat() -> None:
    nodes = cluster()
    server = build_server(cache=InventoryCache.from_models(samples.inventory(nodes), nodes))
    async with Client(server) as client:
        tools = (await client.list_tools()).tools

    for tool in tools:
        text = json.dumps(tool.output_schema)
        assert "$ref" not in text, tool.name
        assert "$defs" not in text, tool.name
        # Only a nullable object keeps its anyOf; nullable scalars are type arrays.
        for choices in nullable_choices(tool.output_schema):
            assert [c.get("type") for c in choices] == ["object", "null"], (tool.name, choices)


MUTATIONS: list[tuple[str, Mutation]] = [
    ("unchanged", lambda d: None),
    ("a required field missing", lambda d: d.pop("warnings")),
    ("a string where an integer goes", lambda d: d.update(status=7)),
    ("a wrong literal", lambda d: d.update(status="failure")),
    ("null where no null goes", lambda d: d.update(warnings=None)),
    ("a list of the wrong items", lambda d: d.update(warnings=[1])),
]


@pytest.mark.parametrize(("what", "mutate"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_flat_schemas_judge_answers_as_pydantics_do(what: str, mutate: Mutation) -> None:
    for model, answer in answers():
        changed = copy.deepcopy(answer)
        mutate(changed)
        original = jsonschema.Draft202012Validator(pydantic_schema(model))
        flat = jsonschema.Draft202012Validator(schemas.flat(pydantic_schema(model)))
        assert flat.is_valid(changed) == original.is_valid(changed), (what, model.__name__)
        assert flat.is_valid(changed) == (what == "unchanged"), (what, model.__name__)


def test_nested_nullable_fields_are_still_checked() -> None:
    _, answer = answers()[0]
    gpu = answer["nodes"][0]["gpus"][0]
    schema = jsonschema.Draft202012Validator(schemas.flat(pydantic_schema(shapes.InventoryAnswer)))
    for value, valid in ((None, True), (16, True), ("16 GB", False), (1.5, False)):
        gpu["memory_total"] = value
        assert schema.is_valid(answer) is valid, value
    gpu["memory_total"] = 16
    for heartbeat, valid in ((None, True), ("2026-01-01T00:00:00Z", True), (5, False)):
        answer["nodes"][0]["last_heartbeat"] = heartbeat
        assert schema.is_valid(answer) is valid, heartbeat


def test_a_recursive_schema_is_refused() -> None:
    recursive = {
        "$ref": "#/$defs/Tree",
        "$defs": {"Tree": {"properties": {"child": {"$ref": "#/$defs/Tree"}}}},
    }
    with pytest.raises(ValueError, match="refers to itself"):
        schemas.flat(recursive)
