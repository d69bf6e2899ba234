"""The MCP surface through the SDK's in-memory Client, on a cache built from models."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp.types import ResourceUpdatedNotification, TextContent

from gpu_inventory.mcpserver import shapes, views
from gpu_inventory.mcpserver.cache import INVENTORY, InventoryCache
from gpu_inventory.mcpserver.server import RESOURCE_URI, build_server
from gpu_inventory.testing import samples
from gpu_inventory.testing.mcpcalls import answer, error_text

NOW = samples.EPOCH + timedelta(minutes=1)
TOOLS = {"get_gpu_inventory", "get_gpu_health", "find_gpu_capacity"}


def cluster_cache() -> InventoryCache:
    nodes = [
        samples.gpunode("t4", gpus=4, allocated=1),
        samples.gpunode(
            "a100",
            gpus=8,
            product="NVIDIA-A100-SXM4-80GB",
            gpu_name="NVIDIA A100-SXM4-80GB",
            allocated=6,
        ),
    ]
    return InventoryCache.from_models(samples.inventory(nodes), nodes)


@asynccontextmanager
async def connect() -> AsyncIterator[Client]:
    """A client on a fresh server. (Not a fixture: the SDK's task groups must be entered and
    left in the test's own task.)"""
    server = build_server(cache=cluster_cache(), clock=lambda: NOW)
    async with Client(server, raise_exceptions=True) as connected:
        yield connected


async def test_tools_are_read_only_typed_and_structured() -> None:
    async with connect() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}

        assert tools.keys() == TOOLS
        for tool in tools.values():
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is True
            assert tool.annotations.idempotent_hint is True
            assert tool.description
            assert tool.output_schema is not None
        inventory = tools["get_gpu_inventory"].input_schema["properties"]
        assert inventory["limit"]["anyOf"][0]["minimum"] == 1
        assert inventory["limit"]["default"] is None  # omitted: a page that fits the budget
        assert all(p.get("description") for p in inventory.values())
        for tool in tools.values():
            assert tool.input_schema["additionalProperties"] is False, tool.name
        severity = tools["get_gpu_health"].input_schema["properties"]["severity"]
        assert severity["enum"] == ["degraded", "unhealthy"]
        count = tools["find_gpu_capacity"].input_schema
        assert count["required"] == ["count"]
        assert count["properties"]["count"]["minimum"] == 1


async def test_inventory_answer_is_structured_and_legacy_shaped() -> None:
    async with connect() as client:
        data = await answer(client, "get_gpu_inventory", {})

        assert data["status"] == "success"
        assert data["cluster_summary"]["total_gpus"] == 12
        assert [n["node_name"] for n in data["nodes"]] == ["a100", "t4"]
        assert data["nodes"][1]["kubernetes"]["gpu_resources"] == {
            "capacity": 4,
            "allocatable": 4,
            "allocated": 1,
            "available": 3,
        }


async def test_without_k8s_metadata_no_node_has_the_key() -> None:
    async with connect() as client:
        data = await answer(client, "get_gpu_inventory", {"include_k8s_metadata": False})

        assert data["nodes"]
        assert all("kubernetes" not in node for node in data["nodes"])


async def test_capacity_and_health_answer() -> None:
    async with connect() as client:
        capacity = await answer(client, "find_gpu_capacity", {"count": 2, "product": "a100"})
        health = await answer(client, "get_gpu_health", {})

        assert [(n["node_name"], n["available"]) for n in capacity["nodes"]] == [("a100", 2)]
        assert health["gpus"] == []


