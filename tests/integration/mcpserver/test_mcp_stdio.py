"""`gpu-inventory-mcp` as a subprocess over stdio, as a local assistant runs it (KUBECONFIG)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import ResourceUpdatedNotification

from gpu_inventory.mcpserver.server import RESOURCE_URI
from gpu_inventory.testing import samples
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.legacy_shape import shape_problems, target, target_cluster
from gpu_inventory.testing.mcpcalls import answer_when, error_text, inspector, summary_after_update
from gpu_inventory.testing.wait import eventually_async

pytestmark = pytest.mark.cluster

COMMAND = str(Path(sys.executable).with_name("gpu-inventory-mcp"))
EXTRA = (
    "memory_used",
    "health",
    "health_reasons",
    "utilization_memory",
    "power_draw_watts",
    "power_limit_watts",
    "pci_bus_id",
    "mig_enabled",
    "recent_xids",
)
"""Fields the answer adds to the seed's GPU object."""


def now() -> datetime:
    return datetime.now(UTC)


def server_process(env: dict[str, str]) -> StdioServerParameters:
    return StdioServerParameters(command=COMMAND, args=["--transport", "stdio"], env=env)


async def test_every_tool_over_stdio(cluster: ControlPlane, objects: Any) -> None:
    nodes = (
        samples.gpunode("t4-a", gpus=4, allocated=1, heartbeat=now()),
        samples.gpunode(
            "a100",
            gpus=[samples.gpu(0, node="a100", name="NVIDIA A100", health="Degraded")],
            product="NVIDIA-A100-SXM4-80GB",
            heartbeat=now(),
        ),
    )
    objects.put(samples.inventory(nodes, now=now()), *nodes)

    async with Client(server_process(cluster.env())) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools == {"get_gpu_inventory", "get_gpu_health", "find_gpu_capacity"}

        data = await answer_when(client, "get_gpu_inventory", {}, lambda d: len(d["nodes"]) == 2)
        assert data["cluster_summary"]["total_gpus"] == 5
        assert [n["node_name"] for n in data["nodes"]] == ["a100", "t4-a"]
        assert data["nodes"][1]["kubernetes"]["gpu_resources"]["allocated"] == 1
        one = await answer_when(
            client,
            "get_gpu_inventory",
            {"node": "t4-a", "include_k8s_metadata": False},
            lambda d: len(d["nodes"]) == 1,
        )
        assert "kubernetes" not in one["nodes"][0]

        health = await answer_when(client, "get_gpu_health", {}, lambda d: True)
        assert [(g["node_name"], g["health"]) for g in health["gpus"]] == [("a100", "Degraded")]
        capacity = await answer_when(client, "find_gpu_capacity", {"count": 2}, lambda d: True)
        assert [n["node_name"] for n in capacity["nodes"]] == ["t4-a"]

        assert "count" in await error_text(client, "find_gpu_capacity", {"count": 0})


async def test_resource_updates_reach_a_stdio_subscriber(
    cluster: ControlPlane, objects: Any
) -> None:
    nodes = (samples.gpunode("t4-a", gpus=4, heartbeat=now()),)
    objects.put(samples.inventory(nodes, now=now()), *nodes)

    async with Client(server_process(cluster.env())) as client:
        await answer_when(client, "get_gpu_inventory", {}, lambda d: len(d["nodes"]) == 1)
        async with client.listen(resource_subscriptions=[RESOURCE_URI]) as subscription:
            busy = (samples.gpunode("t4-a", gpus=4, allocated=2, heartbeat=now()),)
            objects.put_inventory(samples.inventory(busy, now=now()))
            summary = await summary_after_update(client, subscription, timeout=20)
        assert summary["gpus_allocated"] == 2


async def test_stdio_without_an_operator_says_so(cluster: ControlPlane) -> None:
    async with Client(server_process(cluster.env())) as client:

        async def not_running() -> str:
            result = await client.call_tool("get_gpu_inventory", {})
            assert result.is_error
            text: str = result.content[0].text  # type: ignore[union-attr]
            assert "operator is not running yet" in text, text
            return text

        await eventually_async(not_running, timeout=20)


def test_the_inspector_cli_gets_the_seed_answer_over_stdio(
    cluster: ControlPlane, objects: Any
) -> None:
    """The MCP Inspector CLI starts `gpu-inventory-mcp` itself, as a desktop assistant does."""
    inventory, nodes = target_cluster(now())
    objects.put(inventory, *nodes)

    result = inspector(
        "-e", f"KUBECONFIG={cluster.kubeconfig}", COMMAND, "--transport", "stdio",
        "--method", "tools/call", "--tool-name", "get_gpu_inventory",
        "--tool-arg", "node=ip-10-0-0-153",
    )  # fmt: skip

    assert result["isError"] is False
    expected, data = target(), result["structuredContent"]
    assert shape_problems(expected, data) == []
    assert data["nodes"][0]["gpus"] == [
        {**expected["nodes"][0]["gpus"][0], **{k: data["nodes"][0]["gpus"][0][k] for k in EXTRA}}
    ]
    assert {k: data["cluster_summary"][k] for k in ("total_nodes", "total_gpus")} == {
        "total_nodes": 2,
        "total_gpus": 4,
    }


async def test_resource_updates_reach_an_older_stdio_client_that_subscribed(
    cluster: ControlPlane, objects: Any
) -> None:
    """A 2025-era client (the initialize handshake) uses resources/subscribe and is told."""
    nodes = (samples.gpunode("t4-a", gpus=4, heartbeat=now()),)
    objects.put(samples.inventory(nodes, now=now()), *nodes)
    got = anyio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification) and message.params.uri == RESOURCE_URI:
            got.set()

    process = server_process(cluster.env())
    async with Client(process, mode="legacy", message_handler=on_message) as client:
        resources = client.server_capabilities.resources
        assert resources is not None
        assert resources.subscribe is True
        await answer_when(client, "get_gpu_inventory", {}, lambda d: len(d["nodes"]) == 1)
        with pytest.warns(MCPDeprecationWarning):
            await client.subscribe_resource(RESOURCE_URI)
        busy = (samples.gpunode("t4-a", gpus=4, allocated=3, heartbeat=now()),)
        objects.put_inventory(samples.inventory(busy, now=now()))
        with anyio.fail_after(20):
            await got.wait()
