"""MCP server latency at 1,000 GPU nodes (8 GPUs each). Prints figures; asserts nothing.

The cache is loaded from models (no cluster needed), exactly as the watch would fill it, and the
process runs with the server's own GC setting (`tune_gc`). Then `get_gpu_inventory` is timed
for the whole answer (every node) and for a one-node answer:

- through the SDK's in-memory `Client`, end to end. The SDK client validates structured output
  against the tool's output schema with `jsonschema`, in pure Python, on every call;
- on the server alone (`MCPServer.call_tool`: argument validation, the tool, output validation
  and serialisation to structured and text content), i.e. what any client waits for.

Every HTTP request made while timing is counted by wrapping urllib3's pools; a tool call must
make none (it reads the in-memory snapshot).

    make bench-mcp
    PYTHONSAFEPATH=1 .venv/bin/python bench/mcp_latency.py --nodes 1000 --calls 40
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
    whole = {"limit": nodes}
    one = {"node": f"gpu-node-{nodes // 2:05d}"}

    async with Client(server) as client:

        async def via_client(args: dict[str, Any]) -> Any:
            result = await client.call_tool("get_gpu_inventory", args)
            assert not result.is_error, result.content
            return result

        async def on_server(args: dict[str, Any]) -> Any:
            result = await server.call_tool("get_gpu_inventory", args)
            assert not getattr(result, "is_error", False), result
            return result

        size = len((await on_server(whole)).content[0].text)
        print(f"whole answer: {nodes} nodes, {nodes * gpus} GPUs, {size / 1e6:.1f} MB of text")
        with RequestCounter() as requests:
            figures = [
                line("Client, whole answer", await timed(calls, lambda: via_client(whole))),
                line("Client, one node", await timed(calls * 10, lambda: via_client(one))),
                line("server only, whole answer", await timed(calls, lambda: on_server(whole))),
                line("server only, one node", await timed(calls * 10, lambda: on_server(one))),
            ]
        print("get_gpu_inventory latency (targets: p99 < 100 ms whole, < 10 ms one node):")
        print("\n".join(figures))
        print(f"API requests made during {calls * 22 + 4} tool calls: {requests.count}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--calls", type=int, default=40, help="whole-answer calls per figure")
    options = parser.parse_args()
    asyncio.run(main(options.nodes, options.gpus, options.calls))
