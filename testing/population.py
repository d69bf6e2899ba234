"""A benchmark cluster on the local control plane: GPU nodes and bound pods, created in parallel.

Shared by `bench/operator_scale.py` and `bench/peers.py`. A fraction of the pods ask for one
GPU, the rest for CPU only, as in a real cluster; `shaped` of the GPU pods carry an init
container or a native sidecar holding GPUs, which kube-scheduler counts and naive sums do not.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kubernetes import client

from gpu_inventory.testing.builders import container, make_node, make_pod
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.nodes import create_node

T = TypeVar("T")


def api_client(plane: ControlPlane, pool: int) -> client.ApiClient:
    api = plane.api_client()
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = pool
    return api


def parallel(threads: int, jobs: Iterable[T], fn: Callable[[T], Any]) -> float:
    """Run `fn` over `jobs` on `threads` threads; the seconds it took."""
    began = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(fn, jobs):
            pass
    return time.monotonic() - began


@dataclasses.dataclass
class Populated:
    nodes: list[str]
    namespaces: list[str]
    allocated: dict[str, int]
    """GPUs allocated per node, as kube-scheduler counts them."""
    free: dict[str, int]
    """GPUs left per node."""

    @property
    def expected_total(self) -> int:
        return sum(self.allocated.values())


def populate(
    plane: ControlPlane,
    *,
    nodes: int,
    pods: int,
    gpus_per_node: int = 8,
    gpu_pod_fraction: float = 0.3,
    shaped: float = 0.0,
    namespaces: int = 20,
    threads: int = 48,
    seed: int = 7,
) -> Populated:
    """Create the nodes and pods; print how long each took."""
    api = api_client(plane, threads)
    core = client.CoreV1Api(api)
    spaces = [f"bench-{i}" for i in range(namespaces)]
    for name in spaces:
        core.create_namespace({"metadata": {"name": name}})
    names = [f"gpu-{i:05d}" for i in range(nodes)]

    def add_node(name: str) -> None:
        create_node(core, make_node(name, gpus=gpus_per_node, product="NVIDIA-H100-80GB-HBM3"))

    took = parallel(threads, names, add_node)
    print(f"created {len(names)} nodes in {took:.1f}s ({len(names) / took:.0f}/s)", flush=True)

    rng = random.Random(seed)
    free = dict.fromkeys(names, gpus_per_node)
    allocated = dict.fromkeys(names, 0)
    plan: list[dict[str, Any]] = []
    for index in range(pods):
        node = names[index % len(names)]
        namespace = spaces[index % len(spaces)]
        name = f"pod-{index:06d}"
        if rng.random() < gpu_pod_fraction and free[node] > 2:
            if rng.random() < shaped:
                body = _shaped(name, namespace, node, rng)
                held = 2
            else:
                body = make_pod(name, namespace=namespace, node=node, gpus=1)
                held = 1
            free[node] -= held
            allocated[node] += held
        else:
            body = make_pod(name, namespace=namespace, node=node)
            body["spec"]["containers"][0]["resources"] = {
                "requests": {"cpu": "100m", "memory": "128Mi"}
            }
        plan.append(body)

    def add_pod(body: dict[str, Any]) -> None:
        core.create_namespaced_pod(body["metadata"]["namespace"], body)

    took = parallel(threads, plan, add_pod)
    print(
        f"created {len(plan)} pods in {took:.1f}s ({len(plan) / took:.0f}/s), "
        f"{sum(allocated.values())} GPUs allocated",
        flush=True,
    )
    api.close()
    return Populated(nodes=names, namespaces=spaces, allocated=allocated, free=free)


def _shaped(name: str, namespace: str, node: str, rng: random.Random) -> dict[str, Any]:
    """A pod holding 2 GPUs by kube-scheduler's count, but 1 by a sum of its main containers:
    an init container needing 2 (init-container-only peak), or a 1-GPU native sidecar beside
    a 1-GPU main container."""
    if rng.random() < 0.5:
        return make_pod(
            name,
            namespace=namespace,
            node=node,
            gpus=1,
            init_containers=[container("warmup", gpus=2)],
        )
    return make_pod(
        name,
        namespace=namespace,
        node=node,
        gpus=1,
        init_containers=[container("proxy", gpus=1, restart_policy="Always")],
    )
