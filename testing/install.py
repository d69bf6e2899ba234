"""Install gpu-inventory on the local control plane the two ways users do.

- kustomize: `kubectl apply --server-side -k manifests/` (namespace `gpu-inventory`), or of an
  overlay of it with `namespace: X` for any other namespace;
- helm: the namespace labelled as the chart's own Namespace template says, then
  `helm install` of `charts/gpu-inventory` into it (any namespace).

Both create the same cluster-scoped objects (ClusterRoles, the PriorityClass, the admission
policy), which cannot belong to both at once: each install first removes the other's, found by
their `app.kubernetes.io/managed-by` label, so tests can use either in any order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from kubernetes import client

from gpu_inventory.testing import helm
from gpu_inventory.testing.binaries import REPO_ROOT
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.kubectl import run_kubectl

Method = Literal["kustomize", "helm"]
KUSTOMIZE_NAMESPACE = helm.BASE_NAMESPACE
CLUSTER_SCOPED = (
    "clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io,"
    "priorityclasses.scheduling.k8s.io,"
    "validatingadmissionpolicies.admissionregistration.k8s.io,"
    "validatingadmissionpolicybindings.admissionregistration.k8s.io"
)
_MANAGER = {"kustomize": "kustomize", "helm": "Helm"}


@dataclasses.dataclass(frozen=True)
class Installation:
    method: Method
    namespace: str

    def name(self, component: str) -> str:
        """An object of the install: `gpu-inventory-<component>` (release `gpu-inventory`)."""
        return f"{helm.RELEASE}-{component}"


def _kubectl(plane: ControlPlane, *args: str) -> str:
    result = run_kubectl(plane.kubeconfig, *args)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def _remove_cluster_objects(plane: ControlPlane, managed_by: str) -> None:
    selector = f"app.kubernetes.io/part-of=gpu-inventory,app.kubernetes.io/managed-by={managed_by}"
    _kubectl(plane, "delete", CLUSTER_SCOPED, "-l", selector, "--ignore-not-found", "--wait")


def _helm_releases(plane: ControlPlane) -> list[dict[str, Any]]:
    listed = helm.helm("list", "--all-namespaces", "--output=json", kubeconfig=plane.kubeconfig)
    releases: list[dict[str, Any]] = yaml.safe_load(listed) or []
    return releases


def uninstall_helm(plane: ControlPlane) -> None:
    """Uninstall every gpu-inventory Helm release (there is at most one per cluster)."""
    for release in _helm_releases(plane):
        if release["name"] == helm.RELEASE:
            helm.uninstall(plane.kubeconfig, release["namespace"])


def namespace_object(namespace: str) -> dict[str, Any]:
    """The chart's own Namespace (with its Pod Security labels), as a Helm user creates it."""
    rendered = helm.template(
        namespace, {"namespace.create": "true"}, extra=("--show-only=templates/namespace.yaml",)
    )
    (body,) = helm.objects(rendered)
    return body


def kustomization(plane: ControlPlane, namespace: str) -> Path:
    """The kustomize base for its own namespace; for another, an overlay as a user writes it:
    the base as a resource and `namespace:`."""
    base = REPO_ROOT / "manifests"
    if namespace == KUSTOMIZE_NAMESPACE:
        return base
    overlay = plane.workdir / f"kustomize-{namespace}"
    overlay.mkdir(exist_ok=True)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": namespace,
                "resources": [os.path.relpath(base, overlay)],
            }
        )
    )
    return overlay


def install(plane: ControlPlane, method: Method, namespace: str | None = None) -> Installation:
    """Install as an admin would; returns where it went."""
    if method == "kustomize":
        target = namespace or KUSTOMIZE_NAMESPACE
        uninstall_helm(plane)
        _remove_cluster_objects(plane, _MANAGER["helm"])
        _kubectl(plane, "apply", "--server-side", "-k", str(kustomization(plane, target)))
        return Installation("kustomize", target)
    target = namespace or "gpu-inventory-helm"
    uninstall_helm(plane)
    _remove_cluster_objects(plane, _MANAGER["kustomize"])
    api = plane.api_client()
    try:
        core = client.CoreV1Api(api)
        body = namespace_object(target)
        try:
            core.create_namespace(body)
        except client.ApiException as error:
            if error.status != 409:
                raise
            core.patch_namespace(target, {"metadata": {"labels": body["metadata"]["labels"]}})
    finally:
        api.close()
    helm.install(plane.kubeconfig, target)
    return Installation("helm", target)


def agent_pod(api: client.ApiClient, installation: Installation, *, node: str, name: str) -> Any:
    """Create the agent Pod its DaemonSet would create on `node`, from the installed pod
    template, so the API server's admission (Pod Security, RuntimeClass, priority) judges the
    real spec."""
    daemonset = client.AppsV1Api(api).read_namespaced_daemon_set(
        installation.name("agent"), installation.namespace, _preload_content=False
    )
    template = json.loads(daemonset.data)["spec"]["template"]
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": dict(template["metadata"].get("labels") or {}),
            "annotations": dict(template["metadata"].get("annotations") or {}),
        },
        "spec": {**template["spec"], "nodeName": node},
    }
    return client.CoreV1Api(api).create_namespaced_pod(installation.namespace, body)
