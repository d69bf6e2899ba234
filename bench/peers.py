""" "GPUs allocated and free per node", the ways people answer it today, on one cluster.

Prints figures; asserts nothing. On the local control plane with N GPU nodes and M bound pods
(`testing.population`; a share of the GPU pods hold their GPUs in an init container or a
native sidecar), with the operator running until its first complete status, it answers the
question five ways and prints, for each: the time it took, the API requests it cost (from
kube-apiserver's own `apiserver_request_total`), and on how many nodes its answer agrees with
`kubectl describe node` (the upstream Go code, on the same objects; free = allocatable -
requests):

  a. the GPUInventory: one GET (and a LIST of GPUNodes for nodes beyond spec.maxNodeRows);
  b. the MCP tool `get_gpu_inventory`, paged, through the official SDK client over HTTP;
  c. `kubectl describe nodes`;
  d. `kubectl-view-allocations -r nvidia.com/gpu` when it is on PATH
     (`cargo install kubectl-view-allocations`);
  e. the older gateway tool's method per call: a Node GET and an all-namespace pod LIST per
     node, summing regular containers' requests (k8s-gpu-mcp-server `getNodeGPUAllocation`).

The operator is frozen (SIGSTOP) while the five run, so the request counts are theirs.

    PYTHONSAFEPATH=1 .venv/bin/python bench/peers.py --nodes 1000 --pods 20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from mcp import Client

from gpu_inventory.api import constants
from gpu_inventory.testing.controlplane import ControlPlane, free_port
from gpu_inventory.testing.kubectl import kubectl_path
from gpu_inventory.testing.metrics import apiserver_requests
from gpu_inventory.testing.population import api_client, populate
from gpu_inventory.testing.wait import eventually, holds

G, V = constants.GROUP, constants.VERSION
GPU = constants.PRIMARY_RESOURCE
BIN = Path(sys.executable).parent
Answer = dict[str, tuple[int, int]]
"""node -> (allocated, free)."""


@dataclass
class Row:
    method: str
    seconds: float
    requests: float
    answer: Answer | None
    note: str = ""


def measure(plane: ControlPlane, method: str, fn: Callable[[], Answer | None]) -> Row:
    before = apiserver_requests(plane)
    began = time.monotonic()
    answer = fn()
    took = time.monotonic() - began
    requests = apiserver_requests(plane) - before  # a scrape of /metrics is not counted
    return Row(method, took, requests, answer)


# --- a. the GPUInventory ------------------------------------------------------------------------


def from_inventory(api: client.ApiClient) -> Answer:
    custom = client.CustomObjectsApi(api)
    status = custom.get_cluster_custom_object(
        G, V, constants.INVENTORY_PLURAL, constants.INVENTORY_NAME
    )["status"]
    answer = {
        r["name"]: (r["allocated"], r["allocatable"] - r["allocated"]) for r in status["nodes"]
    }
    if status.get("nodesOmitted"):
        cont = None
        while True:
            page = custom.list_cluster_custom_object(
                G, V, constants.NODE_PLURAL, limit=500, _continue=cont
            )
            for item in page["items"]:
                view = (item.get("status") or {}).get("kubernetes") or {}
                gpu = next((r for r in view.get("gpuResources", []) if r["name"] == GPU), None)
                if gpu is not None:
                    free = max(gpu["allocatable"] - gpu["allocated"], 0)
                    answer[item["metadata"]["name"]] = (gpu["allocated"], free)
            cont = page["metadata"].get("continue")
            if not cont:
                break
    return answer


# --- b. the MCP tool ------------------------------------------------------------------------------


def from_mcp(url: str) -> Answer:
    async def walk() -> Answer:
        answer: Answer = {}
        async with Client(url) as mcp:
            cursor = None
            while True:
                arguments: dict[str, Any] = {"limit": 500}
                if cursor:
                    arguments["cursor"] = cursor
                result = await mcp.call_tool("get_gpu_inventory", arguments)
                data = result.structured_content or {}
                for node in data.get("nodes", []):
                    gpu = (node.get("kubernetes") or {}).get("gpu_resources") or {}
                    allocated = int(gpu.get("allocated") or 0)
                    free = max(int(gpu.get("allocatable") or 0) - allocated, 0)
                    answer[node["node_name"]] = (allocated, free)
                cursor = data.get("next_cursor")
                if not cursor:
                    return answer

    return asyncio.run(walk())


# --- c. kubectl describe nodes ------------------------------------------------------------------


def from_describe(plane: ControlPlane) -> Answer:
    out = subprocess.run(
        [kubectl_path(), f"--kubeconfig={plane.kubeconfig}", "describe", "nodes"],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    ).stdout
    answer: Answer = {}
    for section in re.split(r"\n(?=Name:\s)", out):
        name = re.match(r"Name:\s+(\S+)", section)
        allocatable = re.search(
            r"\nAllocatable:\n(?:\s+.*\n)*?\s+nvidia\.com/gpu:\s+(\d+)", section
        )
        if name is None or allocatable is None:
            continue
        used = re.search(r"Allocated resources:(?:\n.*)*?\n\s+nvidia\.com/gpu\s+(\d+)", section)
        allocated = int(used.group(1)) if used else 0
        answer[name.group(1)] = (allocated, max(int(allocatable.group(1)) - allocated, 0))
    return answer


# --- d. kubectl-view-allocations ----------------------------------------------------------------


def from_view_allocations(plane: ControlPlane) -> Answer | None:
    tool = shutil.which("kubectl-view-allocations")
    if tool is None:
        return None
    out = subprocess.run(
        [tool, "-r", GPU, "-o", "csv"],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
        env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
    ).stdout
    answer: Answer = {}
    for row in csv.DictReader(io.StringIO(out)):
        if row.get("kind") == "node" and row.get("resource") == GPU:
            allocated = int(float(row.get("Requested") or 0))
            answer[row["node"]] = (allocated, int(float(row.get("Free") or 0)))
    return answer


# --- e. the older gateway tool ------------------------------------------------------------------


def from_gateway(api: client.ApiClient, nodes: list[str]) -> Answer:
    core = client.CoreV1Api(api)

    def one(name: str) -> tuple[str, tuple[int, int]]:
        node = core.read_node(name)
        allocatable = int(str((node.status.allocatable or {}).get(GPU, "0")))
        pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}").items
        allocated = 0
        for pod in pods:
            if pod.status and pod.status.phase in ("Succeeded", "Failed"):
                continue
            for c in pod.spec.containers:
                requests = (c.resources and c.resources.requests) or {}
                allocated += int(str(requests.get(GPU, "0")))
        return name, (allocated, max(allocatable - allocated, 0))

    with ThreadPoolExecutor(10) as pool:  # the gateway's maxConcurrency
        return dict(pool.map(one, nodes))


# --- the run --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=20000)
    parser.add_argument(
        "--shaped", type=float, default=0.1, help="share of GPU pods with init/sidecar GPUs"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-inventory-peers-"))
    plane = ControlPlane(workdir)
    print(f"control plane in {workdir} ...", flush=True)
    plane.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        plane.install_crds()
        made = populate(plane, nodes=args.nodes, pods=args.pods, shaped=args.shaped)
        api = api_client(plane, 16)
        operator = subprocess.Popen(
            [str(BIN / "gpu-inventory-operator"), "--standalone", "--liveness", ""],
            env=plane.env(GPU_INVENTORY_METRICS_PORT=str(free_port())),
            stdout=(workdir / "operator.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        processes.append(operator)
        port = free_port()
        mcp = subprocess.Popen(
            [
                str(BIN / "gpu-inventory-mcp"),
                "--transport",
                "http",
                "--port",
                str(port),
                "--auth",
                "none",
            ],
            env=plane.env(),
            stdout=(workdir / "mcp.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        processes.append(mcp)

        def complete() -> None:
            try:
                body = client.CustomObjectsApi(api).get_cluster_custom_object(
                    G, V, constants.INVENTORY_PLURAL, constants.INVENTORY_NAME
                )
            except client.ApiException as error:  # not created yet: wait
                raise AssertionError(f"no GPUInventory yet ({error.status})") from error
            status = body.get("status") or {}
            holds(
                status.get("summary", {}).get("allocated") == made.expected_total,
                status.get("summary"),
            )

        eventually(complete, timeout=1800, interval=1, what="the operator's first complete status")
        eventually(
            lambda: holds(_views_written(api, args.nodes)),
            timeout=1800,
            interval=2,
            what="every GPUNode view",
        )
        time.sleep(3)  # the MCP server's watch cache catches up
        os.kill(operator.pid, signal.SIGSTOP)
        url = f"http://127.0.0.1:{port}/mcp"
        rows = [
            measure(
                plane,
                "a. GPUInventory (one GET, GPUNodes beyond the rows)",
                lambda: from_inventory(api),
            ),
            measure(plane, "b. MCP get_gpu_inventory (SDK client, HTTP)", lambda: from_mcp(url)),
            measure(plane, "c. kubectl describe nodes", lambda: from_describe(plane)),
            measure(
                plane,
                "d. kubectl-view-allocations -r nvidia.com/gpu",
                lambda: from_view_allocations(plane),
            ),
            measure(
                plane,
                "e. gateway method (Node GET + pod LIST per node)",
                lambda: from_gateway(api, made.nodes),
            ),
        ]
        os.kill(operator.pid, signal.SIGCONT)
        reference = rows[2].answer or {}
        print()
        print(f"== GPUs allocated and free per node: {args.nodes} nodes, {args.pods} pods ==")
        print(
            f"{'method':56} {'time':>9} {'vs a':>7} {'API requests':>13}"
            f" {'agrees with describe':>22}"
        )
        base = rows[0].seconds
        for row in rows:
            if row.answer is None:
                print(f"{row.method:56} not installed (cargo install kubectl-view-allocations)")
                continue
            if not row.answer:
                print(f"{row.method:56} {row.seconds:8.2f}s printed no node on these objects")
                continue
            agree = sum(1 for n, v in reference.items() if row.answer.get(n) == v)
            print(
                f"{row.method:56} {row.seconds:8.2f}s {row.seconds / base:6.0f}x "
                f"{row.requests:13.0f} {agree:>10}/{len(reference)} nodes"
            )
        return 0
    finally:
        for process in processes:
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
        plane.stop()
        if args.workdir is None:
            shutil.rmtree(workdir / "etcd", ignore_errors=True)


def _views_written(api: client.ApiClient, nodes: int) -> bool:
    items = client.CustomObjectsApi(api).list_cluster_custom_object(G, V, constants.NODE_PLURAL)[
        "items"
    ]
    return len(items) == nodes and all((i.get("status") or {}).get("kubernetes") for i in items)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONSAFEPATH", "1")
    sys.exit(main())
