"""MCP tool calls as tests, the e2e test and the demo make them: the structured answer, the
error text, or the answer once it passes a check (the cache's watch delivers within a second)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mcp import Client
from mcp.types import CallToolResult, TextContent

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
