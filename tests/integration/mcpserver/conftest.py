"""Writing GPUInventory and GPUNode objects as the operator and agents would (admin, /status)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from gpu_inventory.api import constants
from gpu_inventory.api.models import GPUInventory, GPUNode
from gpu_inventory.api.objects import inventory_object
from gpu_inventory.testing.controlplane import ControlPlane, free_port

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
