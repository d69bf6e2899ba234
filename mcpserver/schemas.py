"""Output schemas that clients validate quickly: the same JSON Schema, spelled flat.

Pure: no I/O. Clients validate every structured result against the tool's output schema; the
official Python SDK's `Client` does it with `jsonschema`, in pure Python, on every call, and
that is most of a call's time (the server answers one node in about a millisecond). Two
spellings pydantic uses cost it most: `$ref` into `$defs` (resolved through `referencing` at
every use) and `anyOf: [{"type": T}, {"type": "null"}]` for each nullable field (two
sub-validations). `flat` inlines every `$ref` (the answers' models are not recursive) and
writes nullable scalars as `"type": [T, "null"]`, which JSON Schema defines to mean the same
(2020-12 validation, section 6.1.1: an array of types is satisfied by any of them); a nullable
object keeps its `anyOf`. Validating
one production node's answer takes about half the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_DEFS = "#/$defs/"
_NULL = {"type": "null"}


def flat(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` with its `$defs` inlined and its nullable scalars as type arrays."""
    definitions = schema.get("$defs", {})
    flattened = _flatten(schema, definitions, ())
    assert isinstance(flattened, dict)
    return flattened


def _flatten(node: Any, definitions: Mapping[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_flatten(item, definitions, seen) for item in node]
    if not isinstance(node, Mapping):
        return node
    reference = node.get("$ref")
    if isinstance(reference, str) and reference.startswith(_DEFS):
        name = reference.removeprefix(_DEFS)
        if name in seen:
            raise ValueError(f"{name} refers to itself; a recursive schema cannot be inlined")
        target = _flatten(definitions[name], definitions, (*seen, name))
        siblings = {k: _flatten(v, definitions, seen) for k, v in node.items() if k != "$ref"}
        return {**target, **siblings}
    out = {k: _flatten(v, definitions, seen) for k, v in node.items() if k != "$defs"}
    choices = out.get("anyOf")
    if isinstance(choices, list) and len(choices) == 2 and _NULL in choices and "type" not in out:
        (other,) = (c for c in choices if c != _NULL)
        if _scalar(other):
            del out["anyOf"]
            out.update(other, type=[other["type"], "null"])
    return out


def _scalar(schema: Any) -> bool:
    """A bare type, or a string with a `format` (which only ever constrains strings, 2020-12
    validation section 7.1, so it means the same beside "null")."""
    if not isinstance(schema, dict) or not isinstance(schema.get("type"), str):
        return False
    return schema.keys() == {"type"} or (
        schema.keys() == {"type", "format"} and schema["type"] == "string"
    )
