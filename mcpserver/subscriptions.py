"""Resource updates for clients of the protocol revisions before 2026-07-28.

Clients of 2026-07-28 open `subscriptions/listen` and the SDK's subscription bus feeds them.
Older clients (2025-06-18, 2025-11-25: most of today's) use `resources/subscribe` and expect
`notifications/resources/updated` on their connection. `MCPServer` serves only the former, so
this module adds the latter through the SDK's low-level server, which has the seam for it
(`Server.add_request_handler`; see `lowlevel/server.py`, `resources/subscribe`).

An older client can only be told later if its connection has a channel the server may write to
at any time: stdio has one; the stateless HTTP endpoint does not (a POST's response stream ends
with the response). So over HTTP `initialize` advertises `resources.subscribe: false` to those
clients and `resources/subscribe` says why it is refused; they poll `resources/read`, or move to
2026-07-28 and listen.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

log = logging.getLogger(__name__)

_MAX_SUBSCRIBERS = 256
STATELESS_HTTP_REFUSAL = (
    "resources/subscribe cannot be served over this stateless HTTP endpoint: the server has no "
    "channel to tell you later. Use protocol 2026-07-28 (subscriptions/listen), connect over "
    "stdio, or poll resources/read."
)


class LegacySubscribers:
    """Who subscribed with `resources/subscribe`, and telling them when a resource changes."""

    def __init__(self, uris: Collection[str], *, max_subscribers: int = _MAX_SUBSCRIBERS) -> None:
        self._uris = frozenset(uris)
        self._max = max_subscribers
        self._sessions: OrderedDict[tuple[int, str], tuple[ServerSession, str]] = OrderedDict()

    def install(self, server: MCPServer[Any]) -> None:
        """Serve `resources/subscribe` and `resources/unsubscribe` on `server`.

        The SDK keeps its low-level server private on `MCPServer`; this is the one place that
        reaches it, and the tests over stdio and HTTP fail if that ever changes."""
        lowlevel = server._lowlevel_server  # no public seam: see the docstring
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        lowlevel.add_request_handler(
            "resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe
        )
        server.middleware.append(_no_subscribe_over_stateless_http)

    async def _subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        if ctx.request is not None:  # an HTTP request: the endpoint is stateless
            raise MCPError(code=INVALID_PARAMS, message=STATELESS_HTTP_REFUSAL)
        uri = str(params.uri)
        if uri not in self._uris:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"no such resource {uri!r}; resources: {', '.join(sorted(self._uris))}",
            )
        self._sessions[(id(ctx.session), uri)] = (ctx.session, uri)
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)
        return EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        self._sessions.pop((id(ctx.session), str(params.uri)), None)
        return EmptyResult()

    async def publish(self, uri: str) -> None:
        """Tell every subscriber of `uri` (best effort: a dead connection is dropped)."""
        for key, (session, subscribed) in list(self._sessions.items()):
            if subscribed != uri:
                continue
            try:
                await session.send_resource_updated(uri)
            except Exception:  # a closed connection: forget it
                log.debug("dropping a resources/subscribe subscriber", exc_info=True)
                self._sessions.pop(key, None)


async def _no_subscribe_over_stateless_http(
    ctx: ServerRequestContext[Any, Any], call_next: Any
) -> Any:
    """Tell older HTTP clients in `initialize` that subscriptions are not served to them."""
    result = await call_next(ctx)
    if ctx.method == "initialize" and ctx.request is not None and isinstance(result, dict):
        resources = (result.get("capabilities") or {}).get("resources")
        if isinstance(resources, dict):
            resources["subscribe"] = False
    return result
