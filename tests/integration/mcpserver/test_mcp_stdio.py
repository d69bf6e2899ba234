"""`gpu-inventory-mcp` as a subprocess over stdio, as a local assistant runs it (KUBECONFIG)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.subscriptions import ResourceUpdated

from gpu_inventory.mcpserver.server import RESOURCE_URI
from gpu_inventory.testing import samples
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.mcpcalls import answer_when, error_text
from gpu_inventory.testing.wait import eventually_async

pytestmark = pytest.mark.cluster

COMMAND = str(Path(sys.executable).with_name("gpu-inventory-mcp"))


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
            with anyio.fail_after(20):
                event = await anext(subscription)
            assert event == ResourceUpdated(uri=RESOURCE_URI)
        read = await client.read_resource(RESOURCE_URI)
        summary = json.loads(read.contents[0].text)["cluster_summary"]  # type: ignore[union-attr]
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
