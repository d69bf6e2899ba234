"""The whole system on the local control plane, as users deploy it.

Installed for real (kustomize, and Helm into another namespace); operator, four agents (the
real agent over a simulated NVML) and the MCP server as processes, each with its own
ServiceAccount's token. Three nodes' GPUs come from a device plugin, one node's from NVIDIA's
DRA driver (a ResourceSlice). GPU pods and claims are created, and kubectl and an MCP client
must agree with the numbers the scheduler would use.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import yaml
from kubernetes import client
from mcp import Client, StdioServerParameters

from gpu_inventory.api import constants
from gpu_inventory.testing import nodes
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.kubectl import run_kubectl
from gpu_inventory.testing.mcpcalls import answer_when
from gpu_inventory.testing.system import (
    MIG_RESOURCE as MIG,
)
from gpu_inventory.testing.system import (
    GPUInventorySystem,
    create_workload,
    running_system,
)
from gpu_inventory.testing.wait import eventually

pytestmark = pytest.mark.cluster

G, V = constants.GROUP, constants.VERSION


@pytest.fixture(
    params=[("kustomize", ""), ("helm", "gpu-fleet")], ids=["kustomize", "helm-gpu-fleet"]
)
def system(request: pytest.FixtureRequest, cluster: ControlPlane) -> Iterator[GPUInventorySystem]:
    """The system installed both ways users install it: `kubectl apply -k manifests/`, and
    `helm install` into a namespace other than the default one."""
    method, namespace = request.param
    with running_system(
        cluster,
        method=method,
        namespace=namespace,
        write_floor_seconds=1.0,
        heartbeat_seconds=10.0,
    ) as running:
        yield running


def kubectl(system: GPUInventorySystem, *args: str) -> str:
    result = run_kubectl(system.plane.kubeconfig, *args, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def inventory_yaml(system: GPUInventorySystem) -> dict[str, Any]:
    system.check_alive()
    document: dict[str, Any] = yaml.safe_load(
        kubectl(system, "get", "gpuinventory", "cluster", "-o", "yaml")
    )
    return document


def condition(inventory: dict[str, Any], kind: str) -> tuple[str, str]:
    for c in inventory.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return c["status"], c["reason"]
    return "Missing", ""


def test_kubectl_and_mcp_agree_with_the_scheduler(
    system: GPUInventorySystem, k8s: client.ApiClient
) -> None:
    create_workload(k8s)

    def complete() -> dict[str, Any]:
        inventory = inventory_yaml(system)
        summary = inventory.get("status", {}).get("summary", {})
        assert condition(inventory, "Ready")[0] == "True", inventory.get("status")
        assert summary.get("allocated") == 9, summary
        assert summary.get("staleAgents") == 0, summary
        assert summary.get("gpus") == 25, summary
        return inventory

    inventory = eventually(complete, timeout=60, what="a complete, current inventory")
    status = inventory["status"]
    assert status["observedGeneration"] == inventory["metadata"]["generation"]
    summary = dict(status["summary"])
    assert sorted(summary.pop("products")) == ["NVIDIA-H100-80GB-HBM3", "Tesla-T4"]
    # Device-plugin GPUs and DRA GPUs add up in the headline; each keeps a row of its own.
    assert summary == {
        "nodes": 4,
        "readyNodes": 4,
        "gpus": 25,
        "capacity": 19,
        "allocatable": 19,
        "allocated": 9,
        "available": 10,
        "unhealthyGPUs": 0,
        "staleAgents": 0,
    }
    resources = {
        (r["name"], r["source"]): (r["capacity"], r["allocatable"], r["allocated"], r["available"])
        for r in status["resources"]
    }
    assert resources == {
        ("nvidia.com/gpu", "DevicePlugin"): (13, 13, 7, 6),
        ("nvidia.com/gpu", "DRA"): (6, 6, 2, 4),
        (MIG, "DevicePlugin"): (28, 28, 3, 25),
        (MIG, "DRA"): (14, 14, 1, 13),
    }
    rows = {row["name"]: row for row in status["nodes"]}
    assert {
        name: (r["allocatable"], r["allocated"], r["gpus"], r["agent"], r.get("source"))
        for name, r in rows.items()
    } == {
        "gpu-t4-a": (1, 1, 1, "Reporting", None),
        "gpu-h100-a": (6, 4, 8, "Reporting", None),
        "gpu-h100-b": (6, 2, 8, "Reporting", None),
        "gpu-h100-dra": (6, 2, 8, "Reporting", "DRA"),
    }
    assert condition(inventory, "Degraded") == ("False", constants.Reason.ALL_HEALTHY)
    assert condition(inventory, "Stalled")[0] == "False"

    def gpunodes_table() -> None:
        # Each GPUNode's view is written by its own writer, right after the inventory.
        table = [line.split() for line in kubectl(system, "get", "gpunodes").strip().splitlines()]
        assert table[0][:6] == ["NAME", "GPUS", "PRODUCT", "ALLOCATED", "HEALTH", "AGENT"]
        assert sorted(row[:6] for row in table[1:]) == [
            ["gpu-h100-a", "8", "NVIDIA-H100-80GB-HBM3", "4", "Healthy", "Reporting"],
            ["gpu-h100-b", "8", "NVIDIA-H100-80GB-HBM3", "2", "Healthy", "Reporting"],
            ["gpu-h100-dra", "8", "NVIDIA-H100-80GB-HBM3", "2", "Healthy", "Reporting"],
            ["gpu-t4-a", "1", "Tesla-T4", "1", "Healthy", "Reporting"],
        ]

    eventually(gpunodes_table, timeout=30, what="kubectl get gpunodes")

    answer = _mcp_inventory(system)
    assert answer["status"] == "success"
    mcp_summary = answer["cluster_summary"]
    assert (mcp_summary["total_nodes"], mcp_summary["total_gpus"]) == (4, 25)
    assert [mcp_summary[k] for k in ("gpus_allocatable", "gpus_allocated", "gpus_available")] == [
        19,
        9,
        10,
    ]
    nodes = {n["node_name"]: n for n in answer["nodes"]}
    assert nodes["gpu-t4-a"]["pod_name"] == "gpu-inventory-agent-gpu-t4-a"
    t4_resources = nodes["gpu-t4-a"]["kubernetes"]["gpu_resources"]
    assert [t4_resources[k] for k in ("capacity", "allocatable", "allocated")] == [1, 1, 1]
    assert (
        nodes["gpu-h100-a"]["kubernetes"]["labels"]["nvidia.com/gpu.product"]
        == "NVIDIA-H100-80GB-HBM3"
    )
    assert len(nodes["gpu-h100-b"]["gpus"]) == 8
    dra_node = nodes["gpu-h100-dra"]
    assert (dra_node["source"], dra_node["available"]) == ("DRA", 4)
    assert {r["name"]: r["allocated"] for r in dra_node["kubernetes"]["all_gpu_resources"]} == {
        "nvidia.com/gpu": 2,
        MIG: 1,
    }


def _mcp_inventory(system: GPUInventorySystem) -> dict[str, Any]:
    """get_gpu_inventory over stdio, the MCP server authenticating as its own ServiceAccount."""

    command, args, env = system.mcp_command()

    async def call() -> dict[str, Any]:
        async with Client(StdioServerParameters(command=command, args=args, env=env)) as mcp:
            return await answer_when(
                mcp,
                "get_gpu_inventory",
                {},
                lambda d: d["cluster_summary"]["gpus_allocated"] == 9,
                timeout=30,
            )

    return anyio.run(call)


def test_a_scripted_xid_turns_the_inventory_degraded_and_back(
    system: GPUInventorySystem,
) -> None:
    def degraded(want: str) -> dict[str, Any]:
        inventory = inventory_yaml(system)
        assert condition(inventory, "Ready")[0] == "True", inventory.get("status")
        assert condition(inventory, "Degraded")[0] == want, inventory["status"]["conditions"]
        return inventory

    eventually(lambda: degraded("False"), timeout=60, what="all agents reporting healthy GPUs")

    node_b = system.nodes[2]
    reboot(system, node_b.name, "boot-1")
    system.start_agent(node_b, scenario="h100-8x-events")  # XID 79 on GPU 3 after 10 s
    inventory = eventually(
        lambda: degraded("True"), timeout=60, what="the XID to degrade the inventory"
    )
    assert condition(inventory, "Degraded")[1] == constants.Reason.UNHEALTHY_GPUS
    row = next(r for r in inventory["status"]["nodes"] if r["name"] == node_b.name)
    assert row["unhealthy"] >= 1
    gpunode = client.CustomObjectsApi(system.plane.api_client()).get_cluster_custom_object(
        G, V, constants.NODE_PLURAL, node_b.name
    )
    gpu3 = next(g for g in gpunode["status"]["gpus"] if g["index"] == 3)
    assert gpu3["health"]["status"] == "Unhealthy"
    assert [x["xid"] for x in gpu3["xids"]] == [79]

    # A restarted agent takes its XIDs back from the GPUNode; a reboot (a new boot ID, as the
    # kubelet reports it) resolves them: a healthy driver, no XID history.
    reboot(system, node_b.name, "boot-2")
    system.start_agent(node_b)
    eventually(lambda: degraded("False"), timeout=60, what="the inventory to recover")


def reboot(system: GPUInventorySystem, node: str, boot_id: str) -> None:
    with system.plane.api_client() as api:
        nodes.reboot(client.CoreV1Api(api), node, boot_id)


def test_identities_are_confined(system: GPUInventorySystem) -> None:
    """Agent A cannot write node B's GPUNode; the MCP server's identity cannot write anything."""
    plane = system.plane
    agent_a = client.CustomObjectsApi(plane.api_client(system.kubeconfigs["agent-gpu-t4-a"]))
    mcp = client.CustomObjectsApi(plane.api_client(system.kubeconfigs["mcp"]))

    def gpunodes_exist() -> None:
        names = {
            item["metadata"]["name"]
            for item in mcp.list_cluster_custom_object(G, V, constants.NODE_PLURAL)["items"]
        }
        assert {"gpu-h100-a", "gpu-t4-a"} <= names, names

    eventually(gpunodes_exist, timeout=30, what="GPUNodes to exist")
    refused_writes: tuple[Callable[[], object], ...] = (
        lambda: agent_a.patch_cluster_custom_object_status(  # valid, but not its own node's
            G, V, constants.NODE_PLURAL, "gpu-h100-a", {"status": {"agent": {"message": "x"}}}
        ),
        lambda: mcp.patch_cluster_custom_object_status(
            G, V, constants.NODE_PLURAL, "gpu-h100-a", {"status": {"summary": {"gpus": 0}}}
        ),
        lambda: mcp.patch_cluster_custom_object(
            G, V, constants.INVENTORY_PLURAL, "cluster", {"spec": {"agentStaleAfterSeconds": 10}}
        ),
        lambda: mcp.delete_cluster_custom_object(G, V, constants.NODE_PLURAL, "gpu-t4-a"),
    )
    for call in refused_writes:
        with pytest.raises(client.ApiException) as refused:
            call()
        assert refused.value.status == 403, json.loads(refused.value.body)["message"]
