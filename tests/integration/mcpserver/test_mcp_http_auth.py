"""The HTTP app on a real loopback port: bearer tokens judged by the real API server's RBAC."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
import uvicorn
from kubernetes import client
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette

from gpu_inventory.api import constants
from gpu_inventory.mcpserver import kube
from gpu_inventory.mcpserver.app import MCP_PATH, build_http_app
from gpu_inventory.mcpserver.auth import KubernetesTokenVerifier
from gpu_inventory.mcpserver.settings import DEFAULT_AUDIENCE, Settings
from gpu_inventory.testing import samples
from gpu_inventory.testing.controlplane import ControlPlane, free_port
from gpu_inventory.testing.mcpcalls import answer_when
from gpu_inventory.testing.wait import eventually

pytestmark = pytest.mark.cluster

LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()

    def started() -> None:
        assert server.started, "uvicorn has not started"

    try:
        eventually(started, timeout=15, what="uvicorn")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def verifier(control_plane: ControlPlane) -> KubernetesTokenVerifier:
    return KubernetesTokenVerifier(
        kube.api_client_factory(str(control_plane.kubeconfig)), audiences=[DEFAULT_AUDIENCE]
    )


@pytest.fixture
def url(cluster: ControlPlane, objects: Any, verifier: KubernetesTokenVerifier) -> Iterator[str]:
    """The MCP server over HTTP; it reads the cluster with the admin kubeconfig."""
    node = samples.gpunode("t4-a", gpus=4, allocated=1, heartbeat=datetime.now(UTC))
    objects.put(samples.inventory([node], now=datetime.now(UTC)), node)
    settings = Settings(transport="http", kubeconfig=str(cluster.kubeconfig))
    with serving(build_http_app(settings, token_verifier=verifier)) as base:
        yield base


def service_account(cluster: ControlPlane, k8s: client.ApiClient, namespace: str, name: str) -> str:
    client.CoreV1Api(k8s).create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    return cluster.serviceaccount_token(namespace, name)


def grant_inventory_reader(
    k8s: client.ApiClient, namespace: str, name: str, created: list[tuple[str, str]]
) -> None:
    rbac = client.RbacAuthorizationV1Api(k8s)
    role = f"{namespace}-gpuinventory-reader"
    rbac.create_cluster_role(
        {
            "metadata": {"name": role},
            "rules": [
                {
                    "apiGroups": [constants.GROUP],
                    "resources": [constants.INVENTORY_PLURAL],
                    "verbs": ["get"],
                }
            ],
        }
    )
    created.append(("ClusterRole", role))
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }
    )
    created.append(("ClusterRoleBinding", role))


@pytest.fixture
def reader_token(
    cluster: ControlPlane,
    k8s: client.ApiClient,
    namespace: str,
    cluster_rbac: list[tuple[str, str]],
) -> str:
    """A ServiceAccount token whose ClusterRole grants `get gpuinventories`."""
    token = service_account(cluster, k8s, namespace, "reader")
    grant_inventory_reader(k8s, namespace, "reader", cluster_rbac)
    return token


def post(url: str, token: str | None = None, **headers: str) -> httpx2.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.post(url + MCP_PATH, json=LIST_TOOLS, headers={**MCP_HEADERS, **headers})


def test_health_is_open_and_ready_after_the_first_list(url: str) -> None:
    assert httpx2.get(url + "/healthz").status_code == 200

    def ready() -> None:
        response = httpx2.get(url + "/readyz")
        assert response.status_code == 200, response.text

    eventually(ready, timeout=15)


def test_no_token_is_401(url: str) -> None:
    response = post(url)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")


def test_a_token_the_api_server_rejects_is_401(url: str, verifier: KubernetesTokenVerifier) -> None:
    assert post(url, "not-a-kubernetes-token").status_code == 401
    assert post(url, "not-a-kubernetes-token").status_code == 401
    assert verifier.reviews == 2  # refusals are not cached


def test_a_serviceaccount_without_rbac_is_403(
    url: str, cluster: ControlPlane, k8s: client.ApiClient, namespace: str
) -> None:
    token = service_account(cluster, k8s, namespace, "nobody")

    response = post(url, token)
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["www-authenticate"]


async def test_a_serviceaccount_allowed_to_get_gpuinventories_may_call_tools(
    url: str, reader_token: str, verifier: KubernetesTokenVerifier
) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {reader_token}"}, timeout=30)
    async with http, Client(streamable_http_client(url + MCP_PATH, http_client=http)) as mcp:
        data = await answer_when(mcp, "get_gpu_inventory", {"node": "t4-a"}, lambda d: True)
        assert data["nodes"][0]["node_name"] == "t4-a"
        await mcp.call_tool("find_gpu_capacity", {"count": 1})
    assert verifier.reviews == 1  # later requests hit the short cache


def test_a_foreign_host_header_is_refused(url: str, reader_token: str) -> None:
    assert post(url, reader_token).status_code == 200
    assert post(url, reader_token, Host="attacker.example").status_code == 421
