"""MCP server latency at 1,000 GPU nodes (8 GPUs each). Prints figures; asserts nothing.

The cache is loaded from models (no cluster needed), exactly as the watch would fill it, and the
process runs with the server's own GC setting (`tune_gc`). Then `get_gpu_inventory` is timed:

- the default answer (no arguments: the first page, `views.DEFAULT_LIMIT` nodes, and the whole
  cluster summary), one node, and a walk over every page at the largest page size;
- through the SDK's in-memory `Client`, end to end (the SDK client validates structured output
  against the tool's output schema with `jsonschema`, in pure Python, on every call), and on the
  server alone (`MCPServer.call_tool`: argument validation, the tool, output validation and
  serialisation to structured and text content), i.e. what any client waits for.

Targets (issue 12): through the Client, the default answer p99 < 200 ms and one node < 10 ms;
0 API requests per tool call. Every HTTP request made while timing is counted by wrapping
urllib3's pools; a tool call must make none (it reads the in-memory snapshot).

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

import urllib3
from mcp import Client

from gpu_inventory.mcpserver import views
from gpu_inventory.mcpserver.cache import InventoryCache
from gpu_inventory.mcpserver.server import build_server, tune_gc
from gpu_inventory.testing import samples


class RequestCounter:
    """Counts every request sent through urllib3 (the kubernetes client's transport): each one,
    HTTPS too, passes through `HTTPConnectionPool.urlopen` exactly once."""

    def __init__(self) -> None:
        self.count = 0
        self._pool: Any = urllib3.connectionpool.HTTPConnectionPool
        self._original = self._pool.urlopen

    def __enter__(self) -> RequestCounter:
        def counting(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return self._original(*args, **kwargs)

        self._pool.urlopen = counting
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.urlopen = self._original


def load(nodes: int, gpus: int) -> InventoryCache:
    now = datetime.now(UTC)
    models = [
        samples.gpunode(f"gpu-node-{i:05d}", gpus=gpus, allocated=i % (gpus + 1), heartbeat=now)
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

        first = await on_server(default)
        print(
            f"default answer: {views.DEFAULT_LIMIT} of {nodes} nodes, "
            f"{len(first.content[0].text) / 1e3:.0f} KB of text (the same again as structured "
            f"content); every page at limit={views.MAX_LIMIT}: {await every_page()} calls"
        )
        with RequestCounter() as requests:
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
        tool_calls = 4 * calls + max(calls // 20, 3) * -(-nodes // views.MAX_LIMIT) + 5
        print(f"API requests made during {tool_calls} tool calls: {requests.count}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--calls", type=int, default=200, help="calls per figure")
    options = parser.parse_args()
    asyncio.run(main(options.nodes, options.gpus, options.calls))
