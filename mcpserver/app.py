"""The HTTP app: stateless streamable HTTP at /mcp answering plain JSON, Kubernetes bearer auth,
a DNS-rebinding guard that runs before any token check, /healthz and /readyz.

`build_http_app(settings)` returns a Starlette app for uvicorn (the CLI) or for a test that
serves it on a loopback port. Every MCP reply is one `application/json` body (the SDK's
`json_response` mode), so `curl ... | jq` reads it; only `subscriptions/listen` streams.
"""

from __future__ import annotations

import json
import logging

from mcp.server.auth.provider import TokenVerifier
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gpu_inventory.mcpserver import kube
from gpu_inventory.mcpserver.auth import AuthLimits, AuthUnavailableError, KubernetesTokenVerifier
from gpu_inventory.mcpserver.cache import InventoryCache
from gpu_inventory.mcpserver.server import HEALTH_PATHS, build_server
from gpu_inventory.mcpserver.settings import LOCALHOST, Settings

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
RETRY_AFTER_SECONDS = 5


def kubernetes_verifier(settings: Settings) -> KubernetesTokenVerifier:
    """The token verifier the settings describe, on the settings' kubeconfig."""
    return KubernetesTokenVerifier(
        kube.api_client_factory(settings.kubeconfig, settings.context),
        audiences=settings.token_audiences,
        allow_apiserver_audience=settings.allow_apiserver_audience,
        limits=AuthLimits(
            timeout_seconds=settings.auth_timeout_seconds,
            concurrency=settings.auth_concurrency,
            queue=settings.auth_queue,
            cache_seconds=settings.auth_cache_seconds,
            refusal_cache_seconds=settings.auth_refusal_cache_seconds,
        ),
    )


def build_http_app(
    settings: Settings,
    *,
    cache: InventoryCache | None = None,
    token_verifier: TokenVerifier | None = None,
) -> Starlette:
    """The ASGI app. With `settings.auth == "kubernetes"` (the default) every /mcp request
    needs a bearer token meant for this server that may `get gpuinventories`."""
    if token_verifier is None and settings.auth == "kubernetes":
        token_verifier = kubernetes_verifier(settings)
    if settings.auth == "none":
        log.warning(
            "HTTP auth is off: anyone who can reach %s:%s can read the inventory",
            settings.host,
            settings.port,
        )
    elif settings.allow_apiserver_audience:
        log.warning(
            "accepting tokens meant for the API server itself (development only): a caller "
            "hands this server a credential it could replay against the whole cluster"
        )
    server = build_server(settings, cache=cache, token_verifier=token_verifier)
    hosts = list(dict.fromkeys((*LOCALHOST, *settings.allowed_hosts)))  # port-forward works
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")],
    )
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        transport_security=security,
        host=settings.host,
    )
    # Outermost of the app's middleware, so it runs before the SDK's bearer-auth middleware.
    app.add_middleware(Guard, security=security)
    return app


class Guard:
    """Host/Origin checks before any token is reviewed, and 503 when no verdict can be had.

    The SDK checks Host and Origin inside the transport, i.e. after its auth middleware has
    already sent a TokenReview: a DNS-rebinding page could make the API server do work. Here
    the same checks (the SDK's own `TransportSecurityMiddleware`) run first. Health probes are
    left alone (the kubelet calls them by pod IP).
    """

    def __init__(self, app: ASGIApp, *, security: TransportSecuritySettings) -> None:
        self.app = app
        self.checks = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        refusal = await self.checks.validate_request(Request(scope), is_post=False)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except AuthUnavailableError as error:
            await _unavailable(str(error), send)


async def _unavailable(description: str, send: Send) -> None:
    """503 in the shape of the SDK's auth errors (RFC 6750 JSON body), with Retry-After."""
    body = json.dumps(
        {"error": "temporarily_unavailable", "error_description": description}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
