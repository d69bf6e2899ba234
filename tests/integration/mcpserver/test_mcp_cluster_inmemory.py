"""The MCP server on a real control plane: the SDK's in-memory Client, CRs written as admin."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import kubernetes.client
import pytest
import urllib3
from mcp import Client

from gpu_inventory.api import constants
from gpu_inventory.api.models import GPUNode
from gpu_inventory.mcpserver import kube
from gpu_inventory.mcpserver.cache import InventoryCache, WatchTiming
from gpu_inventory.mcpserver.server import RESOURCE_URI, build_server
from gpu_inventory.mcpserver.settings import Settings
from gpu_inventory.testing import samples
from gpu_inventory.testing.builders import make_node
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.legacy_shape import assert_is_the_seed_answer, target_cluster
from gpu_inventory.testing.mcpcalls import answer, answer_when, error_text, summary_after_update
from gpu_inventory.testing.nodes import create_node
from gpu_inventory.testing.wait import eventually_async

pytestmark = pytest.mark.cluster
G, V, NODES = constants.GROUP, constants.VERSION, constants.NODE_PLURAL


def now() -> datetime:
    return datetime.now(UTC)


def cluster_nodes() -> tuple[GPUNode, ...]:
    """Two T4 nodes (one with a sick GPU) and a NotReady A100 node, agents reporting now."""
    sick = [
        samples.gpu(0, node="t4-b"),
        samples.gpu(
            1,
            node="t4-b",
            health="Unhealthy",
            reasons=["XID 79: fell off the bus"],
            xids=[samples.xid(79, minute=5, action="RebootNode", xid_class="Hardware")],
        ),
    ]
    return (
        samples.gpunode("t4-a", gpus=4, allocated=1, heartbeat=now()),
        samples.gpunode("t4-b", gpus=sick, allocated=1, heartbeat=now()),
        samples.gpunode(
            "a100",
            gpus=8,
            product="NVIDIA-A100-SXM4-80GB",
            allocated=2,
            ready=False,
            heartbeat=now(),
        ),
    )


@asynccontextmanager
async def connect(kubeconfig: Path) -> AsyncIterator[Client]:
    """A server with its own watch cache on `kubeconfig`, retrying at most every second."""
    cache = InventoryCache(
        kube.api_client_factory(str(kubeconfig)),
        timing=WatchTiming(watch_timeout_seconds=30, backoff_max_seconds=1.0),
    )
    server = build_server(Settings(kubeconfig=str(kubeconfig)), cache=cache)
    async with Client(server, raise_exceptions=True) as client:
        yield client


@asynccontextmanager
async def serving_the_sample_cluster(cluster: ControlPlane, objects: Any) -> AsyncIterator[Client]:
    """`cluster_nodes()` and their inventory as real CRs, and a server whose cache has them."""
    nodes = cluster_nodes()
    objects.put(samples.inventory(nodes, now=now()), *nodes)
    async with connect(cluster.kubeconfig) as client:
        await answer_when(client, "get_gpu_inventory", {}, lambda d: len(d["nodes"]) == 3)
        yield client


async def test_inventory_from_real_crs_is_the_legacy_answer(
    cluster: ControlPlane, objects: Any
) -> None:
    """The seed's example cluster, stored as real CRs, answers the seed's example."""
    inventory, nodes = target_cluster(now())
    objects.put(inventory, *nodes)
    async with connect(cluster.kubeconfig) as client:
        data = await answer_when(
            client,
            "get_gpu_inventory",
            {"node": "ip-10-0-0-153"},
            lambda d: d["cluster_summary"]["total_nodes"] == 2,
        )

    assert data["inventory_current"] is True
    assert_is_the_seed_answer(data)


async def test_every_filter_on_real_crs(cluster: ControlPlane, objects: Any) -> None:
    async with serving_the_sample_cluster(cluster, objects) as client:

        def names(data: dict[str, Any]) -> list[str]:
            return [n["node_name"] for n in data["nodes"]]

        plain = await answer(client, "get_gpu_inventory", {"include_k8s_metadata": False})
        assert all("kubernetes" not in n for n in plain["nodes"])
        assert names(await answer(client, "get_gpu_inventory", {"node": "t4-b"})) == ["t4-b"]
        assert names(await answer(client, "get_gpu_inventory", {"product": "tesla t4"})) == [
            "t4-a",
            "t4-b",
        ]
        assert names(await answer(client, "get_gpu_inventory", {"product": "A100"})) == ["a100"]
        sick = await answer(client, "get_gpu_inventory", {"only_unhealthy_or_degraded": True})
        assert names(sick) == ["t4-b"]
        assert [g["index"] for g in sick["nodes"][0]["gpus"]] == [1]
        limited = await answer(client, "get_gpu_inventory", {"limit": 1})
        assert (names(limited), limited["nodes_matched"], limited["truncated"]) == (
            ["a100"],
            3,
            True,
        )
        assert "GPU nodes are: a100, t4-a, t4-b" in await error_text(
            client, "get_gpu_inventory", {"node": "t4-z"}
        )
        assert "products are: NVIDIA A100 SXM4 80GB, Tesla T4" in await error_text(
            client, "get_gpu_inventory", {"product": "H100"}
        )
        assert "limit" in await error_text(client, "get_gpu_inventory", {"limit": 0})


async def test_health_and_capacity_on_real_crs(cluster: ControlPlane, objects: Any) -> None:
    async with serving_the_sample_cluster(cluster, objects) as client:
        health = await answer(client, "get_gpu_health")
        assert [(g["node_name"], g["index"]) for g in health["gpus"]] == [("t4-b", 1)]
        assert health["gpus"][0]["recommended_action"] == "RebootNode"
        assert health["gpus"][0]["recent_xids"][0]["xid"] == 79
        assert (health["nodes_not_ready"], health["stale_agents"]) == (["a100"], [])

        capacity = await answer(client, "find_gpu_capacity", {"count": 1})
        # a100 is NotReady; t4-b has 1 free, t4-a 3: tightest first.
        assert [(n["node_name"], n["available"]) for n in capacity["nodes"]] == [
            ("t4-b", 1),
            ("t4-a", 3),
        ]
        too_big = await answer(client, "find_gpu_capacity", {"count": 4, "product": "T4"})
        assert too_big["nodes"] == []
        assert too_big["largest_free_block"] == 3
        assert "count" in await error_text(client, "find_gpu_capacity", {"count": -1})


async def test_answers_follow_the_crs_as_they_change(cluster: ControlPlane, objects: Any) -> None:
    async with serving_the_sample_cluster(cluster, objects) as client:
        busy = samples.gpunode("t4-a", gpus=4, allocated=4, heartbeat=now())
        objects.put_node(busy)
        await answer_when(
            client,
            "get_gpu_inventory",
            {"node": "t4-a"},
            lambda d: d["nodes"][0]["kubernetes"]["gpu_resources"]["allocated"] == 4,
        )
        objects.put_node(samples.gpunode("t4-c", gpus=2, heartbeat=now()))
        await answer_when(client, "get_gpu_inventory", {}, lambda d: len(d["nodes"]) == 4)
        objects.delete_node("t4-c")
        await answer_when(client, "get_gpu_inventory", {}, lambda d: len(d["nodes"]) == 3)


async def test_resource_update_is_published_when_the_cr_changes(
    cluster: ControlPlane, objects: Any
) -> None:
    async with serving_the_sample_cluster(cluster, objects) as client:
        async with client.listen(resource_subscriptions=[RESOURCE_URI]) as subscription:
            busier = (
                samples.gpunode("t4-a", gpus=4, allocated=3, heartbeat=now()),
                *cluster_nodes()[1:],
            )
            objects.put_inventory(samples.inventory(busier, now=now()))
            summary = await summary_after_update(client, subscription)
        assert summary["gpus_allocated"] == 6


async def test_missing_inventory_means_the_operator_is_not_running(
    cluster: ControlPlane, objects: Any
) -> None:
    objects.put_node(samples.gpunode("t4-a", gpus=4, heartbeat=now()))
    async with connect(cluster.kubeconfig) as client:

        async def says_not_running() -> str:
            text = await error_text(client, "get_gpu_inventory")
            assert "does not exist" in text, text
            return text

        text = await eventually_async(says_not_running, timeout=15)
    assert text == (
        "Error executing tool get_gpu_inventory: GPUInventory 'cluster' does not exist: the "
        "gpu-inventory operator is not running yet (or has not created it). Start the "
        "operator; this server only reads what it writes."
    )


async def test_an_unreachable_api_server_is_a_clear_error(unreachable_kubeconfig: Path) -> None:
    async with connect(unreachable_kubeconfig) as client:

        async def refused() -> str:
            text = await error_text(client, "find_gpu_capacity", {"count": 1})
            assert "cannot be reached" in text, text
            return text

        text = await eventually_async(refused, timeout=15)
    assert "connection refused" in text
    assert "Traceback" not in text
    assert "The MCP server keeps retrying." in text


async def test_the_cache_recovers_when_the_api_server_restarts(
    cluster: ControlPlane, objects: Any
) -> None:
    async with serving_the_sample_cluster(cluster, objects) as client:
        async with anyio.create_task_group() as restart:
            restart.start_soon(anyio.to_thread.run_sync, cluster.restart_apiserver)
            # While it is away (its graceful shutdown alone takes a while), answers come from
            # the cache and say so.
            stale = await answer_when(
                client, "get_gpu_inventory", {}, lambda d: bool(d["warnings"]), timeout=60
            )
        assert len(stale["nodes"]) == 3
        assert stale["warnings"][0].startswith("Serving cached data: lost contact with the")

        objects.put_node(samples.gpunode("t4-c", gpus=2, heartbeat=now()))
        # Both watches come back (after a relist: the new apiserver forgot the old versions).
        await answer_when(
            client,
            "get_gpu_inventory",
            {},
            lambda d: len(d["nodes"]) == 4 and d["warnings"] == [],
            timeout=30,
        )


async def test_a_tool_call_sends_no_api_request(
    cluster: ControlPlane, objects: Any, k8s: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12's target, "0 API calls per tool call", on a watch-backed cache against the real
    API server (a cache loaded from models could not show it). Every request the kubernetes
    client sends passes through urllib3's PoolManager.urlopen once; the watch threads' own
    requests are told apart by their thread names."""
    senders: list[str] = []
    original = urllib3.PoolManager.urlopen

    def counting(self: urllib3.PoolManager, *args: Any, **kwargs: Any) -> Any:
        senders.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    async with serving_the_sample_cluster(cluster, objects) as client:
        monkeypatch.setattr(urllib3.PoolManager, "urlopen", counting)
        # The instrument works: a request from the kind of worker thread tools run on counts.
        custom = kubernetes.client.CustomObjectsApi(k8s)
        await anyio.to_thread.run_sync(lambda: custom.list_cluster_custom_object(G, V, NODES))
        assert len([name for name in senders if not name.startswith("watch-")]) == 1
        senders.clear()

        calls: list[tuple[str, dict[str, Any]]] = [
            ("get_gpu_inventory", {}),
            ("get_gpu_inventory", {"node": "t4-b"}),
            ("get_gpu_health", {}),
            ("find_gpu_capacity", {"count": 2}),
        ]
        for tool, args in calls:
            await answer(client, tool, args)
        await client.read_resource(RESOURCE_URI)

    assert [name for name in senders if not name.startswith("watch-")] == []


