"""MCP tool calls as tests, the e2e test and the demo make them: the structured answer, the
error text, or the answer once it passes a check (the cache's watch delivers within a second);
and the external clients (MCP Inspector CLI, curl, jq) the MCP server's tests run."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from mcp import Client
from mcp.client.subscriptions import Subscription
from mcp.shared.subscriptions import ResourceUpdated
from mcp.types import CallToolResult, TextContent, TextResourceContents

from gpu_inventory.mcpserver.server import RESOURCE_URI
from gpu_inventory.testing.binaries import REPO_ROOT
from gpu_inventory.testing.wait import eventually_async

Answer = dict[str, Any]


def _text(result: CallToolResult) -> str:
    return "\n".join(part.text for part in result.content if isinstance(part, TextContent))


async def answer(client: Client, tool: str, args: Mapping[str, Any] | None = None) -> Answer:
    """The tool's structured answer; an AssertionError (with the tool's text) if it failed."""
    result = await client.call_tool(tool, dict(args or {}))
    assert not result.is_error, _text(result)
    assert result.structured_content is not None, f"{tool} returned no structured content"
    return dict(result.structured_content)


async def error_text(client: Client, tool: str, args: Mapping[str, Any] | None = None) -> str:
    """The text of a tool error; an AssertionError if the call succeeded."""
    result = await client.call_tool(tool, dict(args or {}))
    assert result.is_error, f"{tool} {args} succeeded: {result.structured_content}"
    assert result.structured_content is None, "a tool error carries no structured content"
    return _text(result)


async def answer_when(
    client: Client,
    tool: str,
    args: Mapping[str, Any],
    check: Callable[[Answer], bool],
    *,
    timeout: float = 15.0,
) -> Answer:
    """Call the tool until its answer passes `check`; that answer."""

    async def probe() -> Answer:
        data = await answer(client, tool, args)
        assert check(data), data
        return data

    return await eventually_async(probe, timeout=timeout, what=f"{tool} {dict(args)}")


async def summary_after_update(
    client: Client, subscription: Subscription, *, timeout: float = 15.0
) -> Answer:
    """Wait for the next update on `subscription` (a `client.listen(...)` stream), check that it
    is the inventory resource's, then read that resource: its `cluster_summary`."""
    with anyio.fail_after(timeout):
        event = await anext(subscription)
    assert event == ResourceUpdated(uri=RESOURCE_URI)
    read = await client.read_resource(RESOURCE_URI)
    (content,) = read.contents
    assert isinstance(content, TextResourceContents)
    return dict(json.loads(content.text)["cluster_summary"])


# --- real clients outside Python: the MCP Inspector CLI, curl and jq ----------------------------


@dataclass(frozen=True)
class McpClients:
    """Paths of the external MCP clients the tests run (installed by the project's script)."""

    inspector: str
    curl: str
    jq: str


@functools.cache
def mcp_clients() -> McpClients:
    """Install (once per machine, cached) and find the clients; fail loudly if that cannot be
    done: these tests exist to prove real clients work, so they never skip."""
    script = REPO_ROOT / "hack" / "install-mcp-clients.sh"
    done = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    curl, jq = shutil.which("curl"), shutil.which("jq")
    if curl is None or jq is None:
        raise RuntimeError(f"{script} succeeded but curl or jq is still not on PATH")
    return McpClients(inspector=done.stdout.strip().splitlines()[-1], curl=curl, jq=jq)


def inspector(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> Any:
    """Run `mcp-inspector --cli ARGS` and parse what it prints; AssertionError with its output
    when it fails."""
    done = subprocess.run(
        [mcp_clients().inspector, "--cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    shown = re.sub(r"Bearer \S+", "Bearer <token>", " ".join(args))
    assert done.returncode == 0, f"inspector {shown} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)
