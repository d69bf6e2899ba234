"""Settings come from GPU_INVENTORY_MCP_* variables, then command-line flags."""

from __future__ import annotations

import math

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
    # localhost stays allowed whatever is added, so `kubectl port-forward` always works.
    assert settings.allowed_hosts == (*LOCALHOST, "mcp.gpu.svc:*", "mcp.gpu.svc.cluster.local:*")
    assert settings.auth_cache_seconds == 5.0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GPU_INVENTORY_MCP_PORT": "http"}, "GPU_INVENTORY_MCP_PORT must be a number"),
        ({"GPU_INVENTORY_MCP_PORT": "70000"}, "port must be between 1 and 65535"),
        ({"GPU_INVENTORY_MCP_TRANSPORT": "sse"}, "transport must be one of"),
        ({"GPU_INVENTORY_MCP_AUTH": "basic"}, "auth must be one of"),
        ({"GPU_INVENTORY_MCP_TOKEN_AUDIENCES": " , "}, "token_audiences must name at least"),
        (
            {"GPU_INVENTORY_MCP_ALLOW_APISERVER_AUDIENCE": "maybe"},
            "GPU_INVENTORY_MCP_ALLOW_APISERVER_AUDIENCE must be true or false",
        ),
        ({"GPU_INVENTORY_MCP_AUTH_TIMEOUT_SECONDS": "0"}, "auth_timeout_seconds must be > 0"),
        ({"GPU_INVENTORY_MCP_AUTH_CONCURRENCY": "0"}, "auth_concurrency must be >= 1"),
        ({"GPU_INVENTORY_MCP_AUTH_QUEUE": "-1"}, "auth_queue must be >= 0"),
        (
            {"GPU_INVENTORY_MCP_AUTH_REFUSAL_CACHE_SECONDS": "-1"},
            "auth_refusal_cache_seconds must be >= 0",
        ),
        ({"GPU_INVENTORY_MCP_LOG_LEVEL": "chatty"}, "log_level must be one of"),
        # float("inf") and float("nan") parse; a timeout of inf never fires, and nan compares
        # false with everything, so "nan < 0" would let it through as well.
        (
            {"GPU_INVENTORY_MCP_AUTH_TIMEOUT_SECONDS": "inf"},
            "GPU_INVENTORY_MCP_AUTH_TIMEOUT_SECONDS must be a finite number",
        ),
        (
            {"GPU_INVENTORY_MCP_MAX_STALENESS_SECONDS": "nan"},
            "GPU_INVENTORY_MCP_MAX_STALENESS_SECONDS must be a finite number",
        ),
        (
            {"GPU_INVENTORY_MCP_AUTH_CACHE_SECONDS": "-Infinity"},
            "GPU_INVENTORY_MCP_AUTH_CACHE_SECONDS must be a finite number",
        ),
    ],
)
def test_bad_values_name_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(environ)


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_settings_built_in_code_refuse_non_finite_durations(value: float) -> None:
    with pytest.raises(ValueError, match="auth_timeout_seconds must be a finite number"):
        Settings(auth_timeout_seconds=value).check()


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


def test_tokens_must_be_meant_for_this_server_by_default() -> None:
    settings = Settings.from_env({})

    assert settings.token_audiences == ("gpu-inventory-mcp",)
    assert settings.allow_apiserver_audience is False


def test_audience_flags_and_variables_are_read() -> None:
    environ = {
        "GPU_INVENTORY_MCP_TOKEN_AUDIENCES": "gpu-inventory-mcp,other",
        "GPU_INVENTORY_MCP_ALLOW_APISERVER_AUDIENCE": "true",
    }
    assert Settings.from_env(environ).token_audiences == ("gpu-inventory-mcp", "other")
    assert Settings.from_env(environ).allow_apiserver_audience is True

    args = parse_args(["--token-audiences", "a,b", "--allow-apiserver-audience"])
    assert (args.token_audiences, args.allow_apiserver_audience) == ("a,b", True)
    assert parse_args([]).allow_apiserver_audience is None  # unset: the variable decides
