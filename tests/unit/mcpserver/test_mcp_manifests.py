"""The MCP Deployment users apply (`manifests/gpu-inventory.yaml`, rendered from the chart by
`make manifests`): the server started with its arguments and environment is the server the
tests check, its probes hit the routes that exist, and tokens must be made for this server."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gpu_inventory.mcpserver.__main__ import load_settings
from gpu_inventory.mcpserver.app import with_portless_forms
from gpu_inventory.mcpserver.server import HEALTH_PATHS
from gpu_inventory.mcpserver.settings import DEFAULT_AUDIENCE, Settings
from gpu_inventory.testing import containers
from gpu_inventory.testing.helm import BASE_NAMESPACE, RENDERED_BASE

NAME = "gpu-inventory-mcp"


def rendered(kind: str, name: str) -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(RENDERED_BASE.read_text()) if d]
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} in {RENDERED_BASE}"
    return dict(found[0])


@pytest.fixture(scope="module")
def container() -> dict[str, Any]:
    pod = rendered("Deployment", NAME)["spec"]["template"]["spec"]
    (mcp,) = (c for c in pod["containers"] if c["name"] == "mcp")
    return dict(mcp)


@pytest.fixture(scope="module")
def settings(container: dict[str, Any]) -> Settings:
    """What `gpu-inventory-mcp` makes of the container's arguments and environment."""
    assert container["command"] == ["gpu-inventory-mcp"]
    pod = containers.Pod(name=f"{NAME}-0", namespace=BASE_NAMESPACE, node_name="node-a")
    environ = containers.environment(container, pod)
    _command, *args = containers.argv(container, environ)
    return load_settings(args, environ)


def test_it_serves_http_on_the_container_port(
    container: dict[str, Any], settings: Settings
) -> None:
    (port,) = container["ports"]
    assert (settings.transport, settings.host, settings.port) == (
        "http",
        "0.0.0.0",
        port["containerPort"],
    )
    service = rendered("Service", NAME)
    assert [p["targetPort"] for p in service["spec"]["ports"]] in (
        [port["name"]],
        [port["containerPort"]],
    )


def test_tokens_must_be_made_for_this_server(settings: Settings) -> None:
    assert settings.auth == "kubernetes"
    assert settings.token_audiences == (DEFAULT_AUDIENCE,)
    assert settings.allow_apiserver_audience is False


def test_the_services_names_pass_the_host_check(settings: Settings) -> None:
    allowed = with_portless_forms(settings.allowed_hosts)
    for host in (
        NAME,
        f"{NAME}.{BASE_NAMESPACE}",
        f"{NAME}.{BASE_NAMESPACE}.svc",
        f"{NAME}.{BASE_NAMESPACE}.svc.cluster.local",
    ):
        assert host in allowed
        assert f"{host}:*" in allowed


def test_probes_hit_the_health_routes(container: dict[str, Any]) -> None:
    """Readiness is /readyz (503 until the cache has listed both CRs), liveness /healthz."""
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (ready["path"], live["path"]) == ("/readyz", "/healthz")
    assert {ready["path"], live["path"]} <= HEALTH_PATHS
    port_names = {p["name"] for p in container["ports"]}
    assert {ready["port"], live["port"]} <= port_names
