"""The local control plane is real Kubernetes: CRDs, RBAC, watches and garbage collection."""

from __future__ import annotations

import threading
import uuid

import pytest
from kubernetes import client, watch

from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.wait import eventually

pytestmark = pytest.mark.cluster


def test_served_crd_validates_objects(k8s: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(k8s)
    bad = {
        "apiVersion": "gpuinventory.io/v1alpha1",
        "kind": "GPUInventory",
        "metadata": {"name": "cluster"},
        "spec": {"agentStaleAfterSeconds": "soon"},
    }
    with pytest.raises(client.ApiException) as refused:
        custom.create_cluster_custom_object("gpuinventory.io", "v1alpha1", "gpuinventories", bad)
    assert refused.value.status == 422
    assert "agentStaleAfterSeconds" in refused.value.body


def test_serviceaccount_is_forbidden_until_bound(
    control_plane: ControlPlane, k8s: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s)
    rbac = client.RbacAuthorizationV1Api(k8s)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    as_reader = control_plane.api_client(
        control_plane.serviceaccount_kubeconfig(namespace, "reader")
    )
    reader_core = client.CoreV1Api(as_reader)

    with pytest.raises(client.ApiException) as forbidden:
        reader_core.list_namespaced_config_map(namespace)
    assert forbidden.value.status == 403

    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "read-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader-reads"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "read-configmaps",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    eventually(lambda: reader_core.list_namespaced_config_map(namespace), what="RBAC to apply")


def test_watch_delivers_events(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    seen: list[tuple[str, str]] = []
    started = threading.Event()
    start_rv = core.list_namespaced_config_map(namespace).metadata.resource_version

    def watch_configmaps() -> None:
        w = watch.Watch()
        started.set()
        for event in w.stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=start_rv,
            timeout_seconds=20,
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                w.stop()

    thread = threading.Thread(target=watch_configmaps, daemon=True)
    thread.start()
    started.wait()
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "watched"}})
    core.patch_namespaced_config_map("watched", namespace, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("watched", namespace)
    thread.join(timeout=20)
    assert seen == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]


def test_deleting_an_owner_garbage_collects_its_dependent(
    k8s: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    dependent_name = f"dependent-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": dependent_name,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                    }
                ],
            }
        },
    )
    core.delete_namespaced_config_map("owner", namespace)

    def dependent_gone() -> None:
        names = [c.metadata.name for c in core.list_namespaced_config_map(namespace).items]
        assert dependent_name not in names, names

    eventually(dependent_gone, timeout=30, what="the garbage collector")