@pytest.mark.parametrize(
    ("tool", "args", "fragments"),
    [
        pytest.param(
            "find_gpu_capacity", {"count": "four"}, ["count", "valid integer"], id="wrong type"
        ),
        pytest.param("find_gpu_capacity", {}, ["count", "Field required"], id="missing"),
        pytest.param(
            "find_gpu_capacity", {"count": 0}, ["count", "greater than or equal to 1"], id="zero"
        ),
        pytest.param(
            "find_gpu_capacity", {"count": -3}, ["count", "greater than or equal to 1"], id="neg"
        ),
        pytest.param(
            "get_gpu_inventory", {"limit": 0}, ["limit", "greater than or equal to 1"], id="limit"
        ),
        pytest.param(
            "get_gpu_inventory",
            {"limit": 501},
            ["limit", "less than or equal to 500"],
            id="limit too big",
        ),
        pytest.param(
            "get_gpu_inventory",
            {"only_unhealthy": "sometimes"},
            ["only_unhealthy", "valid boolean"],
            id="not a boolean",
        ),
        pytest.param(
            "get_gpu_health",
            {"severity": "bad"},
            ["severity", "'degraded' or 'unhealthy'"],
            id="enum",
        ),
        pytest.param(
            "get_gpu_inventory",
            {"node": "gpu-99"},
            ["node 'gpu-99' is not a GPU node", "GPU nodes are: a100, t4"],
            id="unknown node",
        ),
        pytest.param(
            "find_gpu_capacity",
            {"count": 1, "product": "H100"},
            ["product 'H100' matches no GPU product", "NVIDIA A100-SXM4-80GB, Tesla T4"],
            id="unknown product",
        ),
        pytest.param(
            "get_gpu_inventory",
            {"product": ""},
            ["product must be a non-empty string"],
            id="blank product",
        ),
    ],
)
async def test_bad_arguments_are_tool_errors_naming_the_argument(
    tool: str, args: dict[str, Any], fragments: list[str]
) -> None:
    async with connect() as client:
        text = await error_text(client, tool, args)

        assert text.startswith(f"Error executing tool {tool}: ")
        for fragment in fragments:
            assert fragment in text
        assert "Traceback" not in text


async def test_missing_inventory_says_the_operator_is_not_running() -> None:
    server = build_server(cache=InventoryCache.from_models(None, []))
    async with Client(server) as client:
        for tool, args in [
            ("get_gpu_inventory", {}),
            ("get_gpu_health", {}),
            ("find_gpu_capacity", {"count": 1}),
        ]:
            text = await error_text(client, tool, args)
            assert "GPUInventory 'cluster' does not exist" in text
            assert "operator is not running yet" in text
        with pytest.raises(MCPError, match="operator is not running yet"):
            await client.read_resource(RESOURCE_URI)


async def test_resource_is_the_summary_json() -> None:
    async with connect() as client:
        resources = (await client.list_resources()).resources
        assert [(str(r.uri), r.mime_type) for r in resources] == [
            (RESOURCE_URI, "application/json")
        ]

        result = await client.read_resource(RESOURCE_URI)
        content = result.contents[0]
        assert content.mime_type == "application/json"
        body = json.loads(content.text)  # type: ignore[union-attr]
        assert body["cluster_summary"]["gpu_types"] == ["NVIDIA A100-SXM4-80GB", "Tesla T4"]


async def test_listeners_hear_when_the_inventory_changes() -> None:
    cache = cluster_cache()
    server = build_server(cache=cache, clock=lambda: NOW)
    changed = samples.inventory([samples.gpunode("t4", gpus=4, allocated=4)])
    async with (
        Client(server) as client,
        client.listen(resource_subscriptions=[RESOURCE_URI]) as subscription,
    ):
        body = changed.to_wire()
        body["metadata"]["resourceVersion"] = "2"
        cache.apply_event(INVENTORY, "MODIFIED", body)
        with anyio.fail_after(5):
            event = await anext(subscription)
        assert event == ResourceUpdated(uri=RESOURCE_URI)
        summary = json.loads((await client.read_resource(RESOURCE_URI)).contents[0].text)  # type: ignore[union-attr]
        assert summary["cluster_summary"]["gpus_allocated"] == 4


async def test_legacy_clients_get_the_same_answer() -> None:
    server = build_server(cache=cluster_cache(), clock=lambda: NOW)
    async with Client(server, mode="legacy") as client:
        data = await answer(client, "get_gpu_inventory", {"node": "t4"})

    assert [n["node_name"] for n in data["nodes"]] == ["t4"]


async def test_an_unexpected_failure_names_the_tool_and_the_cause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise KeyError("BusReset")

    monkeypatch.setattr(views, "health_answer", broken)
    async with connect() as client:
        text = await error_text(client, "get_gpu_health")

    assert text == (
        "Error executing tool get_gpu_health: internal error in gpu-inventory-mcp "
        "(KeyError: 'BusReset'); this is a bug: the server log has the details, please report it"
    )


