"""Fixtures shared by every test: one real control plane per test session.

There is no skip path: if the control plane cannot be built or started, every test that needs
it errors with the component's log tail, and the run fails.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from gpu_inventory.api import constants
from gpu_inventory.testing.controlplane import ControlPlane, running


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running(tmp_path_factory.mktemp("controlplane")) as plane:
        yield plane


@pytest.fixture
def k8s(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = control_plane.api_client()
    try:
        yield api
    finally:
        api.close()


def wipe_cluster_objects(api: client.ApiClient) -> None:
    """Delete every Node, Pod, GPUNode and GPUInventory, finalizers included, and DRA's
    ResourceClaims, ResourceSlices and DeviceClasses."""
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    for pod in core.list_pod_for_all_namespaces().items:
        ns, name = pod.metadata.namespace, pod.metadata.name
        with contextlib.suppress(client.ApiException):
            if pod.metadata.finalizers:
                core.patch_namespaced_pod(name, ns, {"metadata": {"finalizers": None}})
            core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
    for plural in (constants.INVENTORY_PLURAL, constants.NODE_PLURAL):
        for item in custom.list_cluster_custom_object(constants.GROUP, constants.VERSION, plural)[
            "items"
        ]:
            name = item["metadata"]["name"]
            with contextlib.suppress(client.ApiException):
                if item["metadata"].get("finalizers"):
                    custom.patch_cluster_custom_object(
                        constants.GROUP,
                        constants.VERSION,
                        plural,
                        name,
                        {"metadata": {"finalizers": None}},
                    )
                custom.delete_cluster_custom_object(
                    constants.GROUP, constants.VERSION, plural, name
                )
    for node in core.list_node().items:
        with contextlib.suppress(client.ApiException):
            core.delete_node(node.metadata.name)
    resource = client.ResourceV1Api(api)
    with contextlib.suppress(client.ApiException):  # 404 where resource.k8s.io/v1 is not served
        for claim in resource.list_resource_claim_for_all_namespaces().items:
            with contextlib.suppress(client.ApiException):
                resource.delete_namespaced_resource_claim(
                    claim.metadata.name, claim.metadata.namespace
                )
        for item in resource.list_resource_slice().items:
            with contextlib.suppress(client.ApiException):
                resource.delete_resource_slice(item.metadata.name)
        for item in resource.list_device_class().items:
            with contextlib.suppress(client.ApiException):
                resource.delete_device_class(item.metadata.name)


@pytest.fixture
def cluster(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with no Nodes, Pods, GPUNodes or GPUInventories left from before."""
    api = control_plane.api_client()
    try:
        wipe_cluster_objects(api)
    finally:
        api.close()
    return control_plane


@pytest.fixture
def namespace(k8s: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name)
