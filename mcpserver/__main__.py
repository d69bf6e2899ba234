"""`gpu-inventory-mcp`: serve the GPU inventory over stdio (default) or streamable HTTP."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from gpu_inventory.mcpserver.settings import Settings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu-inventory-mcp",
        description="MCP server answering GPU questions from the cluster's GPUInventory. "
        "Every option can also be set as GPU_INVENTORY_MCP_<OPTION>.",
    )
    parser.add_argument("--transport", choices=["stdio", "http"])
    parser.add_argument("--host", help="HTTP listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP listen port (default 8080)")
    parser.add_argument(
        "--allowed-hosts",
        help="comma-separated Host header values the HTTP app accepts besides localhost, "
        "127.0.0.1 and [::1] (always allowed, any port), e.g. "
        "'gpu-inventory-mcp.gpu-inventory.svc:*'",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default $KUBECONFIG or in-cluster)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument(
        "--auth", choices=["kubernetes", "none"], help="HTTP auth (default kubernetes)"
    )
    parser.add_argument(
        "--token-audiences",
        help="comma-separated audiences a caller's token must be meant for (default "
        "gpu-inventory-mcp: kubectl create token SA --audience gpu-inventory-mcp)",
    )
    parser.add_argument(
        "--allow-apiserver-audience",
        action="store_true",
        default=None,
        help="development only: also accept tokens meant for the API server itself",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    return parser.parse_args(argv)


def _items(text: str | None) -> tuple[str, ...] | None:
    return tuple(i.strip() for i in text.split(",") if i.strip()) if text else None


def load_settings(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """The settings a process started with `argv` and `environ` runs with; `ValueError` naming
    the bad option."""
    args = parse_args(argv)
    return Settings.from_env(
        environ,
        transport=args.transport,
        host=args.host,
        port=args.port,
        allowed_hosts=_items(args.allowed_hosts),
        token_audiences=_items(args.token_audiences),
        allow_apiserver_audience=args.allow_apiserver_audience,
        kubeconfig=args.kubeconfig,
        context=args.context,
        auth=args.auth,
        log_level=args.log_level,
    )


def main(argv: Sequence[str] | None = None) -> None:
    try:
        settings = load_settings(argv, os.environ)
    except ValueError as error:
        sys.exit(f"gpu-inventory-mcp: {error}")
    # stdout is the MCP channel under stdio: logs go to stderr.
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from gpu_inventory.mcpserver.server import build_server, tune_gc

    tune_gc()
    if settings.transport == "stdio":
        build_server(settings).run("stdio")
        return

    import uvicorn

    from gpu_inventory.mcpserver.app import build_http_app

    app = build_http_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
