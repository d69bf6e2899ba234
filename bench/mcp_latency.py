"""MCP server latency at 1,000 GPU nodes (8 GPUs each). Prints figures; asserts nothing.

The cache is loaded from models (no cluster needed), exactly as the watch would fill it, and the
process runs with the server's own GC setting (`tune_gc`). Then `get_gpu_inventory` is timed:

- the default answer (no arguments: the first page, as many nodes as fit in `views.TEXT_BUDGET`
  characters, and the whole cluster summary), one node, and a walk over every page at the
  largest page size;
- through the SDK's in-memory `Client`, end to end (the SDK client validates structured output
  against the tool's output schema with `jsonschema`, in pure Python, on every call), and on the
  server alone (`MCPServer.call_tool`: argument validation, the tool, output validation and
  serialisation to structured and text content), i.e. what any client waits for.

Nodes are shaped like production ones (`samples.production_node`: ~40 GPU Feature Discovery and
GPU Operator labels, 12 node conditions).

Targets (issue 12): through the Client, the default answer p99 < 200 ms and one node < 10 ms;
0 API requests per tool call. That last one is not a timing, and a cache loaded from models
could not show it: `tests/integration/mcpserver/test_mcp_cluster_inmemory.py` proves it on a
watch-backed cache against the real API server.

    make bench-mcp
    PYTHONSAFEPATH=1 .venv/bin/python bench/mcp_latency.py --nodes 1000 --calls 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from mcp import Client

from gpu_inventory.mcpserver import views
from gpu_inventory.mcpserver.cache import InventoryCache
from gpu_inventory.mcpserver.server import build_server, tune_gc
from gpu_inventory.testing import samples


def load(nodes: int, gpus: int) -> InventoryCache:
    now = datetime.now(UTC)
    models = [
        samples.production_node(
            f"gpu-node-{i:05d}", gpus=gpus, allocated=i % (gpus + 1), heartbeat=now
        )
        for i in range(nodes)
    ]
    return InventoryCache.from_models(samples.inventory(models), models)


async def timed(calls: int, once: Callable[[], Awaitable[Any]]) -> list[float]:
    await once()  # warm: first-call costs (schema compile, memo fill) are not steady state
    latencies = []
    for _ in range(calls):
        began = time.perf_counter()
        await once()
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies


def line(label: str, latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return (
        f"  {label:<44} p50 {statistics.median(latencies):8.1f} ms   "
        f"p99 {cuts[98]:8.1f} ms   (n={len(latencies)})"
    )


async def main(nodes: int, gpus: int, calls: int) -> None:
    tune_gc()
    began = time.perf_counter()
    cache = load(nodes, gpus)
    print(f"loaded {nodes} GPUNodes x {gpus} GPUs in {time.perf_counter() - began:.1f}s")
    server = build_server(cache=cache)
    default: dict[str, Any] = {}
    one = {"node": f"gpu-node-{nodes // 2:05d}"}

    async with Client(server) as client:

        async def via_client(args: dict[str, Any]) -> dict[str, Any]:
            result = await client.call_tool("get_gpu_inventory", args)
            assert not result.is_error, result.content
            assert result.structured_content is not None
            return dict(result.structured_content)

        async def on_server(args: dict[str, Any]) -> Any:
            result = await server.call_tool("get_gpu_inventory", args)
            assert not getattr(result, "is_error", False), result
            return result

        async def every_page() -> int:
            pages, args = 0, {"limit": views.MAX_LIMIT}
            while True:
                data = await via_client(args)
                pages += 1
                if data["next_cursor"] is None:
                    return pages
                args = {"limit": views.MAX_LIMIT, "cursor": data["next_cursor"]}

        first = await via_client(default)
        text = (await on_server(default)).content[0].text
        print(
            f"default answer: {len(first['nodes'])} of {nodes} nodes, {len(text) / 1e3:.1f} KB "
            f"of text (compact JSON; the same again as structured content); every page at "
            f"limit={views.MAX_LIMIT}: {await every_page()} calls"
        )
        figures = [
            line("Client, default answer", await timed(calls, lambda: via_client(default))),
            line("Client, one node", await timed(calls, lambda: via_client(one))),
            line(
                f"Client, every node ({views.MAX_LIMIT}/page)",
                await timed(max(calls // 20, 3), every_page),
            ),
            line("server only, default answer", await timed(calls, lambda: on_server(default))),
            line("server only, one node", await timed(calls, lambda: on_server(one))),
        ]
        print("get_gpu_inventory latency (targets via Client: p99 < 200 ms default, < 10 ms one):")
        print("\n".join(figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--calls", type=int, default=200, help="calls per figure")
    options = parser.parse_args()
    asyncio.run(main(options.nodes, options.gpus, options.calls))
