"""The HTTP app: stateless streamable HTTP at /mcp, bearer auth, DNS-rebinding guard, /healthz.

`build_http_app(settings)` returns a Starlette app for uvicorn (the CLI) or for a test that
serves it on a loopback port.
"""

from __future__ import annotations

import logging

from mcp.server.auth.provider import TokenVerifier
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette

from gpu_inventory.mcpserver import kube
from gpu_inventory.mcpserver.auth import KubernetesTokenVerifier
from gpu_inventory.mcpserver.cache import InventoryCache
from gpu_inventory.mcpserver.server import build_server
from gpu_inventory.mcpserver.settings import Settings

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"


def build_http_app(
    settings: Settings,
    *,
    cache: InventoryCache | None = None,
    token_verifier: TokenVerifier | None = None,
) -> Starlette:
    """The ASGI app. With `settings.auth == "kubernetes"` (the default) every /mcp request
    needs a bearer token the API server accepts and that may `get gpuinventories`."""
    if token_verifier is None and settings.auth == "kubernetes":
        token_verifier = KubernetesTokenVerifier(
            kube.api_client_factory(settings.kubeconfig, settings.context),
            audiences=settings.token_audiences,
            cache_seconds=settings.auth_cache_seconds,
        )
    if settings.auth == "none":
        log.warning(
            "HTTP auth is off: anyone who can reach %s:%s can read the inventory",
            settings.host,
            settings.port,
        )
    server = build_server(settings, cache=cache, token_verifier=token_verifier)
    hosts = list(settings.allowed_hosts)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")],
    )
    return server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        transport_security=security,
        host=settings.host,
    )