@pytest.mark.parametrize(
    "bug",
    [
        pytest.param(lambda: int("four"), id="ValueError"),
        pytest.param(lambda: shapes.ResourceUsage.model_validate({}), id="ValidationError"),
    ],
)
async def test_a_value_error_inside_the_server_is_a_bug_not_an_argument_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, bug: Callable[[], object]
) -> None:
    """Only the views' own ArgumentError reads as "your argument was wrong"; a ValueError from
    anywhere else (pydantic's ValidationError is one) is a bug in the server, logged."""

    def broken(*_: object, **__: object) -> None:
        bug()

    monkeypatch.setattr(views, "inventory_answer", broken)
    async with connect() as client:
        text = await error_text(client, "get_gpu_inventory")

    assert "this is a bug" in text
    assert "get_gpu_inventory failed" in caplog.text
    assert "Traceback" in caplog.text


async def test_an_unknown_argument_is_an_error_listing_the_known_ones() -> None:
    """A misspelt argument must not be silently ignored: the model would think it filtered."""
    async with connect() as client:
        text = await error_text(client, "get_gpu_inventory", {"nodes": "t4"})

    assert "unknown argument 'nodes'" in text
    assert "node, product" in text


async def test_the_text_is_the_structured_answer_as_compact_json() -> None:
    async with connect() as client:
        for tool, args in [
            ("get_gpu_inventory", {}),
            ("get_gpu_health", {}),
            ("find_gpu_capacity", {"count": 1}),
        ]:
            result = await client.call_tool(tool, args)
            (content,) = result.content
            assert isinstance(content, TextContent)
            assert "\n" not in content.text, tool
            assert '": ' not in content.text, tool  # no space after a key either
            assert json.loads(content.text) == result.structured_content, tool


async def test_the_default_page_of_a_production_cluster_fits_the_text_budget() -> None:
    nodes = [samples.production_node(f"gpu-{i:03d}") for i in range(60)]
    server = build_server(cache=InventoryCache.from_models(samples.inventory(nodes), nodes))
    async with Client(server) as client:
        result = await client.call_tool("get_gpu_inventory", {})

    (content,) = result.content
    assert isinstance(content, TextContent)
    assert len(content.text) <= views.TEXT_BUDGET
    assert result.structured_content is not None
    assert result.structured_content["next_cursor"] is not None


async def test_descriptions_reach_the_model_without_source_indentation() -> None:
    async with connect() as client:
        tools = (await client.list_tools()).tools

    for tool in tools:
        assert tool.description
        lines = tool.description.splitlines()
        assert [line for line in lines if line.startswith(" ")] == [], tool.name


async def test_server_info_carries_the_installed_version() -> None:
    server = build_server(cache=cluster_cache(), clock=lambda: NOW)
    async with Client(server, mode="legacy") as client:
        info = client.server_info

    assert info is not None
    assert (info.name, info.version) == (
        "gpu-inventory",
        importlib.metadata.version("gpu-inventory"),
    )


async def test_the_old_only_unhealthy_name_is_refused_with_the_new_one() -> None:
    async with connect() as client:
        text = await error_text(client, "get_gpu_inventory", {"only_unhealthy": True})

    assert "only_unhealthy was renamed only_unhealthy_or_degraded" in text


async def test_older_clients_subscribe_with_resources_subscribe_and_hear_of_changes() -> None:
    """A 2025-era client (the legacy handshake) subscribes the old way and is notified."""
    cache = cluster_cache()
    heard: list[str] = []
    got = anyio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            heard.append(message.params.uri)
            got.set()

    server = build_server(cache=cache, clock=lambda: NOW)
    async with Client(server, mode="legacy", message_handler=on_message) as client:
        resources = client.server_capabilities.resources
        assert resources is not None
        assert resources.subscribe is True
        with pytest.warns(MCPDeprecationWarning):
            await client.subscribe_resource(RESOURCE_URI)
        changed = samples.inventory([samples.gpunode("t4", gpus=4, allocated=4)])
        body = changed.to_wire()
        body["metadata"]["resourceVersion"] = "2"
        cache.apply_event(INVENTORY, "MODIFIED", body)
        with anyio.fail_after(5):
            await got.wait()
        assert heard == [RESOURCE_URI]

        with (
            pytest.raises(MCPError, match="no such resource 'gpuinventory://other'"),
            pytest.warns(MCPDeprecationWarning),
        ):
            await client.subscribe_resource("gpuinventory://other")
