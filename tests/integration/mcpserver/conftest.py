"""Fixtures for the MCP server on the local control plane: CRs written as the operator and agents
would (admin, /status), ServiceAccounts and their tokens (`kubectl create token`), and the HTTP
app served on a loopback port."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
import yaml
from kubernetes import client
from starlette.applications import Starlette

from gpu_inventory.api import constants
from gpu_inventory.api.models import GPUInventory, GPUNode
from gpu_inventory.api.objects import inventory_object
from gpu_inventory.mcpserver.settings import DEFAULT_AUDIENCE
from gpu_inventory.testing.controlplane import ControlPlane, free_port
from gpu_inventory.testing.kubectl import run_kubectl
from gpu_inventory.testing.wait import eventually

G, V = constants.GROUP, constants.VERSION


@dataclass
class Objects:
    """Create or update the CRs a test needs; the `cluster` fixture wipes them before a test."""

    custom: client.CustomObjectsApi

    def put_node(self, node: GPUNode) -> None:
        name = node.metadata.name
        body = {"apiVersion": constants.API_VERSION, "kind": "GPUNode", "metadata": {"name": name}}
        with contextlib.suppress(client.ApiException):
            self.custom.create_cluster_custom_object(G, V, constants.NODE_PLURAL, body)
        assert node.status is not None
        self.custom.patch_cluster_custom_object_status(
            G, V, constants.NODE_PLURAL, name, {"status": node.status.to_wire()}
        )

    def put_inventory(self, inventory: GPUInventory) -> None:
        with contextlib.suppress(client.ApiException):
            self.custom.create_cluster_custom_object(
                G, V, constants.INVENTORY_PLURAL, inventory_object(inventory.spec)
            )
        assert inventory.status is not None
        self.custom.patch_cluster_custom_object_status(
            G,
            V,
            constants.INVENTORY_PLURAL,
            constants.INVENTORY_NAME,
            {"status": inventory.status.to_wire()},
        )

    def put(self, inventory: GPUInventory, *nodes: GPUNode) -> None:
        for node in nodes:
            self.put_node(node)
        self.put_inventory(inventory)

    def delete_node(self, name: str) -> None:
        self.custom.delete_cluster_custom_object(G, V, constants.NODE_PLURAL, name)


@pytest.fixture
def objects(cluster: ControlPlane, k8s: client.ApiClient) -> Objects:
    return Objects(client.CustomObjectsApi(k8s))


@pytest.fixture
def unreachable_kubeconfig(control_plane: ControlPlane, tmp_path: Path) -> Path:
    """The admin kubeconfig, pointing at a loopback port where nothing listens."""
    document = yaml.safe_load(control_plane.kubeconfig.read_text())
    document["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    path = tmp_path / "unreachable.kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def cluster_rbac(k8s: client.ApiClient) -> Iterator[list[tuple[str, str]]]:
    """Cluster-scoped RBAC objects a test creates, as (kind, name); deleted afterwards."""
    created: list[tuple[str, str]] = []
    yield created
    rbac = client.RbacAuthorizationV1Api(k8s)
    for kind, name in created:
        with contextlib.suppress(client.ApiException):
            if kind == "ClusterRole":
                rbac.delete_cluster_role(name)
            else:
                rbac.delete_cluster_role_binding(name)


# --- callers: ServiceAccounts, RBAC and tokens ---------------------------------------------------


def kubectl_create_token(
    cluster: ControlPlane, namespace: str, name: str, *, audience: str | None = DEFAULT_AUDIENCE
) -> str:
    """What the README tells callers to run: `kubectl create token SA --audience ...`
    (without `audience`, a token meant for the API server itself)."""
    args = ["create", "token", name, "-n", namespace, "--duration=1h"]
    if audience is not None:
        args.append(f"--audience={audience}")
    done = run_kubectl(cluster.kubeconfig, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def service_account(k8s: client.ApiClient, namespace: str, name: str) -> None:
    client.CoreV1Api(k8s).create_namespaced_service_account(namespace, {"metadata": {"name": name}})


def grant_inventory_reader(
    k8s: client.ApiClient, namespace: str, name: str, created: list[tuple[str, str]]
) -> None:
    """A ClusterRole that may `get gpuinventories`, bound to ServiceAccount namespace/name."""
    rbac = client.RbacAuthorizationV1Api(k8s)
    role = f"{namespace}-{name}-gpuinventory-reader"
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
def reader(
    cluster: ControlPlane,
    k8s: client.ApiClient,
    namespace: str,
    cluster_rbac: list[tuple[str, str]],
) -> str:
    """ServiceAccount `reader`, which may `get gpuinventories`; its name."""
    service_account(k8s, namespace, "reader")
    grant_inventory_reader(k8s, namespace, "reader", cluster_rbac)
    return "reader"


@pytest.fixture
def reader_token(cluster: ControlPlane, namespace: str, reader: str) -> str:
    """A `reader` token meant for the MCP server (`--audience gpu-inventory-mcp`)."""
    return kubectl_create_token(cluster, namespace, reader)


# --- the HTTP app on a loopback port -------------------------------------------------------------


@contextlib.contextmanager
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
