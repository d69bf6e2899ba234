"""The install on a real API server: each identity can do its job and no more, and the admission
policy confines the agent in whatever namespace it is installed.

Every test runs on the installs users make: the kustomize base (namespace `gpu-inventory`), an
overlay of it with `namespace: team-gpu`, and `helm install` into another namespace (`gpu-fleet`).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.api import constants
from gpu_inventory.api.objects import gpunode_object, inventory_object
from gpu_inventory.operator.dra import watching as dra_watching
from gpu_inventory.operator.election import LeaseElector
from gpu_inventory.operator.kubeapi import KubeApi
from gpu_inventory.operator.store import Kind
from gpu_inventory.testing import install as installing
from gpu_inventory.testing.builders import make_node
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.wait import eventually

pytestmark = pytest.mark.cluster

G, V = constants.GROUP, constants.VERSION


@pytest.fixture(
    params=[("kustomize", None), ("kustomize", "team-gpu"), ("helm", "gpu-fleet")],
    ids=["kustomize", "kustomize-overlay-team-gpu", "helm-gpu-fleet"],
)
def installed(
    request: pytest.FixtureRequest, cluster: ControlPlane
) -> Iterator[installing.Installation]:
    method, namespace = request.param
    installation = installing.install(cluster, method, namespace)
    try:
        yield installation
    finally:
        if method == "helm":
            installing.uninstall_helm(cluster)


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


def _agent_api(
    plane: ControlPlane, k8s: client.ApiClient, installation: installing.Installation, node: str
) -> client.CustomObjectsApi:
    """The agent's identity as the kubelet mounts it into its DaemonSet's pod on `node`."""
    installing.agent_pod(k8s, installation, node=node, name=f"agent-{node}")
    kubeconfig = plane.serviceaccount_kubeconfig(
        installation.agent_namespace, installation.name("agent"), bound_pod=f"agent-{node}"
    )
    return client.CustomObjectsApi(plane.api_client(kubeconfig))


def _policy_loaded(agent: client.CustomObjectsApi, body: dict[str, Any], message: str) -> None:
    """Admission policies take effect a moment after they are created: retry until refused."""

    def refused() -> None:
        text = _forbidden(
            lambda: agent.create_cluster_custom_object(
                G, V, constants.NODE_PLURAL, body, dry_run="All"
            )
        )
        assert message in text, text

    eventually(refused, timeout=20, what="the admission policy to load")


def _creates_only_its_own_gpunode(
    agent: client.CustomObjectsApi, uids: dict[str, str], own: str, other: str
) -> None:
    """The agent on `own` is refused GPUNode/`other` and creates GPUNode/`own`."""
    _policy_loaded(
        agent,
        gpunode_object(other, uids[other]),
        f"may write only GPUNode/{own}, not GPUNode/{other}",
    )
    agent.create_cluster_custom_object(G, V, constants.NODE_PLURAL, gpunode_object(own, uids[own]))


def test_an_agent_writes_only_the_gpunode_of_its_own_node(
    cluster: ControlPlane, installed: installing.Installation, k8s: client.ApiClient
) -> None:
    uids = _create_nodes(k8s, "node-a", "node-b")
    agent = _agent_api(cluster, k8s, installed, "node-a")
    _creates_only_its_own_gpunode(agent, uids, "node-a", "node-b")
    agent.patch_cluster_custom_object_status(
        G, V, constants.NODE_PLURAL, "node-a", {"status": {"summary": {"gpus": 0}}}
    )
    client.CustomObjectsApi(k8s).create_cluster_custom_object(
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
    # It reads its GPUNode (not the status subresource) and lists no GPUNodes.
    agent.get_cluster_custom_object(G, V, constants.NODE_PLURAL, "node-a")
    _forbidden(
        lambda: agent.get_cluster_custom_object_status(G, V, constants.NODE_PLURAL, "node-a")
    )
    _forbidden(lambda: agent.list_cluster_custom_object(G, V, constants.NODE_PLURAL))
    # It watches its Node as the kubelet does (list + watch, fieldSelector metadata.name): the
    # GPU Operator's driver-upgrade labels reach it at once. It writes no Node and reads no pod.
    core = client.CoreV1Api(agent.api_client)
    own = core.list_node(field_selector="metadata.name=node-a")
    assert [n.metadata.name for n in own.items] == ["node-a"]
    core.list_node(
        field_selector="metadata.name=node-a",
        resource_version=own.metadata.resource_version,
        watch=True,
        timeout_seconds=1,
        _preload_content=False,
    ).read()
    _forbidden(lambda: core.patch_node("node-a", {"metadata": {"labels": {"x": "y"}}}))
    _forbidden(lambda: core.patch_node_status("node-a", {"status": {"phase": "Running"}}))
    _forbidden(lambda: core.delete_node("node-b"))
    _forbidden(core.list_pod_for_all_namespaces)


def test_an_agent_creates_its_gpunode_with_no_finalizer_and_no_owner_but_its_node(
    cluster: ControlPlane, installed: installing.Installation, k8s: client.ApiClient
) -> None:
    uids = _create_nodes(k8s, "node-f", "node-g")
    agent = _agent_api(cluster, k8s, installed, "node-f")

    def own(**metadata: Any) -> dict[str, Any]:
        body = gpunode_object("node-f", uids["node-f"])
        body["metadata"].update(metadata)
        return body

    own_node = own()["metadata"]["ownerReferences"][0]
    _policy_loaded(
        agent, own(finalizers=["example.com/keep"]), "may not put finalizers on a GPUNode"
    )
    foreign = [
        [{**own_node, "name": "node-g", "uid": uids["node-g"]}],  # another Node
        [{**own_node, "uid": "00000000-0000-0000-0000-000000000000"}],  # not its Node's uid
        [own_node, {"apiVersion": "v1", "kind": "Pod", "name": "agent-node-f", "uid": "x"}],
        [{**own_node, "apiVersion": "example.com/v1"}],
    ]
    for owners in foreign:
        message = _forbidden(
            lambda owners=owners: agent.create_cluster_custom_object(
                G, V, constants.NODE_PLURAL, own(ownerReferences=owners), dry_run="All"
            )
        )
        assert "may own its GPUNode only by its own Node (v1 Node node-f)" in message
    agent.create_cluster_custom_object(G, V, constants.NODE_PLURAL, own())


def test_an_agent_token_without_a_node_is_refused(
    cluster: ControlPlane, installed: installing.Installation, k8s: client.ApiClient
) -> None:
    uids = _create_nodes(k8s, "node-c")
    unbound = cluster.serviceaccount_kubeconfig(installed.namespace, installed.name("agent"))
    agent = client.CustomObjectsApi(cluster.api_client(unbound))
    _policy_loaded(
        agent, gpunode_object("node-c", uids["node-c"]), "pod-bound ServiceAccount token"
    )


def test_the_mcp_identity_can_read_but_write_nothing(
    cluster: ControlPlane, installed: installing.Installation, k8s: client.ApiClient
) -> None:
    uids = _create_nodes(k8s, "node-d")
    client.CustomObjectsApi(k8s).create_cluster_custom_object(
        G, V, constants.INVENTORY_PLURAL, inventory_object()
    )
    mcp_api = cluster.api_client(
        cluster.serviceaccount_kubeconfig(installed.namespace, installed.name("mcp"))
    )
    mcp = client.CustomObjectsApi(mcp_api)
    inventory = mcp.get_cluster_custom_object(G, V, constants.INVENTORY_PLURAL, "cluster")
    assert inventory["metadata"]["name"] == "cluster"
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
    _forbidden(lambda: client.CoreV1Api(mcp_api).list_namespaced_secret(installed.namespace))


def test_the_operator_identity_can_make_every_call_its_code_makes(
    cluster: ControlPlane, installed: installing.Installation, k8s: client.ApiClient
) -> None:
    """The calls of operator/kubeapi.py and operator/election.py themselves, as the installed
    operator ServiceAccount (kopf's watches list and watch the same four kinds)."""
    uids = _create_nodes(k8s, "node-e")
    kubeconfig = cluster.serviceaccount_kubeconfig(installed.namespace, installed.name("operator"))
    api = KubeApi(cluster.api_client(kubeconfig))
    assert api.get_inventory() is None
    api.create_inventory(inventory_object())
    api.patch_inventory_status({"status": {"summary": {"nodes": 1}}})
    api.create_gpunode(gpunode_object("node-e", uids["node-e"]))
    api.patch_gpunode_status("node-e", {"status": {"kubernetes": {"allocated": 0}}})
    for kind in Kind:  # the LISTs that re-read what a spec change reshapes
        next(api.iter_objects(kind, chunk=1), None)
    for plural in (constants.NODE_PLURAL, constants.INVENTORY_PLURAL):  # kopf's watches
        api.custom.list_cluster_custom_object(
            G, V, plural, watch=True, timeout_seconds=1, _preload_content=False
        ).read()
    assert dra_watching.denied(api.core.api_client) == []  # what the operator checks first
    for plural in ("resourceslices", "resourceclaims", "deviceclasses"):  # DRA's, if served
        api.custom.list_cluster_custom_object(
            "resource.k8s.io", "v1", plural, watch=True, timeout_seconds=1, _preload_content=False
        ).read()
    for watch_kind in (api.core.list_node, api.core.list_pod_for_all_namespaces):
        watch_kind(watch=True, timeout_seconds=1, _preload_content=False).read()
    api.core.create_namespaced_event(
        "default",
        {
            "metadata": {"generateName": "gpu-inventory-"},
            "involvedObject": {"kind": "Node", "name": "node-e", "apiVersion": "v1"},
            "reason": "Test",
            "message": "kopf posts its warnings as core/v1 Events",
        },
    )
    with contextlib.suppress(client.ApiException):  # an earlier test's operator held it
        client.CoordinationV1Api(k8s).delete_namespaced_lease(
            installed.name("operator"), installed.namespace
        )
    elector = LeaseElector(api, installed.namespace, installed.name("operator"), "replica-1")
    assert elector.try_acquire_or_renew()  # create
    assert elector.try_acquire_or_renew()  # get + update
    elector._release()  # get + update
    assert api.get_lease(installed.namespace, installed.name("operator")) is not None


def test_the_operator_identity_has_nothing_it_does_not_use(
    cluster: ControlPlane, installed: installing.Installation, k8s: client.ApiClient
) -> None:
    _create_nodes(k8s, "node-h")
    client.CustomObjectsApi(k8s).create_cluster_custom_object(
        G, V, constants.INVENTORY_PLURAL, inventory_object()
    )
    op_api = cluster.api_client(
        cluster.serviceaccount_kubeconfig(installed.namespace, installed.name("operator"))
    )
    core, custom = client.CoreV1Api(op_api), client.CustomObjectsApi(op_api)
    leases = client.CoordinationV1Api(op_api)
    ns = installed.namespace
    # The spec belongs to users and GitOps: the operator writes only status, by merge patch.
    _forbidden(
        lambda: custom.patch_cluster_custom_object(
            G, V, constants.INVENTORY_PLURAL, "cluster", {"spec": {"agentStaleAfterSeconds": 60}}
        )
    )
    current = client.CustomObjectsApi(k8s).get_cluster_custom_object(
        G, V, constants.INVENTORY_PLURAL, "cluster"
    )
    _forbidden(
        lambda: custom.replace_cluster_custom_object_status(
            G, V, constants.INVENTORY_PLURAL, "cluster", current
        )
    )
    _forbidden(lambda: custom.delete_cluster_custom_object(G, V, constants.NODE_PLURAL, "node-h"))
    _forbidden(lambda: core.list_namespaced_secret(ns))
    _forbidden(lambda: core.delete_node("node-h"))
    _forbidden(lambda: core.patch_node("node-h", {"metadata": {"labels": {"x": "y"}}}))
    # DRA's objects: listed and watched, never read one by one nor written.
    dra = client.ResourceV1Api(op_api)
    _forbidden(lambda: dra.read_resource_slice("node-h-gpu.nvidia.com"))
    _forbidden(
        lambda: dra.create_device_class(
            {"metadata": {"name": "gpu.example.com"}, "spec": {}}, dry_run="All"
        )
    )
    _forbidden(lambda: dra.patch_namespaced_resource_claim_status("claim", ns, {"status": {}}))
    # Leases: create cannot be limited by name, but reading or taking over any other is refused.
    name = f"someone-elses-{uuid.uuid4().hex[:6]}"
    other = {"metadata": {"name": name}, "spec": {"holderIdentity": "them"}}
    client.CoordinationV1Api(k8s).create_namespaced_lease(ns, other)
    _forbidden(lambda: leases.read_namespaced_lease(name, ns))
    _forbidden(
        lambda: leases.replace_namespaced_lease(
            name, ns, {**other, "spec": {"holderIdentity": "operator"}}
        )
    )
    _forbidden(lambda: leases.list_namespaced_lease(ns))
    _forbidden(lambda: leases.delete_namespaced_lease(installed.name("operator"), ns))


def test_mig_mode_runs_the_agent_alone_in_a_privileged_namespace(
    cluster: ControlPlane, k8s: client.ApiClient
) -> None:
    """agent.migMonitoring adds CAP_SYS_ADMIN, which only Pod Security `privileged` admits.
    With agent.namespace the agent gets that level alone: its pod is admitted there, the same
    pod would be refused in the release's `restricted` namespace, and the admission policy
    confines the agent's token from its own namespace as from any other."""
    core = client.CoreV1Api(k8s)
    agents = f"gpu-agents-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        {
            "metadata": {
                "name": agents,
                "labels": {"pod-security.kubernetes.io/enforce": "privileged"},
            }
        }
    )
    values = {"agent.migMonitoring": "true", "agent.namespace": agents}
    try:
        installed = installing.install(cluster, "helm", "gpu-fleet", values)
        assert installed.agent_namespace == agents
        release = core.read_namespace("gpu-fleet").metadata.labels
        assert release["pod-security.kubernetes.io/enforce"] == "restricted"
        uids = _create_nodes(k8s, "node-m", "node-n")
        agent = _agent_api(cluster, k8s, installed, "node-m")  # admitted in its namespace
        container = core.read_namespaced_pod("agent-node-m", agents).spec.containers[0]
        assert container.security_context.capabilities.add == ["SYS_ADMIN"]
        _creates_only_its_own_gpunode(agent, uids, "node-m", "node-n")
        pod = core.read_namespaced_pod("agent-node-m", agents, _preload_content=False)
        body = json.loads(pod.data)
        moved = {"metadata": {"name": "agent-node-m"}, "spec": body["spec"]}
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_pod("gpu-fleet", moved, dry_run="All")
        assert refused.value.status == 403
        assert "SYS_ADMIN" in refused.value.body
    finally:
        installing.uninstall_helm(cluster)
        core.delete_namespace(agents)
