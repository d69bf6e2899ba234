"""Real-world node and pod shapes, for the accounting tests and the `kubectl describe node` check.

Pure: no I/O. Each shape is one Node and the pods bound to it, as clusters really carry them:
other extended resources with byte-sized values beside the GPUs (SGX EPC, hugepages, RDMA
shared devices), AMD GPUs, time-sliced replicas, mixed-strategy MIG, a GPU node without GPU
labels, init-container-only and sidecar GPU pods, and overhead added by a RuntimeClass.

`want` is what kube-scheduler counts per GPU resource (k8s.io/component-helpers `PodRequests`),
derived by hand with the reason in `why`. The unit test checks our formula against it; the
integration test checks both against `kubectl describe node` on the local control plane, which
runs the upstream Go code on the real objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

from gpu_inventory.testing.builders import container, make_node, make_pod

GPU: Final = "nvidia.com/gpu"
SHARED: Final = "nvidia.com/gpu.shared"
MIG_1G: Final = "nvidia.com/mig-1g.10gb"
MIG_3G: Final = "nvidia.com/mig-3g.40gb"

RUNTIME_CLASS: Final = "kata-gpu"
RUNTIME_CLASS_OVERHEAD: Final = {"cpu": "250m", "memory": "160Mi"}


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    node: dict[str, Any]
    pods: Sequence[dict[str, Any]]
    want: Mapping[str, int]
    """Allocated per GPU resource name (the default `spec.resourceNames`)."""
    why: str
    gpu_node: bool = True
    """Whether the node has a selected GPU resource (and so a row in the inventory)."""


def _pod(name: str, node: str, **kwargs: Any) -> dict[str, Any]:
    return make_pod(name, node=node, **kwargs)


def _sized(name: str, node: str, resources: Mapping[str, str], **kwargs: Any) -> dict[str, Any]:
    """A pod whose one container requests and limits `resources` (hugepages need both)."""
    body = make_pod(name, node=node, **kwargs)
    body["spec"]["containers"][0]["resources"] = {
        "requests": dict(resources),
        "limits": dict(resources),
    }
    return body


def shapes() -> list[Shape]:
    return [
        Shape(
            "sgx-epc-in-bytes",
            make_node("sgx", gpus=8, resources={"sgx.intel.com/epc": "98566144"}),
            [_pod("sgx-a", "sgx", resources={GPU: "1", "sgx.intel.com/epc": "1Mi"})],
            {GPU: 1},
            "SGX EPC is counted in bytes (98566144 on the node, 1Mi in the pod); only the GPU "
            "is a GPU resource",
        ),
        Shape(
            "hugepages",
            make_node("huge", gpus=4, resources={"hugepages-1Gi": "64Gi"}),
            [
                _sized(
                    "huge-a",
                    "huge",
                    {GPU: "2", "hugepages-1Gi": "4Gi", "memory": "1Gi", "cpu": "1"},
                )
            ],
            {GPU: 2},
            "hugepages-1Gi is a native resource in bytes; the pod holds 2 GPUs",
        ),
        Shape(
            "rdma-shared-devices",
            make_node("rdma", gpus=8, resources={"rdma/hca_shared_devices_a": "1000"}),
            [
                _pod("rdma-a", "rdma", resources={GPU: "4", "rdma/hca_shared_devices_a": "1"}),
                _pod("rdma-b", "rdma", resources={GPU: "2", "rdma/hca_shared_devices_a": "1"}),
            ],
            {GPU: 6},
            "RDMA shared devices are advertised 1000 per node; 4 + 2 GPUs",
        ),
        Shape(
            "amd-gpus-only",
            make_node("amd", resources={"amd.com/gpu": "8"}, labels={"amd.com/gpu.family": "AI"}),
            [_pod("amd-a", "amd", resources={"amd.com/gpu": "2"})],
            {},
            "amd.com/gpu is not in the default resourceNames: not an NVIDIA GPU node",
            gpu_node=False,
        ),
        Shape(
            "time-sliced-replicas",
            make_node(
                "shared",
                resources={SHARED: "40"},
                labels={"nvidia.com/gpu.replicas": "5", "nvidia.com/gpu.count": "8"},
            ),
            [_pod(f"shared-{i}", "shared", resources={SHARED: "1"}) for i in range(3)],
            {SHARED: 3},
            "time-slicing with renameByDefault: 8 GPUs x 5 replicas as nvidia.com/gpu.shared",
        ),
        Shape(
            "mixed-strategy-mig",
            make_node(
                "mig",
                gpus=6,
                product="NVIDIA-H100-80GB-HBM3",
                resources={MIG_1G: "14", MIG_3G: "2"},
            ),
            [
                _pod("mig-a", "mig", resources={MIG_1G: "2"}),
                _pod("mig-b", "mig", resources={MIG_3G: "1"}),
                _pod("mig-c", "mig", gpus=1),
            ],
            {GPU: 1, MIG_1G: 2, MIG_3G: 1},
            "mixed strategy: six whole GPUs and MIG devices from the other two, each its own",
        ),
        Shape(
            "gpus-without-gpu-labels",
            _unlabelled(make_node("bare", gpus=2)),
            [_pod("bare-a", "bare", gpus=1)],
            {GPU: 1},
            "no GFD or NFD labels; the capacity alone makes it a GPU node",
        ),
        Shape(
            "init-container-only",
            make_node("init", gpus=4),
            [
                make_pod(
                    "init-a",
                    node="init",
                    containers=[container("main")],
                    init_containers=[container("warmup", gpus=2)],
                )
            ],
            {GPU: 2},
            "the init container's 2 GPUs are the pod's peak, held while it is Pending",
        ),
        Shape(
            "native-sidecars",
            make_node("side", gpus=8),
            [
                make_pod(
                    "side-a",
                    node="side",
                    gpus=1,
                    init_containers=[
                        container("proxy", gpus=1, restart_policy="Always"),
                        container("setup", gpus=2),
                    ],
                )
            ],
            {GPU: 3},
            "KEP-753: setup runs beside the proxy sidecar declared before it (2 + 1 = 3), more "
            "than the steady main + proxy (1 + 1 = 2)",
        ),
        Shape(
            "runtime-class-overhead",
            make_node("kata", gpus=2),
            [_runtime_class_pod("kata-a", "kata", gpus=1)],
            {GPU: 1},
            "a RuntimeClass adds its overhead (cpu, memory) to the pod; GPUs are not overhead",
        ),
    ]


def runtime_class() -> dict[str, Any]:
    """The RuntimeClass the overhead shape uses; the API server's RuntimeClass admission
    plugin copies its overhead into each pod that names it."""
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": RUNTIME_CLASS},
        "handler": "kata",
        "overhead": {"podFixed": dict(RUNTIME_CLASS_OVERHEAD)},
    }


def _runtime_class_pod(name: str, node: str, *, gpus: int) -> dict[str, Any]:
    """Named RuntimeClass, and the overhead its admission plugin sets (it accepts a pod that
    already carries the same overhead)."""
    body = make_pod(name, node=node, gpus=gpus)
    body["spec"]["runtimeClassName"] = RUNTIME_CLASS
    body["spec"]["overhead"] = dict(RUNTIME_CLASS_OVERHEAD)
    return body


def _unlabelled(node: dict[str, Any]) -> dict[str, Any]:
    node["metadata"]["labels"] = {"kubernetes.io/hostname": node["metadata"]["name"]}
    return node