NPD_CONDITIONS = [
    # kubelet's
    ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID"),
    # Node Problem Detector's default monitors (kernel-monitor.json, systemd-monitor.json)
    ("KernelDeadlock", "False", "KernelHasNoDeadlock"),
    ("ReadonlyFilesystem", "False", "FilesystemIsNotReadOnly"),
    ("FrequentKubeletRestart", "False", "NoFrequentKubeletRestart"),
    # a site's own NPD plugin for GPUs
    ("GPUXidError", "True", "XidError79"),
]


def conditions(*triples: tuple[str, str, str]) -> list[dict[str, str]]:
    return [
        {"type": kind, "status": status, "reason": reason, "message": "set by a test"}
        for kind, status, reason in triples
    ]


async def test_node_problem_detector_conditions_flow_from_the_node_to_the_answer(
    cluster: ControlPlane, k8s: Any, operator: Path
) -> None:
    """Node -> the real operator -> GPUNode status.kubernetes.conditions -> the watch cache ->
    get_gpu_inventory: every condition on the Node, as a bool, and a change follows."""
    core = kubernetes.client.CoreV1Api(k8s)
    body = make_node("gpu-npd", gpus=4, product="Tesla-T4")
    body["status"]["conditions"] += conditions(*NPD_CONDITIONS)
    create_node(core, body)

    def node_conditions(data: dict[str, Any]) -> dict[str, bool]:
        nodes = data["nodes"]
        return dict(nodes[0]["kubernetes"]["conditions"]) if nodes else {}

    async with connect(cluster.kubeconfig) as client:
        data = await answer_when(
            client,
            "get_gpu_inventory",
            {},
            lambda d: "GPUXidError" in node_conditions(d),
            timeout=60,
        )
        assert node_conditions(data) == {
            "Ready": True,
            **{kind: status == "True" for kind, status, _ in NPD_CONDITIONS},
        }

        core.patch_node_status(
            "gpu-npd",
            {"status": {"conditions": conditions(("KernelDeadlock", "True", "DockerHung"))}},
        )
        await answer_when(
            client,
            "get_gpu_inventory",
            {"node": "gpu-npd"},
            lambda d: node_conditions(d).get("KernelDeadlock") is True,
            timeout=30,
        )
