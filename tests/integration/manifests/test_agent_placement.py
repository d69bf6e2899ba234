"""Which nodes get an agent, as kube-controller-manager's own DaemonSet controller decides it.

The chart's agent DaemonSet (rendered by real Helm) is applied to a control plane that runs the
DaemonSet controller, next to Nodes labelled as GPU Feature Discovery, NFD, GKE, AKS and the
NVIDIA GPU Operator label them. The controller creates one pod per node the rendered nodeSelector
and affinity select (pods stay Pending: no scheduler or kubelet runs), and deletes it when a
label change deselects the node: the upstream semantics of NotIn, ORed terms and ANDed
expressions, not ours. The test binds the pods and completes their deletion, as kube-scheduler
and the kubelet would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.testing import helm
from gpu_inventory.testing.controlplane import CONTROLLERS, ControlPlane, running
from gpu_inventory.testing.kubectl import run_kubectl
from gpu_inventory.testing.wait import eventually

pytestmark = pytest.mark.cluster

CLIENT = "nvidia.com/gpu.deploy.client"
GFD = {"nvidia.com/gpu.present": "true"}
NODES: Mapping[str, Mapping[str, str]] = {
    "gfd": GFD,
    "gfd-opted-out": {**GFD, CLIENT: "false"},
    "gfd-client": {**GFD, CLIENT: "true"},
    "gfd-paused": {**GFD, CLIENT: "paused-for-driver-upgrade"},
    "gfd-not-a-gpu": {"nvidia.com/gpu.present": "false"},
    "nfd": {"feature.node.kubernetes.io/pci-10de.present": "true"},
    "nfd-opted-out": {"feature.node.kubernetes.io/pci-10de.present": "true", CLIENT: "false"},
    "gke": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    "gke-opted-out": {"cloud.google.com/gke-accelerator": "nvidia-l4", CLIENT: "false"},
    "aks-client": {"kubernetes.azure.com/accelerator": "nvidia", CLIENT: "true"},
    "count": {"nvidia.com/gpu.count": "8"},
    "count-opted-out": {"nvidia.com/gpu.count": "8", CLIENT: "false"},
    "cpu": {},
    "cpu-client": {CLIENT: "true"},
}
DEFAULT = {"gfd", "gfd-client", "gfd-paused", "nfd", "gke", "aks-client", "count"}
"""Every GPU node the GPU Operator has not opted out (`false`); absent and paused count as in."""
GPU_OPERATOR_CLIENT = {"gfd-client", "aks-client"}
"""agent.gpuOperatorClient=true: GPU nodes whose client label is "true", nothing else."""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of its own: the DaemonSet controller would also act on every DaemonSet
    other tests leave on the shared one."""
    workdir = tmp_path_factory.mktemp("placement")
    controllers = (*CONTROLLERS, "daemonset-controller")
    with running(workdir, crds=False, controllers=controllers) as plane:
        yield plane


@pytest.fixture(scope="module")
def core(plane: ControlPlane) -> Iterator[client.CoreV1Api]:
    api = plane.api_client()
    try:
        core = client.CoreV1Api(api)
        for name, labels in NODES.items():
            core.create_node({"metadata": {"name": name, "labels": dict(labels)}})
        yield core
    finally:
        api.close()


def install_agent(
    plane: ControlPlane, core: client.CoreV1Api, namespace: str, values: dict[str, str]
) -> None:
    """The chart's agent DaemonSet (and its PriorityClass and ServiceAccount) in `namespace`."""
    core.create_namespace({"metadata": {"name": namespace}})
    rendered = helm.template(
        namespace,
        values,
        extra=("--show-only=templates/agent.yaml", "--show-only=templates/agent-rbac.yaml"),
    )
    applied = run_kubectl(
        plane.kubeconfig, "apply", "--server-side", "-f", "-", stdin=rendered, timeout=60
    )
    assert applied.returncode == 0, applied.stderr


def target_node(pod: client.V1Pod) -> str:
    """The node the DaemonSet controller made `pod` for: it pins each pod by a matchFields term
    on metadata.name."""
    required = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    (term,) = required.node_selector_terms
    (field,) = term.match_fields
    assert field.key == "metadata.name", field
    return str(field.values[0])


def schedule_and_terminate(core: client.CoreV1Api, namespace: str) -> None:
    """The parts of kube-scheduler and the kubelet, which do not run here: bind each new pod to
    the node the controller made it for, and finish deleting the pods it deleted. (The
    controller acts on a label change only for pods bound to the node; a terminating pod keeps
    the node's place until it is gone.)"""
    for pod in core.list_namespaced_pod(namespace).items:
        name = pod.metadata.name
        with contextlib.suppress(client.ApiException):  # gone or bound meanwhile: next round
            if pod.metadata.deletion_timestamp is not None:
                core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
            elif not pod.spec.node_name:
                binding = {
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": target_node(pod)},
                }
                core.create_namespaced_pod_binding(name, namespace, binding, _preload_content=False)


def placed(core: client.CoreV1Api, namespace: str, expected: set[str]) -> None:
    def check() -> None:
        schedule_and_terminate(core, namespace)
        pods = core.list_namespaced_pod(namespace).items
        found = {target_node(p) for p in pods if p.metadata.deletion_timestamp is None}
        assert found == expected, (
            f"missing {sorted(expected - found)}, unexpected {sorted(found - expected)}"
        )
        assert all(p.spec.node_name for p in pods), "pods not bound yet"

    eventually(check, timeout=30, what=f"agents in {namespace} on exactly {sorted(expected)}")


def label(core: client.CoreV1Api, node: str, value: str | None) -> None:
    """Set the GPU Operator's client label on `node` (None removes it)."""
    core.patch_node(node, {"metadata": {"labels": {CLIENT: value}}})


def test_agents_run_on_gpu_nodes_the_gpu_operator_has_not_opted_out(
    plane: ControlPlane, core: client.CoreV1Api
) -> None:
    namespace = "agents"
    install_agent(plane, core, namespace, {})
    placed(core, namespace, DEFAULT)
    # The GPU Operator (or an admin) opts a node out later: the controller removes its agent.
    label(core, "gfd", "false")
    placed(core, namespace, DEFAULT - {"gfd"})
    label(core, "gfd", None)
    placed(core, namespace, DEFAULT)


def test_as_a_gpu_operator_client_agents_leave_a_node_while_its_clients_are_paused(
    plane: ControlPlane, core: client.CoreV1Api
) -> None:
    """k8s-driver-manager pauses the label before it unloads the driver and waits until no
    DaemonSet pod with the key in its nodeSelector is left on the node; then sets it back."""
    namespace = "gpu-operator-client-agents"
    install_agent(plane, core, namespace, {"agent.gpuOperatorClient": "true"})
    placed(core, namespace, GPU_OPERATOR_CLIENT)
    selector: dict[str, Any] = core.list_namespaced_pod(namespace).items[0].spec.node_selector
    assert selector == {CLIENT: "true"}
    label(core, "gfd-client", "paused-for-driver-upgrade")
    placed(core, namespace, GPU_OPERATOR_CLIENT - {"gfd-client"})
    label(core, "gfd-client", "true")
    placed(core, namespace, GPU_OPERATOR_CLIENT)
