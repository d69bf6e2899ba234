"""`make demo`: the whole system on a local control plane, for a person to watch.

Starts etcd, kube-apiserver and kube-controller-manager, applies the manifests, runs the
operator, four simulated GPU nodes' agents (three with a device plugin's GPUs, one with GPUs
that NVIDIA's DRA driver publishes as a ResourceSlice) and the MCP server (HTTP, with
Kubernetes token auth), creates some GPU pods and claims, prints the inventory and an MCP
answer, then keeps everything running until Ctrl-C. `--once` stops after printing (CI runs it
that way).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from kubernetes import client
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gpu_inventory.api import constants
from gpu_inventory.testing.controlplane import ControlPlane, free_port
from gpu_inventory.testing.kubectl import kubectl_path, run_kubectl
from gpu_inventory.testing.mcpcalls import answer
from gpu_inventory.testing.system import GPUInventorySystem, create_workload
from gpu_inventory.testing.wait import eventually

WANT_ALLOCATED = 9


def say(text: str = "") -> None:
    print(text, flush=True)


def kubectl(plane: ControlPlane, *args: str) -> str:
    result = run_kubectl(plane.kubeconfig, *args)
    result.check_returncode()
    return result.stdout


def wait_for_inventory(system: GPUInventorySystem) -> None:
    with system.plane.api_client() as custom_api:
        custom = client.CustomObjectsApi(custom_api)
        eventually(lambda: _ready(system, custom), timeout=90, interval=0.5, what="the inventory")


def _ready(system: GPUInventorySystem, custom: client.CustomObjectsApi) -> None:
    """Raises AssertionError until the inventory is Ready with the demo's numbers."""
    system.check_alive()
    try:
        inventory = custom.get_cluster_custom_object(
            constants.GROUP, constants.VERSION, constants.INVENTORY_PLURAL, "cluster"
        )
    except client.ApiException as error:
        raise AssertionError(f"GPUInventory/cluster: {error.reason}") from error
    status = inventory.get("status", {})
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    summary = status.get("summary", {})
    assert conditions.get("Ready") == "True", conditions
    assert summary.get("allocated") == WANT_ALLOCATED, summary
    assert summary.get("staleAgents") == 0, summary


async def ask_mcp(url: str, token: str) -> dict[str, Any]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http)) as session:
        return await answer(session, "get_gpu_inventory", {"node": "gpu-t4-a"})


def wait_for_mcp(url: str, token: str) -> dict[str, Any]:
    def answered() -> dict[str, Any]:
        try:
            return anyio.run(ask_mcp, url, token)
        except Exception as error:  # the server may still be starting
            raise AssertionError(str(error)) from error

    answer: dict[str, Any] = eventually(answered, timeout=60, interval=1.0, what="the MCP server")
    return answer


def run(workdir: Path, once: bool) -> int:
    started = time.monotonic()
    if workdir.exists():
        shutil.rmtree(workdir)
    say(f"Starting a local control plane in {workdir} (first run builds it: ~8 min) ...")
    plane = ControlPlane(workdir).start()
    system = GPUInventorySystem(plane)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        say("Applying manifests/ and four simulated GPU nodes (one of them DRA) ...")
        system.install()
        system.start()
        port = free_port()
        system.start_mcp_http(port)
        token = system.reader_token()
        token_file = workdir / "reader.token"
        token_file.write_text(token)
        api = plane.api_client()
        create_workload(api)
        api.close()
        say("Waiting for the operator to account for 8 GPU pods (3 of them with DRA claims) ...")
        wait_for_inventory(system)
        say(f"Inventory complete {time.monotonic() - started:.0f}s after start.\n")
        say(f"$ kubectl get gpuinventory\n{kubectl(plane, 'get', 'gpuinventory')}")
        say(f"$ kubectl get gpunodes\n{kubectl(plane, 'get', 'gpunodes')}")
        url = f"http://127.0.0.1:{port}/mcp"
        answer = wait_for_mcp(url, token)
        say(f"MCP get_gpu_inventory(node='gpu-t4-a') at {url}:")
        say(json.dumps(answer, indent=2))
        venv_bin = Path(sys.executable).parent
        say(
            f"""
Everything is running.
  export KUBECONFIG={plane.kubeconfig}
  {kubectl_path()} get gpuinventory cluster -o yaml
  {kubectl_path()} get gpunodes
MCP over HTTP: {url}  (Authorization: Bearer $(cat {token_file}))
MCP over stdio, for a local assistant:
  KUBECONFIG={plane.kubeconfig} {venv_bin / "gpu-inventory-mcp"}
Logs: {system.logs}
Ctrl-C stops everything."""
        )
        if not once:
            while not stop.wait(1.0):
                system.check_alive()
        return 0
    finally:
        say("Stopping ...")
        system.stop()
        plane.stop()
        say("Stopped.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".demo"), help="working directory")
    parser.add_argument("--once", action="store_true", help="stop after printing the answers")
    args = parser.parse_args(argv)
    return run(args.dir.resolve(), args.once)


if __name__ == "__main__":
    sys.exit(main())
