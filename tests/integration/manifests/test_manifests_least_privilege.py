"""The manifests on a real API server: they apply, and each identity can do its job and no more."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.api import constants
from gpu_inventory.api.objects import gpunode_object
from gpu_inventory.testing.binaries import REPO_ROOT
from gpu_inventory.testing.builders import make_node, make_pod
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.kubectl import run_kubectl
from gpu_inventory.testing.wait import eventually

pytestmark = pytest.mark.cluster

NAMESPACE = "gpu-inventory"
G, V = constants.GROUP, constants.VERSION


def kubectl(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return run_kubectl(plane.kubeconfig, *args)


@pytest.fixture
def installed(cluster: ControlPlane) -> ControlPlane:
    """The manifests applied for real (workloads never run: there is no kubelet), with the
    optional GitOps singleton from manifests/inventory/."""
    for kustomization in ("manifests", "manifests/inventory"):
        applied = kubectl(cluster, "apply", "--server-side", "-k", str(REPO_ROOT / kustomization))
        assert applied.returncode == 0, applied.stderr
    return cluster


def test_the_manifests_pass_a_server_side_dry_run(cluster: ControlPlane) -> None:
    kubectl(cluster, "create", "namespace", NAMESPACE)  # dry-run creates nothing to apply into
    result = kubectl(cluster, "apply", "-k", str(REPO_ROOT / "manifests"), "--dry-run=server")
    assert result.returncode == 0, result.stderr
    assert "daemonset.apps/gpu-inventory-agent created (server dry run)" in result.stdout
    assert (
        "validatingadmissionpolicy.admissionregistration.k8s.io/gpu-inventory-agent-own-node"
        in result.stdout
    )


def _agent_api(plane: ControlPlane, k8s: client.ApiClient, node: str) -> client.CustomObjectsApi:
    """The agent's identity as the kubelet would mount it into its pod on `node`."""
    pod = make_pod(
        f"agent-{node}", namespace=NAMESPACE, node=node, service_account="gpu-inventory-agent"
    )
    client.CoreV1Api(k8s).create_namespaced_pod(NAMESPACE, pod)
    kubeconfig = plane.serviceaccount_kubeconfig(
        NAMESPACE, "gpu-inventory-agent", bound_pod=f"agent-{node}"
    )
    return client.CustomObjectsApi(plane.api_client(kubeconfig))


def _forbidden(call: Any) -> str:
    """Assert `call` is refused with 403 (an AssertionError, so `eventually` can retry it)."""
    try:
        call()
    except client.ApiException as refused:
        assert refused.status == 403, refused.body  # noqa: PT017 - eventually() retries on it
        return str(refused.body)
    raise AssertionError("the call was allowed")


def _create_nodes(k8s: client.ApiClient, *names: str) -> dict[str, str]:
    core = client.CoreV1Api(k8s)
    return {name: core.create_node(make_node(name, gpus=1)).metadata.uid for name in names}


def test_an_agent_writes_only_the_gpunode_of_its_own_node(
    installed: ControlPlane, k8s: client.ApiClient
) -> None:
    uids = _create_nodes(k8s, "node-a", "node-b")
    agent = _agent_api(installed, k8s, "node-a")

    def policy_enforced() -> None:
        message = _forbidden(
            lambda: agent.create_cluster_custom_object(
                G, V, constants.NODE_PLURAL, gpunode_object("node-b", uids["node-b"]), dry_run="All"
            )
        )
        assert "may write only GPUNode/node-a, not GPUNode/node-b" in message

    eventually(policy_enforced, timeout=20, what="the admission policy to load")
    agent.create_cluster_custom_object(
        G, V, constants.NODE_PLURAL, gpunode_object("node-a", uids["node-a"])
    )
    agent.patch_cluster_custom_object_status(
        G, V, constants.NODE_PLURAL, "node-a", {"status": {"summary": {"gpus": 0}}}
    )

    admin = client.CustomObjectsApi(k8s)
    admin.create_cluster_custom_object(
        G, V, constants.NODE_PLURAL, gpunode_object("node-b", uids["node-b"])
    )
    message = _forbidden(
        lambda: agent.patch_cluster_custom_object_status(
            G, V, constants.NODE_PLURAL, "node-b", {"status": {"summary": {"gpus": 0}}}
        )
    )
    assert "not GPUNode/node-b" in message
    message = _forbidden(
        lambda: agent.patch_cluster_custom_object_status(
            G, V, constants.NODE_PLURAL, "node-a", {"status": {"kubernetes": {"allocated": 5}}}
        )
    )
    assert "status.kubernetes belongs to the operator" in message


