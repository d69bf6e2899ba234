"""The Helm chart, checked by real Helm and the local control plane's own API and admission.

The chart is the one source: the kustomize base is its rendering (checked here), `helm lint`
passes, every object validates against the API server's schema in a non-default namespace, and
the API server's Pod Security admission judges every pod template.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, dynamic

from gpu_inventory.testing import helm
from gpu_inventory.testing import install as installing
from gpu_inventory.testing.binaries import REPO_ROOT, ensure_tool
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.kubectl import kubectl_path, run_kubectl

RECOMMENDED = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)
SELECTOR = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
EVERYTHING = {
    "metrics.serviceMonitor.enabled": "true",
    "metrics.prometheusRule.enabled": "true",
    "namespace.create": "true",
}
WORKLOADS = {"Deployment", "DaemonSet"}


def _render(namespace: str = "gpu-fleet", **values: str) -> list[dict[str, Any]]:
    return helm.objects(helm.template(namespace, values))


def _pod_templates(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o["spec"]["template"] for o in objects if o["kind"] in WORKLOADS}


def test_without_an_image_the_chart_refuses_to_render_and_says_what_to_do() -> None:
    """No image is published for users: a default would only fail later, as ErrImagePull.
    (`helm lint` runs in lint mode, where `required` only warns.)"""
    with pytest.raises(helm.HelmError, match=r"image\.repository is required.*publish-image"):
        helm.helm("template", "gpu-inventory", str(helm.CHART))


def test_helm_lint_passes_with_an_image_and_every_option() -> None:
    chart = str(helm.CHART)
    image = f"--set=image.repository={helm.IMAGE_REPOSITORY}"
    helm.helm("lint", "--strict", chart, image)
    options = {
        **EVERYTHING,
        "agent.migMonitoring": "true",
        "agent.gpuAccess": "cdi",
        "agent.runtimeClassName": "nvidia",
        "agent.priorityClass.create": "false",
        "networkPolicy.enabled": "false",
        "image.digest": "sha256:" + "a" * 64,
    }
    helm.helm("lint", "--strict", chart, image, *(f"--set={k}={v}" for k, v in options.items()))
    helm.helm("lint", "--strict", chart, image, "--set=mcp.enabled=false")


@pytest.mark.parametrize(
    ("values", "refusal"),
    [
        ({"agent.gpuAccess": "all"}, r"/agent/gpuAccess.*'envvar', 'cdi'"),
        ({"image.digest": "latest"}, r"/image/digest"),
        ({"agent.runtimeClass": "nvidia"}, r"additional properties 'runtimeClass' not allowed"),
        ({"metrics.prometheusRule.statusStale": "5"}, r"additional properties 'statusStale'"),
        ({"agent.maxUnavailable": "0"}, r"/agent/maxUnavailable"),
        ({"agent.maxUnavailable": "0%"}, r"/agent/maxUnavailable"),
        ({"operator.podDisruptionBudget.maxUnavailable": "0"}, r"/operator/podDisruptionBudget"),
        ({"metrics.prometheusRule.nearlyFullFor": "30 minutes"}, r"/nearlyFullFor"),
        ({"metrics.serviceMonitor.interval": "30"}, r"/serviceMonitor/interval"),
        ({"metrics.prometheusRule.statusStaleMinutes": "100000"}, r"/statusStaleMinutes"),
        ({"mcp.tokenAudiences": "{}"}, r"/mcp/tokenAudiences"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, dict) else None,
)
def test_bad_values_are_refused_by_the_schema_with_their_path(
    values: dict[str, str], refusal: str
) -> None:
    with pytest.raises(helm.HelmError, match=refusal):
        helm.template("gpu-fleet", values)


def test_the_kustomize_base_is_the_chart_rendered() -> None:
    assert helm.RENDERED_BASE.read_text() == helm.render_kustomize_base(), (
        "manifests/gpu-inventory.yaml is stale: run `make manifests`"
    )
    for crd in sorted((REPO_ROOT / "crds").glob("gpuinventory.io_*.yaml")):
        copy = helm.CHART / "crds" / crd.name
        assert copy.read_text() == crd.read_text(), f"{copy} is stale: run `make crds`"


def test_every_object_and_pod_template_carries_the_recommended_labels() -> None:
    objects = _render(**EVERYTHING)
    assert {o["kind"] for o in objects} >= {"Namespace", "PrometheusRule", "ServiceMonitor"}
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert all(labels.get(key) for key in RECOMMENDED), (obj["kind"], labels)
        assert labels["app.kubernetes.io/part-of"] == "gpu-inventory"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        if obj["kind"] in WORKLOADS:
            template = obj["spec"]["template"]["metadata"]["labels"]
            assert all(template.get(key) for key in RECOMMENDED)
            selector = obj["spec"]["selector"]["matchLabels"]
            assert set(selector) == SELECTOR, "selectors are immutable: name, instance, component"
            assert selector.items() <= template.items()
    managed = {o["metadata"]["labels"]["app.kubernetes.io/managed-by"] for o in objects}
    assert managed == {"Helm"}
    base = helm.objects(helm.RENDERED_BASE.read_text())
    assert {o["metadata"]["labels"]["app.kubernetes.io/managed-by"] for o in base} == {"kustomize"}


def test_the_agent_tolerates_every_taint_never_preempts_and_finds_cloud_gpu_nodes() -> None:
    objects = _render()
    (agent,) = [o for o in objects if o["kind"] == "DaemonSet"]
    spec = agent["spec"]["template"]["spec"]
    assert spec["tolerations"] == [{"operator": "Exists"}]
    (priority,) = [o for o in objects if o["kind"] == "PriorityClass"]
    assert spec["priorityClassName"] == priority["metadata"]["name"] == "gpu-inventory-agent"
    assert priority["preemptionPolicy"] == "Never"
    assert priority["value"] < 1_000_000_000  # below system-cluster-critical
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    keys = {e["key"] for term in terms["nodeSelectorTerms"] for e in term["matchExpressions"]}
    assert keys >= {
        "nvidia.com/gpu.present",
        "feature.node.kubernetes.io/pci-10de.present",
        "cloud.google.com/gke-accelerator",
        "kubernetes.azure.com/accelerator",
    }


def test_gpu_access_modes_and_an_optional_runtime_class() -> None:
    def agent(**values: str) -> dict[str, Any]:
        return _pod_templates(_render(**values))["gpu-inventory-agent"]

    envvar = agent()
    env = {e["name"]: e.get("value") for e in envvar["spec"]["containers"][0]["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "runtimeClassName" not in envvar["spec"]  # a missing RuntimeClass refuses the pod
    assert agent(**{"agent.runtimeClassName": "nvidia"})["spec"]["runtimeClassName"] == "nvidia"
    cdi = agent(**{"agent.gpuAccess": "cdi"})
    names = {e["name"] for e in cdi["spec"]["containers"][0]["env"]}
    assert "NVIDIA_VISIBLE_DEVICES" not in names
    assert cdi["metadata"]["annotations"] == {
        "cdi.k8s.io/gpu-inventory-agent": "nvidia.com/gpu=all"
    }
    assert "runtimeClassName" not in cdi["spec"]


def test_the_image_is_pinned_by_digest_when_one_is_given() -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    for template in _pod_templates(_render(**{"image.digest": digest})).values():
        image = template["spec"]["containers"][0]["image"]
        assert image == f"ghcr.io/gpu-inventory/gpu-inventory@{digest}"


def test_mcp_is_ready_only_once_its_cache_is() -> None:
    """Args and env reach the server's own parser in tests/unit/test_chart_commands.py."""
    container = _pod_templates(_render())["gpu-inventory-mcp"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


# --- against the API server -----------------------------------------------------------------


@pytest.fixture
def fresh_namespace(k8s: client.ApiClient) -> Iterator[str]:
    """A namespace made as a Helm user makes it: the chart's own Namespace object."""
    name = f"gpu-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(k8s)
    core.create_namespace(installing.namespace_object(name))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def _dry_run_apply(plane: ControlPlane, rendered: str) -> str:
    result = run_kubectl(
        plane.kubeconfig, "apply", "--dry-run=server", "-f", "-", stdin=rendered, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


MONITORING_CRDS = ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")


@pytest.fixture
def monitoring_crds(control_plane: ControlPlane) -> Iterator[None]:
    """prometheus-operator's ServiceMonitor and PrometheusRule CRDs (pinned in hack/tools,
    generated from its Go types), so the API server validates those two objects too."""
    crds = str(ensure_tool("monitoring-crds"))
    applied = run_kubectl(control_plane.kubeconfig, "apply", "--server-side", "-f", crds)
    assert applied.returncode == 0, applied.stderr
    try:
        waited = run_kubectl(
            control_plane.kubeconfig,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"crd/{name}" for name in MONITORING_CRDS),
        )
        assert waited.returncode == 0, waited.stderr
        yield
    finally:
        run_kubectl(control_plane.kubeconfig, "delete", "--ignore-not-found", "-f", crds)


@pytest.mark.cluster
@pytest.mark.usefixtures("monitoring_crds")
def test_every_object_validates_against_the_api_server_in_another_namespace(
    control_plane: ControlPlane, fresh_namespace: str
) -> None:
    values = {k: v for k, v in EVERYTHING.items() if k != "namespace.create"}
    out = _dry_run_apply(control_plane, helm.template(fresh_namespace, values))
    assert "daemonset.apps/gpu-inventory-agent created (server dry run)" in out
    assert "validatingadmissionpolicy.admissionregistration.k8s.io/" in out
    assert "poddisruptionbudget.policy/gpu-inventory-operator created" in out
    assert "servicemonitor.monitoring.coreos.com/gpu-inventory-operator created" in out
    assert "prometheusrule.monitoring.coreos.com/gpu-inventory created" in out
    # The CRDs validate for real: an interval that is not a Prometheus duration is refused.
    (monitor,) = [
        o
        for o in helm.objects(helm.template(fresh_namespace, values))
        if o["kind"] == "ServiceMonitor"
    ]
    monitor["spec"]["endpoints"][0]["interval"] = "30"
    refused = run_kubectl(
        control_plane.kubeconfig,
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=json.dumps(monitor),
    )
    assert refused.returncode != 0
    assert "spec.endpoints[0].interval" in refused.stderr, refused.stderr


@pytest.mark.cluster
def test_the_longest_release_names_give_valid_object_names(
    control_plane: ControlPlane, fresh_namespace: str
) -> None:
    """Helm allows 53 characters; a Service name is a DNS-1035 label of at most 63, and the
    longest suffix the chart adds is `-operator-metrics`."""
    for release in ("team-a-production-cluster-east-accelerator-fleet", "x" * 53):
        rendered = helm.template(fresh_namespace, release=release)
        names = [o["metadata"]["name"] for o in helm.objects(rendered) if o["kind"] == "Service"]
        assert all(len(name) <= 63 for name in names), names
        _dry_run_apply(control_plane, rendered)


@pytest.mark.cluster
def test_cluster_scoped_objects_of_the_kustomize_base_carry_no_namespace(
    control_plane: ControlPlane, k8s: client.ApiClient
) -> None:
    built = run_kubectl(control_plane.kubeconfig, "kustomize", str(REPO_ROOT / "manifests"))
    assert built.returncode == 0, built.stderr
    discovery = dynamic.DynamicClient(k8s)
    for obj in helm.objects(built.stdout):
        resource = discovery.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        has_namespace = "namespace" in obj["metadata"]
        assert has_namespace == resource.namespaced, (obj["kind"], obj["metadata"])


@pytest.mark.cluster
def test_every_pod_meets_pod_security_restricted_which_the_namespace_enforces(
    k8s: client.ApiClient, fresh_namespace: str
) -> None:
    labels = client.CoreV1Api(k8s).read_namespace(fresh_namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    templates = _pod_templates(helm.objects(helm.template(fresh_namespace)))
    assert set(templates) == {"gpu-inventory-agent", "gpu-inventory-operator", "gpu-inventory-mcp"}
    core = client.CoreV1Api(k8s)
    for name, template in templates.items():
        pod = {"metadata": {"name": name}, "spec": {**template["spec"], "nodeName": "n"}}
        pod["spec"].pop("priorityClassName", None)  # not installed by a dry run
        core.create_namespaced_pod(fresh_namespace, pod, dry_run="All")


@pytest.mark.cluster
@pytest.mark.parametrize("level", ["restricted", "baseline", "privileged"])
def test_mig_monitoring_needs_a_privileged_namespace(k8s: client.ApiClient, level: str) -> None:
    """CAP_SYS_ADMIN (for the MIG monitor capability) is outside baseline's allowed set; the
    chart's own namespace says `privileged` in this mode and `restricted` otherwise."""
    mig = {"agent.migMonitoring": "true", "namespace.create": "true"}
    objects = _render(**mig)
    (namespace,) = [o for o in objects if o["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    template = _pod_templates(objects)["gpu-inventory-agent"]
    container = template["spec"]["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert {"name": "NVIDIA_MIG_MONITOR_DEVICES", "value": "all"} in container["env"]
    name = f"psa-{level}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(k8s)
    core.create_namespace(
        {"metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": level}}}
    )
    try:
        spec = {**template["spec"], "nodeName": "n"}
        spec.pop("priorityClassName")
        pod = {"metadata": {"name": "agent"}, "spec": spec}
        if level == "privileged":
            core.create_namespaced_pod(name, pod, dry_run="All")
        else:
            with pytest.raises(client.ApiException) as refused:
                core.create_namespaced_pod(name, pod, dry_run="All")
            assert refused.value.status == 403
            assert "SYS_ADMIN" in refused.value.body
    finally:
        core.delete_namespace(name)


def test_the_kind_overlay_runs_the_simulated_agent_from_the_kind_image() -> None:
    built = subprocess.run(
        [kubectl_path(), "kustomize", str(REPO_ROOT / "e2e" / "kind" / "overlay")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    templates = _pod_templates(helm.objects(built.stdout))
    agent = templates["gpu-inventory-agent"]["spec"]
    assert agent["containers"][0]["command"] == ["python", "-m", "gpu_inventory.testing.simagent"]
    for template in templates.values():
        container = template["spec"]["containers"][0]
        assert (container["image"], container["imagePullPolicy"]) == ("gpu-inventory:kind", "Never")
