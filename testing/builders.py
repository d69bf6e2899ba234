"""Builders for the Kubernetes objects tests create: `make_node`, `make_pod`.

Pure: no I/O. They return plain dicts, the API's own JSON shape, so a test reads like the YAML a
user would apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gpu_inventory.api import constants


def make_node(
    name: str,
    *,
    gpus: int = 0,
    product: str = "Tesla-T4",
    resources: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    ready: bool = True,
) -> dict[str, Any]:
    """A Node with `gpus` nvidia.com/gpu (plus `resources`) as capacity and allocatable.

    Create it with `create_node`, then set `status` with `patch_node_status`: without a
    kubelet, a Node's status is whatever the test writes.
    """
    extended = dict(resources or {})
    if gpus:
        extended.setdefault(constants.PRIMARY_RESOURCE, str(gpus))
    node_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if gpus or extended:
        node_labels[constants.PRODUCT_LABEL] = product
        node_labels[constants.GPU_COUNT_LABEL] = str(gpus)
    node_labels.update(labels or {})
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", **extended}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "message": "set by a test",
                }
            ],
        },
    }


def container(
    name: str = "main",
    *,
    gpus: int = 0,
    resources: Mapping[str, str] | None = None,
    restart_policy: str | None = None,
) -> dict[str, Any]:
    """A container whose GPU resources are in limits, as GPUs must be."""
    limits = dict(resources or {})
    if gpus:
        limits[constants.PRIMARY_RESOURCE] = str(gpus)
    spec: dict[str, Any] = {"name": name, "image": "registry.k8s.io/pause:3.10"}
    if limits:
        spec["resources"] = {"limits": limits}
    if restart_policy is not None:
        spec["restartPolicy"] = restart_policy
    return spec


def make_pod(
    name: str,
    *,
    namespace: str = "default",
    node: str | None = None,
    gpus: int = 0,
    resources: Mapping[str, str] | None = None,
    init_containers: Sequence[Mapping[str, Any]] | None = None,
    containers: Sequence[Mapping[str, Any]] | None = None,
    phase: str | None = None,
    service_account: str | None = None,
) -> dict[str, Any]:
    """A Pod bound to `node` (spec.nodeName), asking for `gpus` GPUs in one container."""
    spec: dict[str, Any] = {
        "containers": list(containers or [container(gpus=gpus, resources=resources)]),
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
    }
    if node is not None:
        spec["nodeName"] = node
    if init_containers:
        spec["initContainers"] = list(init_containers)
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    if phase is not None:
        pod["status"] = {"phase": phase}
    return pod


def make_gpunode(
    name: str,
    *,
    gpus: int = 0,
    unhealthy: int = 0,
    heartbeat: str | None = None,
    nvml: bool = True,
    product: str = "Tesla T4",
    uid: str | None = None,
) -> dict[str, Any]:
    """A GPUNode as an agent leaves it: a summary and `gpus` GPUs (`unhealthy` of them
    Unhealthy) that agree with it, and the agent's heartbeat (an RFC 3339 time, or none)."""
    gpu_list = [
        {
            "uuid": f"GPU-{name}-{index}",
            "index": index,
            "name": product,
            "health": {"status": "Unhealthy" if index < unhealthy else "Healthy"},
        }
        for index in range(gpus)
    ]
    status: dict[str, Any] = {
        "summary": {
            "gpus": gpus,
            "product": product.replace(" ", "-"),
            "health": "Unhealthy" if unhealthy else "Healthy",
            "unhealthy": unhealthy,
        },
        "agent": {"version": "test", "podName": f"agent-{name}", "nvmlAvailable": nvml},
        "gpus": gpu_list,
    }
    if heartbeat is not None:
        status["agent"]["heartbeatTime"] = heartbeat
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.NODE_KIND,
        "metadata": {"name": name, "uid": uid or f"g-{name}", "resourceVersion": "1"},
        "status": status,
    }