def test_an_agent_token_without_a_node_is_refused(
    installed: ControlPlane, k8s: client.ApiClient
) -> None:
    uids = _create_nodes(k8s, "node-c")
    unbound = installed.serviceaccount_kubeconfig(NAMESPACE, "gpu-inventory-agent")
    agent = client.CustomObjectsApi(installed.api_client(unbound))

    def refused() -> None:
        message = _forbidden(
            lambda: agent.create_cluster_custom_object(
                G, V, constants.NODE_PLURAL, gpunode_object("node-c", uids["node-c"]), dry_run="All"
            )
        )
        assert "pod-bound ServiceAccount token" in message

    eventually(refused, timeout=20, what="the admission policy to load")


def test_the_mcp_identity_can_read_but_write_nothing(
    installed: ControlPlane, k8s: client.ApiClient
) -> None:
    uids = _create_nodes(k8s, "node-d")
    mcp_api = installed.api_client(
        installed.serviceaccount_kubeconfig(NAMESPACE, "gpu-inventory-mcp")
    )
    mcp = client.CustomObjectsApi(mcp_api)
    assert (
        mcp.get_cluster_custom_object(G, V, constants.INVENTORY_PLURAL, "cluster")["metadata"][
            "name"
        ]
        == "cluster"
    )
    mcp.list_cluster_custom_object(G, V, constants.NODE_PLURAL)
    _forbidden(
        lambda: mcp.create_cluster_custom_object(
            G, V, constants.NODE_PLURAL, gpunode_object("node-d", uids["node-d"])
        )
    )
    _forbidden(
        lambda: mcp.patch_cluster_custom_object_status(
            G, V, constants.INVENTORY_PLURAL, "cluster", {"status": {}}
        )
    )
    _forbidden(
        lambda: mcp.delete_cluster_custom_object(G, V, constants.INVENTORY_PLURAL, "cluster")
    )
    _forbidden(lambda: client.CoreV1Api(mcp_api).list_pod_for_all_namespaces())
    _forbidden(lambda: client.CoreV1Api(mcp_api).list_namespaced_secret(NAMESPACE))


def test_the_operator_identity_has_exactly_what_it_needs(
    installed: ControlPlane, k8s: client.ApiClient
) -> None:
    uids = _create_nodes(k8s, "node-e")
    op_api = installed.api_client(
        installed.serviceaccount_kubeconfig(NAMESPACE, "gpu-inventory-operator")
    )
    core, custom = client.CoreV1Api(op_api), client.CustomObjectsApi(op_api)
    core.list_node()
    core.list_pod_for_all_namespaces(field_selector="spec.nodeName!=")
    custom.create_cluster_custom_object(
        G, V, constants.NODE_PLURAL, gpunode_object("node-e", uids["node-e"])
    )
    custom.patch_cluster_custom_object_status(
        G, V, constants.NODE_PLURAL, "node-e", {"status": {"kubernetes": {"allocated": 0}}}
    )
    custom.patch_cluster_custom_object_status(
        G, V, constants.INVENTORY_PLURAL, "cluster", {"status": {"summary": {"nodes": 1}}}
    )
    _forbidden(lambda: core.list_namespaced_secret(NAMESPACE))
    _forbidden(lambda: core.delete_node("node-e"))
    _forbidden(lambda: core.patch_node("node-e", {"metadata": {"labels": {"x": "y"}}}))
