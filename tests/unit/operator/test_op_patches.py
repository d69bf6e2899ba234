"""The merge patches the writer sends: only the difference, null for what left, none if equal."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_inventory.operator import patches

BASE: dict[str, Any] = {
    "summary": {"nodes": 2, "allocated": 3, "products": ["T4"]},
    "nodes": [{"name": "a", "allocated": 3}, {"name": "b", "allocated": 0}],
    "conditions": [{"type": "Ready", "status": "True"}],
}


@pytest.mark.parametrize(
    ("case", "current", "desired", "want"),
    [
        ("nothing changed", BASE, BASE, {}),
        (
            "a number inside a map",
            BASE,
            BASE | {"summary": BASE["summary"] | {"allocated": 4}},
            {"summary": {"allocated": 4}},
        ),
        (
            "a list is replaced whole",
            BASE,
            BASE | {"nodes": [{"name": "a", "allocated": 3}]},
            {"nodes": [{"name": "a", "allocated": 3}]},
        ),
        ("a key that left becomes null", {"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        (
            "a map key that left becomes null, the rest is untouched",
            {"labels": {"x": "1", "y": "2"}},
            {"labels": {"x": "1"}},
            {"labels": {"y": None}},
        ),
        ("no current state: everything", None, {"a": {"b": 1}}, {"a": {"b": 1}}),
    ],
)
def test_merge_patch(
    case: str, current: dict[str, Any] | None, desired: dict[str, Any], want: dict[str, Any]
) -> None:
    assert patches.merge_patch(current, desired) == want, case


def test_inventory_patch_is_conditional_on_the_version_it_was_computed_from() -> None:
    got = patches.inventory_status_patch(
        BASE, BASE | {"summary": {"nodes": 3}}, resource_version="17"
    )
    assert got == {
        "status": {"summary": {"nodes": 3, "allocated": None, "products": None}},
        "metadata": {"resourceVersion": "17"},
    }
    assert patches.inventory_status_patch(BASE, BASE, resource_version="17") == {}


def test_gpunode_patch_touches_only_status_kubernetes_and_is_conditional() -> None:
    current = {"labels": {"a": "1"}, "allocated": 1, "agentState": "Missing"}
    desired = {"labels": {"a": "1"}, "allocated": 2, "agentState": "Missing"}
    assert patches.gpunode_status_patch(current, desired, resource_version="8") == {
        "status": {"kubernetes": {"allocated": 2}},
        "metadata": {"resourceVersion": "8"},
    }
    assert patches.gpunode_status_patch(desired, desired, resource_version="8") == {}
