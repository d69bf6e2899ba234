"""The chart's commands, args and env, given to the components' own parsers.

Each workload is rendered by real Helm; its container's env (values and downward-API fields) and
`$(VAR)` references in its args are resolved as the kubelet does (`testing.containers`), and
the result goes through the same parsers the console scripts run: the operator's `_parser` and
`build_config`, the agent's `parser` and `agent_config`, the MCP server's `parse_args` and
`Settings.from_env`. A flag a component does not know, or a setting that does not arrive, fails
here instead of in a CrashLoopBackOff.
"""

from __future__ import annotations

import importlib.metadata
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

import pytest

from gpu_inventory.mcpserver import __main__ as mcp_main
from gpu_inventory.mcpserver.settings import ENV_PREFIX as MCP_ENV_PREFIX
from gpu_inventory.mcpserver.settings import LOCALHOST, Settings
from gpu_inventory.nodeagent.config import AgentConfig
from gpu_inventory.nodeagent.main import agent_config
from gpu_inventory.nodeagent.main import parser as agent_parser
from gpu_inventory.operator.__main__ import _parser as operator_parser
from gpu_inventory.operator.__main__ import build_config
from gpu_inventory.operator.config import ENV_PREFIX as OPERATOR_ENV_PREFIX
from gpu_inventory.operator.config import OperatorConfig
from gpu_inventory.testing import containers, helm

NAMESPACE = "gpu-fleet"
POD = containers.Pod(name="the-pod-0", namespace=NAMESPACE, node_name="gpu-node-7")
ENTRY_POINTS = {
    "gpu-inventory-operator": "gpu_inventory.operator.__main__:main",
    "gpu-inventory-agent": "gpu_inventory.nodeagent.__main__:main",
    "gpu-inventory-mcp": "gpu_inventory.mcpserver.__main__:main",
}
TUNED = {
    "operator.metricsPort": "9100",
    "operator.healthPort": "8088",
    "agent.healthPort": "9191",
    "mcp.port": "9000",
    "mcp.tokenAudiences": "{gpu-inventory-mcp,assistants}",
    "mcp.allowedHosts": "{mcp.example.com:*}",
}


class ParsedError(Exception):
    """Stops the MCP server's main() once its settings are built."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("parsed")
        self.settings = settings


Started = tuple[dict[str, Any], list[str], dict[str, str]]
"""A container, its argv after the command, its env."""


def started(values: Mapping[str, str] | None = None) -> dict[str, Started]:
    """Per console script, how its container starts it."""
    result = {}
    for obj in helm.objects(helm.template(NAMESPACE, values)):
        if obj["kind"] not in ("Deployment", "DaemonSet"):
            continue
        (container,) = obj["spec"]["template"]["spec"]["containers"]
        env = containers.environment(container, POD)
        command, *args = containers.argv(container, env)
        result[command] = (container, args, env)
    return result


def port(container: Mapping[str, Any], name: str) -> int:
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(number)


def operator_config(args: list[str], env: dict[str, str]) -> tuple[Any, OperatorConfig]:
    parsed = operator_parser().parse_args(args)
    known = {OPERATOR_ENV_PREFIX + f.upper() for f in OperatorConfig.__dataclass_fields__}
    unknown = {k for k in env if k.startswith(OPERATOR_ENV_PREFIX)} - known
    assert not unknown, f"the operator reads no {sorted(unknown)}"
    return parsed, build_config(parsed, environ=env)


def mcp_settings(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings `gpu-inventory-mcp` builds from these args and this environment."""

    class Spy(Settings):
        @classmethod
        def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
            raise ParsedError(Settings.from_env(environ, **overrides))

    known = {MCP_ENV_PREFIX + f.upper() for f in Settings.__dataclass_fields__}
    unknown = {k for k in env if k.startswith(MCP_ENV_PREFIX)} - known
    assert not unknown, f"the MCP server reads no {sorted(unknown)}"
    for name in list(os.environ):
        if name.startswith(MCP_ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(mcp_main, "Settings", Spy)
    with pytest.raises(ParsedError) as parsed:
        mcp_main.main(args)
    return parsed.value.settings


def test_each_container_runs_a_console_script_of_the_package() -> None:
    scripts = {
        ep.name: ep.value
        for ep in importlib.metadata.entry_points(group="console_scripts")
        if ep.name.startswith("gpu-inventory-")
    }
    assert scripts == ENTRY_POINTS
    assert set(started()) == set(ENTRY_POINTS)


@pytest.mark.parametrize("values", [{}, TUNED], ids=["defaults", "tuned"])
def test_the_operator_gets_its_ports_lease_and_identity(values: dict[str, str]) -> None:
    container, args, env = started(values)["gpu-inventory-operator"]
    parsed, config = operator_config(args, env)
    assert config.metrics_port == port(container, "metrics")
    liveness = urllib.parse.urlsplit(parsed.liveness)
    assert (liveness.hostname, liveness.port) == ("0.0.0.0", port(container, "health"))
    assert liveness.path == container["livenessProbe"]["httpGet"]["path"]
    assert container["livenessProbe"]["httpGet"]["port"] == "health"
    assert config.lease_namespace == NAMESPACE
    assert config.lease_name == "gpu-inventory-operator"
    assert config.identity == POD.name


@pytest.mark.parametrize("values", [{}, TUNED], ids=["defaults", "tuned"])
def test_the_agent_gets_its_node_pod_and_health_port(values: dict[str, str]) -> None:
    container, args, env = started(values)["gpu-inventory-agent"]
    parsed = agent_parser().parse_args(args)
    config: AgentConfig = agent_config(parsed, env)
    assert (config.node_name, config.pod_name) == (POD.node_name, POD.name)
    assert not parsed.once  # keeps the GPUNode current, not one reading printed
    assert (config.health_host, config.health_port) == ("0.0.0.0", port(container, "health"))
    assert container["livenessProbe"]["httpGet"]["port"] == "health"


@pytest.mark.parametrize("values", [{}, TUNED], ids=["defaults", "tuned"])
def test_the_mcp_server_serves_http_for_its_service_names_and_audiences(
    values: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    container, args, env = started(values)["gpu-inventory-mcp"]
    settings = mcp_settings(args, env, monkeypatch)
    assert (settings.transport, settings.host) == ("http", "0.0.0.0")
    assert settings.port == port(container, "http")
    service = "gpu-inventory-mcp"
    names = [f"{service}:*"] + [
        f"{service}.{NAMESPACE}{suffix}:*" for suffix in ("", ".svc", ".svc.cluster.local")
    ]
    extra = ["mcp.example.com:*"] if values else []
    assert list(settings.allowed_hosts) == [*LOCALHOST, *names, *extra]  # port-forward too
    audiences = ("gpu-inventory-mcp", "assistants") if values else ("gpu-inventory-mcp",)
    assert settings.token_audiences == audiences
    assert settings.auth == "kubernetes"


def test_the_apiserver_audience_switch_reaches_the_mcp_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`mcp.allowApiserverAudience=true` passes `--allow-apiserver-audience`, and the server
    takes it."""
    _, args, env = started({"mcp.allowApiserverAudience": "true"})["gpu-inventory-mcp"]
    assert "--allow-apiserver-audience" in args
    settings = mcp_settings(args, env, monkeypatch)
    assert settings.allow_apiserver_audience is True
