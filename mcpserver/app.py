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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpu_inventory.api import constants
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
    hosts = with_portless_forms((*LOCALHOST, *settings.allowed_hosts))  # port-forward works
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
    app.add_middleware(Guard, security=security, help_401=how_to_authenticate(settings))
    return app


def with_portless_forms(hosts: tuple[str, ...]) -> list[str]:
    """`name:*` (any port) also allows `name` alone: a Host header carries no port for a
    Service or Ingress on port 80 or 443, or for `curl http://localhost/`."""
    forms: list[str] = []
    for host in hosts:
        forms.append(host)
        if host.endswith(":*"):
            forms.append(host[:-2])
    return list(dict.fromkeys(forms))


def how_to_authenticate(settings: Settings) -> str:
    """What a 401 tells the caller to do (RFC 6750 error_description: no quotes or backslashes)."""
    return (
        "send Authorization: Bearer with a Kubernetes token made for this server, e.g. "
        f"kubectl create token <serviceaccount> --audience {settings.token_audiences[0]}; "
        f"its identity needs get on {constants.INVENTORY_PLURAL}.{constants.GROUP} "
        "(bind the gpu-inventory-reader ClusterRole)"
    )


class Guard:
    """Host/Origin checks before any token is reviewed, 503 when no verdict can be had, and a
    401 that says how to get a token.

    The SDK checks Host and Origin inside the transport, i.e. after its auth middleware has
    already sent a TokenReview: a DNS-rebinding page could make the API server do work. Here
    the same checks (the SDK's own `TransportSecurityMiddleware`) run first. Health probes are
    served whatever their Host (the kubelet calls them by pod IP), and their Authorization
    header is dropped: the SDK's auth middleware would otherwise review it on every probe.
    """

    def __init__(self, app: ASGIApp, *, security: TransportSecuritySettings, help_401: str) -> None:
        self.app = app
        self.checks = TransportSecurityMiddleware(security)
        self.help_401 = help_401

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in HEALTH_PATHS:
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
            scope = {**scope, "headers": headers}
        else:
            refusal = await self.checks.validate_request(Request(scope), is_post=False)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        try:
            await self.app(scope, receive, self._explaining_401(send))
        except AuthUnavailableError as error:
            await _unavailable(str(error), send)

    def _explaining_401(self, send: Send) -> Send:
        """`send`, with the SDK's bare "Authentication required" 401 replaced by one that says
        what token to bring (same error code, same shape)."""
        body = json.dumps({"error": "invalid_token", "error_description": self.help_401}).encode()
        challenge = f'Bearer error="invalid_token", error_description="{self.help_401}"'
        replacing = False

        async def sending(message: Message) -> None:
            nonlocal replacing
            if message["type"] == "http.response.start" and message["status"] == 401:
                replacing = True
                kept = [
                    (k, v)
                    for k, v in message["headers"]
                    if k.lower() not in (b"content-length", b"www-authenticate")
                ]
                message = {
                    **message,
                    "headers": [
                        *kept,
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", challenge.encode()),
                    ],
                }
            elif message["type"] == "http.response.body" and replacing:
                message = {"type": "http.response.body", "body": body}
            await send(message)

        return sending


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
