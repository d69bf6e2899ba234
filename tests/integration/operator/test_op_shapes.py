"""Real-world node and pod shapes: what the inventory says each GPU node has allocated is what
`kubectl describe node` (the upstream Go code, on the same objects) says, resource by resource,
with SGX, hugepages, RDMA, AMD, time-slicing, MIG, init containers, sidecars and RuntimeClass
overhead all present in one cluster."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.testing import shapes
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.kubectl import run_kubectl
from gpu_inventory.testing.wait import equals, eventually

pytestmark = pytest.mark.cluster

SELECTED = re.compile(r"^nvidia\.com/(gpu|gpu\.shared|mig-.*)$")


def described_requests(plane: ControlPlane, node: str) -> dict[str, int]:
    """The "Allocated resources" requests of `kubectl describe node`, for GPU resources."""
    result = run_kubectl(plane.kubeconfig, "describe", "node", node)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Allocated resources:"))
    found: dict[str, int] = {}
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        match = re.match(r"^\s+(\S+)\s+(\S+)", line)
        if match and SELECTED.match(match.group(1)):
            found[match.group(1)] = int(match.group(2))
    return {name: count for name, count in found.items() if count}


@pytest.fixture
def runtime_class(k8s: client.ApiClient) -> Any:
    api = client.NodeV1Api(k8s)
    api.create_runtime_class(shapes.runtime_class())
    yield shapes.RUNTIME_CLASS
    api.delete_runtime_class(shapes.RUNTIME_CLASS)


def test_allocated_agrees_with_kubectl_describe_node(
    operator: Any, kube: Any, namespace: str, cluster: ControlPlane, runtime_class: str
) -> None:
    cases = shapes.shapes()
    for shape in cases:
        kube.create_node(shape.node)
        for pod in shape.pods:
            pod["metadata"]["namespace"] = namespace
            kube.create_pod(pod)
    gpu_nodes = {s.node["metadata"]["name"] for s in cases if s.gpu_node}

    def complete(status: dict[str, Any]) -> None:
        assert kube.condition(status, "Ready") == ("True", "InventoryCurrent")
        assert {row["name"] for row in status["nodes"]} == gpu_nodes

    status = kube.wait_for(complete, timeout=60, what="a row for every GPU node")
    rows = {row["name"]: row for row in status["nodes"]}
    for shape in cases:
        name = shape.node["metadata"]["name"]
        described = described_requests(cluster, name)
        if not shape.gpu_node:
            assert name not in rows, shape.why
            continue
        assert described == dict(shape.want), f"{shape.name}: kubectl says {described}"
        view = eventually(functools.partial(kube.view, name), timeout=30, what=f"{name}'s view")
        ours = {r["name"]: r["allocated"] for r in view["gpuResources"] if r["allocated"]}
        assert ours == described, f"{shape.name}: {shape.why}"
        assert rows[name]["allocated"] == described.get("nvidia.com/gpu", 0), shape.name
    totals = {r["name"]: r["allocated"] for r in status["resources"]}
    for resource in ("nvidia.com/gpu", "nvidia.com/gpu.shared"):
        expected = sum(s.want.get(resource, 0) for s in cases)
        equals(totals.get(resource, 0), expected)
