"""Settings come from GPU_INVENTORY_MCP_* variables, then command-line flags."""

from __future__ import annotations

import pytest

from gpu_inventory.mcpserver.__main__ import parse_args
from gpu_inventory.mcpserver.settings import LOCALHOST, Settings


def test_defaults_are_stdio_with_kubernetes_auth_and_localhost_only() -> None:
    settings = Settings.from_env({})

    assert (settings.transport, settings.auth, settings.allowed_hosts) == (
        "stdio",
        "kubernetes",
        LOCALHOST,
    )


def test_environment_then_flags() -> None:
    environ = {
        "GPU_INVENTORY_MCP_TRANSPORT": "http",
        "GPU_INVENTORY_MCP_PORT": "9000",
        "GPU_INVENTORY_MCP_ALLOWED_HOSTS": "mcp.gpu.svc:*, mcp.gpu.svc.cluster.local:*",
        "GPU_INVENTORY_MCP_AUTH_CACHE_SECONDS": "5",
        "UNRELATED": "x",
    }

    settings = Settings.from_env(environ, port=9100, host=None)
    assert settings.transport == "http"
    assert settings.port == 9100
    assert settings.host == "127.0.0.1"
    assert settings.allowed_hosts == ("mcp.gpu.svc:*", "mcp.gpu.svc.cluster.local:*")
    assert settings.auth_cache_seconds == 5.0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GPU_INVENTORY_MCP_PORT": "http"}, "GPU_INVENTORY_MCP_PORT must be a number"),
        ({"GPU_INVENTORY_MCP_PORT": "70000"}, "port must be between 1 and 65535"),
        ({"GPU_INVENTORY_MCP_TRANSPORT": "sse"}, "transport must be one of"),
        ({"GPU_INVENTORY_MCP_AUTH": "basic"}, "auth must be one of"),
        ({"GPU_INVENTORY_MCP_ALLOWED_HOSTS": " , "}, "allowed_hosts must name at least one"),
        ({"GPU_INVENTORY_MCP_LOG_LEVEL": "chatty"}, "log_level must be one of"),
    ],
)
def test_bad_values_name_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(environ)


def test_command_line_flags() -> None:
    args = parse_args(
        ["--transport", "http", "--port", "8081", "--allowed-hosts", "a:*,b:8081", "--auth", "none"]
    )

    assert (args.transport, args.port, args.allowed_hosts, args.auth) == (
        "http",
        8081,
        "a:*,b:8081",
        "none",
    )
