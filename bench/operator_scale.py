"""Benchmark the operator at scale on the local control plane; prints figures (not a test).

    PYTHONSAFEPATH=1 .venv/bin/python bench/operator_scale.py                # 1,000 / 20,000
    PYTHONSAFEPATH=1 .venv/bin/python bench/operator_scale.py --nodes 5000 --pods 150000 \
        --churn-rate 100                                     # Kubernetes' own envelope
    PYTHONSAFEPATH=1 .venv/bin/python bench/operator_scale.py --nodes 10000 --pods 20000
    PYTHONSAFEPATH=1 .venv/bin/python bench/operator_scale.py --claims 20000   # DRA too

Steps: start etcd + kube-apiserver + kube-controller-manager (gpu_inventory.testing), create N
GPU nodes and M bound pods with many threads (a fraction asks for one GPU, the rest for CPU
only, as in a real cluster), start `gpu-inventory-operator` as a subprocess, then measure:

- time from the operator's start to the first *complete* status (Ready, every node, the exact
  allocated total), seen by watching the CR;
- p50/p99 from a pod change to the status that reflects it, under churn (create/delete GPU
  pods at --churn-rate events/s); each change targets a node whose previous change is long
  reflected, so "reflects it" is unambiguous: that node's row shows the new allocated value;
- status writes per second under churn (from the operator's /metrics);
- the operator's peak RSS (VmHWM in /proc), the CR's size in bytes, and how many status writes
  the API server refused for their size over the whole run (from /metrics).

With `--claims N`, DRA as well: `--dra-nodes` more nodes whose GPUs NVIDIA's DRA driver
publishes (one ResourceSlice each, NVIDIA's DeviceClasses), and N ResourceClaims, as many of
them allocated one GPU each (as the scheduler writes `status.allocation`) as the DRA GPUs
allow, the rest pending; the first complete status must count them, and after the pod churn a
claim churn (allocate / deallocate at --churn-rate) is measured the same way.

Targets (issue 15; 2 cores, up to 5,000 nodes / 150,000 pods): first complete status <= 30 s,
p99 <= 1 s under 100 pod events/s, <= 2 inventory status writes/s, RSS <= 400 MiB; CR <= 256
KiB at 10,000 nodes, no write ever refused for size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from gpu_inventory.api import constants
from gpu_inventory.testing import dra
from gpu_inventory.testing.builders import make_node, make_pod
from gpu_inventory.testing.controlplane import ControlPlane, free_port
from gpu_inventory.testing.metrics import Samples, scrape
from gpu_inventory.testing.nodes import create_node
from gpu_inventory.testing.population import api_client, parallel, populate

G, V = constants.GROUP, constants.VERSION
OPERATOR = str(Path(sys.executable).with_name("gpu-inventory-operator"))


Change = tuple[float, str, int]
"""A change sent: (monotonic time sent, node, the allocated value its row must show)."""


class Inventory:
    """Watches GPUInventory/cluster; keeps each observation's time and node rows."""

    def __init__(self, plane: ControlPlane) -> None:
        self.custom = client.CustomObjectsApi(plane.api_client())
        self.lock = threading.Condition()
        self.status: dict[str, Any] = {}
        self.rows: dict[str, int] = {}
        self.seen_at = 0.0
        self.updates = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    G,
                    V,
                    constants.INVENTORY_PLURAL,
                    timeout_seconds=60,
                )
                for event in stream:
                    status = event["object"].get("status") or {}
                    now = time.monotonic()
                    rows = {r["name"]: r["allocated"] for r in status.get("nodes", [])}
                    with self.lock:
                        self.status, self.rows, self.seen_at = status, rows, now
                        self.updates += 1
                        self.lock.notify_all()
                    if self._stop:
                        return
            except Exception:
                time.sleep(0.2)

    def wait(self, predicate: Any, timeout: float) -> float | None:
        """Block until predicate(status) holds; return the monotonic time it was first seen."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate(self.status):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.lock.wait(left)
            return self.seen_at

    def resolve(self, pending: list[Change], latencies: list[float]) -> list[Change]:
        """The changes not yet reflected; the latency of each that now is goes to `latencies`."""
        with self.lock:
            rows, seen_at = self.rows, self.seen_at
        return _resolve(pending, rows, seen_at, latencies)

    def settle(
        self, pending: list[Change], latencies: list[float], timeout: float = 30
    ) -> list[Change]:
        """After a churn: wait up to `timeout` for the changes still pending; those left."""
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            with self.lock:
                self.lock.wait(0.5)
            pending = self.resolve(pending, latencies)
        return pending

    def stop(self) -> None:
        self._stop = True


def command_of_operator() -> list[str]:
    return [OPERATOR, "--standalone", "--liveness", ""]


def profile(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy attached to `pid` (100 samples/s, collapsed stacks) until SIGINT."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "--format", "raw", "--rate", "100", "--nonblocking"]
    return subprocess.Popen([*command, "--pid", str(pid), "-o", str(output)])


def ready(status: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def writes(sample: Samples, kind: str, result: str = "ok") -> float:
    key = ("gpu_inventory_operator_status_writes_total", (("kind", kind), ("result", result)))
    return sample.get(key, 0.0)


def operator_quantile(before: Samples, after: Samples, q: float) -> float:
    """The upper bound of the operator's own latency bucket holding quantile `q` over the churn
    (its histogram from a pod event it received to the end of the write that reflects it)."""
    name = "gpu_inventory_operator_pod_event_to_status_seconds_bucket"
    counts = sorted(
        (float(dict(labels)["le"]), after[(n, labels)] - before.get((n, labels), 0.0))
        for n, labels in after
        if n == name
    )
    total = counts[-1][1] if counts else 0.0
    for bound, cumulative in counts:
        if total and cumulative >= q * total:
            return bound
    return float("nan")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=20000)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--gpu-pod-fraction", type=float, default=0.3)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--churn-rate", type=float, default=50.0, help="pod events per second")
    parser.add_argument("--churn-seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=48)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record the operator with py-spy (pip install py-spy) into this file (collapsed "
        "stacks, as `py-spy record --format raw` writes them)",
    )
    parser.add_argument("--claims", type=int, default=0, help="DRA ResourceClaims (0: no DRA)")
    parser.add_argument(
        "--dra-nodes", type=int, default=0, help="DRA GPU nodes (default: nodes / 5 with claims)"
    )
    args = parser.parse_args()
    if args.claims and not args.dra_nodes:
        args.dra_nodes = max(1, args.nodes // 5)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-inventory-bench-"))
    plane = ControlPlane(workdir)
    print(f"control plane in {workdir} ...", flush=True)
    plane.start()
    operator: subprocess.Popen[bytes] | None = None
    profiler: subprocess.Popen[bytes] | None = None
    inventory: Inventory | None = None
    try:
        plane.install_crds()
        print(f"  up in {plane.startup_seconds:.1f}s at {plane.server}")
        made = populate(
            plane,
            nodes=args.nodes,
            pods=args.pods,
            gpus_per_node=args.gpus_per_node,
            gpu_pod_fraction=args.gpu_pod_fraction,
            namespaces=args.namespaces,
            threads=args.threads,
        )
        nodes, namespaces, capacity = made.nodes, made.namespaces, made.free
        expected_total = made.expected_total
        api = api_client(plane, args.threads)
        rng = random.Random(7)

        dra_load: DraLoad | None = None
        if args.claims:
            dra_load = DraLoad(plane, args, namespaces)
            expected_total += dra_load.create()

        inventory = Inventory(plane)
        metrics_port = free_port()
        env = plane.env(GPU_INVENTORY_METRICS_PORT=str(metrics_port))
        started = time.monotonic()
        operator = subprocess.Popen(
            command_of_operator(),
            env=env,
            stdout=(workdir / "operator.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        if args.profile is not None:
            profiler = profile(operator.pid, args.profile)

        def complete(status: dict[str, Any]) -> bool:
            summary = status.get("summary") or {}
            return (
                ready(status)
                and summary.get("nodes") == args.nodes + args.dra_nodes
                and summary.get("allocated") == expected_total
            )

        seen = inventory.wait(complete, timeout=600)
        if seen is None:
            print("FAILED: no complete status within 600 s; see", workdir / "operator.log")
            return 1
        first_complete = seen - started
        print(f"first complete status: {first_complete:.1f}s after the operator started")
        time.sleep(3)  # let GPUNode creation settle before measuring churn

        # --- churn --------------------------------------------------------------------------
        allocated = dict.fromkeys(nodes, 0)
        with inventory.lock:
            allocated.update(inventory.rows)
        pending: list[Change] = []  # (sent, node, expected allocated)
        latencies: list[float] = []
        churn_pods: list[tuple[str, str, str]] = []
        # Churn only where the CR has a row (beyond spec.maxNodeRows it lists only the nodes
        # that need attention), so "that node's row shows the new value" stays measurable.
        with inventory.lock:
            listed = set(inventory.rows)
        order = [n for n in nodes if capacity[n] > 0 and n in listed]
        rng.shuffle(order)
        cursor = 0
        before = scrape(metrics_port)
        churn_began = time.monotonic()
        interval = 1.0 / args.churn_rate
        lag = int(args.churn_rate * 5)  # delete pods created >= 5 s ago: no same-node collisions
        events = 0
        churn_api = client.CoreV1Api(api_client(plane, 4))
        while time.monotonic() - churn_began < args.churn_seconds:
            target = churn_began + events * interval
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if events % 2 == 0 or len(churn_pods) < lag:
                node = order[cursor % len(order)]
                cursor += 1
                name = f"churn-{events:06d}"
                namespace = namespaces[events % len(namespaces)]
                churn_api.create_namespaced_pod(
                    namespace, make_pod(name, namespace=namespace, node=node, gpus=1)
                )
                churn_pods.append((namespace, name, node))
                allocated[node] += 1
            else:
                namespace, name, node = churn_pods.pop(0)
                churn_api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
                allocated[node] -= 1
            pending.append((time.monotonic(), node, allocated[node]))
            events += 1
            pending = inventory.resolve(pending, latencies)
        churn_took = time.monotonic() - churn_began
        pending = inventory.settle(pending, latencies)
        after = scrape(metrics_port)
        claim_churn = dra_load.churn(inventory, args) if dra_load is not None else None

        def rate(kind: str, result: str = "ok") -> float:
            return (writes(after, kind, result) - writes(before, kind, result)) / churn_took

        inventory_writes = rate("GPUInventory")
        node_writes = rate("GPUNode")
        creates = rate("GPUNode", "created")

        body = client.CustomObjectsApi(api).get_cluster_custom_object(
            G, V, constants.INVENTORY_PLURAL, constants.INVENTORY_NAME
        )
        cr_bytes = len(json.dumps(body, separators=(",", ":")))
        rss = peak_rss_mib(operator.pid)

        print()
        print(f"== gpu-inventory operator at {args.nodes} nodes / {args.pods} pods ==")
        if dra_load is not None:
            print(
                f"   + DRA: {args.dra_nodes} nodes, {args.claims} claims "
                f"({dra_load.allocated} allocated)"
            )
        print(f"first complete status      {first_complete:8.1f} s     (target <= 30 s)")
        print(
            f"churn                      {events / churn_took:8.1f} events/s for "
            f"{churn_took:.0f} s, {len(latencies)} measured, {len(pending)} unresolved"
        )
        if latencies:
            print(
                f"pod change -> status  p50  {percentile(latencies, 0.5):8.2f} s"
                f"\n                      p99  {percentile(latencies, 0.99):8.2f} s     "
                f"(target <= 1 s)\n                      max  {max(latencies):8.2f} s"
                f"     mean {statistics.mean(latencies):.2f} s"
            )
        print(
            f"  of which in the operator p50 <= {operator_quantile(before, after, 0.5):.2f} s, "
            f"p99 <= {operator_quantile(before, after, 0.99):.2f} s (event received -> written)"
        )
        if claim_churn is not None:
            print(claim_churn)
        print(f"inventory status writes    {inventory_writes:8.2f} /s    (target <= 2 /s)")
        print(
            f"GPUNode status writes      {node_writes:8.2f} /s    (one per node whose count moved)"
        )
        print(f"GPUNode creations          {creates:8.2f} /s    (for nodes no agent created)")
        too_large = writes(after, "GPUInventory", "too_large")
        print(f"operator peak RSS          {rss:8.0f} MiB   (target <= 400 MiB)")
        print(f"GPUInventory size          {cr_bytes / 1024:8.0f} KiB   (target <= 256 KiB)")
        print(f"writes refused for size    {too_large:8.0f}       (target 0, whole run)")
        print(f"operator log: {workdir / 'operator.log'}")
        return 0
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file and detaches
            profiler.wait(timeout=60)
        if inventory is not None:
            inventory.stop()
        if operator is not None and operator.poll() is None:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                operator.kill()
        plane.stop()
        if args.workdir is None:
            shutil.rmtree(workdir / "etcd", ignore_errors=True)


QUIET = 3.0
"""Seconds between two claim changes on one node during the claim churn."""


class DraLoad:
    """DRA nodes, their ResourceSlices and NVIDIA's DeviceClasses, and ResourceClaims."""

    def __init__(self, plane: ControlPlane, args: argparse.Namespace, namespaces: list[str]):
        self.plane = plane
        self.args = args
        self.namespaces = namespaces
        self.api = api_client(plane, args.threads)
        self.resource = client.ResourceV1Api(self.api)
        self.nodes = [f"dra-{i:05d}" for i in range(args.dra_nodes)]
        self.free = [(n, f"gpu-{g}") for g in range(args.gpus_per_node) for n in self.nodes]
        self.allocated = 0
        self.claims: list[tuple[str, str]] = []
        """(namespace, name) of the claims that hold a GPU, oldest first."""
        self.held: dict[tuple[str, str], tuple[str, str]] = {}
        """Claim -> the (node, device) it holds."""

    def create(self) -> int:
        """Create everything; how many GPUs the claims hold."""
        core = client.CoreV1Api(self.api)
        for body in dra.gpu_classes():
            self.resource.create_device_class(body)

        def add_node(name: str) -> None:
            create_node(core, make_node(name))
            devices = [dra.gpu_device(name, g) for g in range(self.args.gpus_per_node)]
            self.resource.create_resource_slice(dra.make_slice(name, devices))

        took = parallel(self.args.threads, self.nodes, add_node)
        print(f"created {len(self.nodes)} DRA nodes and their slices in {took:.1f}s")
        plan = [
            (self.namespaces[i % len(self.namespaces)], f"claim-{i:06d}")
            for i in range(self.args.claims)
        ]
        held = dict(zip(plan, self.free, strict=False))
        self.free = self.free[len(held) :]

        def create_claim(item: tuple[str, str]) -> None:
            namespace, name = item
            self.resource.create_namespaced_resource_claim(
                namespace, dra.make_claim(name, namespace)
            )
            device = held.get(item)
            if device is not None:
                status = {"allocation": dra.allocation(device[0], [device[1]])}
                self.resource.patch_namespaced_resource_claim_status(
                    name, namespace, {"status": status}
                )

        took = parallel(self.args.threads, plan, create_claim)
        self.allocated = len(held)
        self.claims = list(held)
        self.held = dict(held)
        print(
            f"created {len(plan)} claims in {took:.1f}s ({len(plan) / took:.0f}/s), "
            f"{self.allocated} of them allocated"
        )
        return self.allocated

    def churn(self, inventory: Inventory, args: argparse.Namespace) -> str:
        """Allocate free DRA GPUs to pending claims, or free held ones, at `--churn-rate`; the
        latency from each status write to the inventory row that reflects it."""
        pending_claims = [
            (self.namespaces[i % len(self.namespaces)], f"claim-{i:06d}")
            for i in range(self.allocated, args.claims)
        ]
        allocated = dict.fromkeys(self.nodes, 0)
        with inventory.lock:
            allocated.update({n: v for n, v in inventory.rows.items() if n in allocated})
        waiting: list[Change] = []
        latencies: list[float] = []
        api = client.ResourceV1Api(api_client(self.plane, 4))
        touched: dict[str, float] = {}
        interval = 1.0 / args.churn_rate
        began = time.monotonic()
        events = 0
        while time.monotonic() - began < args.churn_seconds:
            delay = began + events * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            # Each change targets a node no change touched for QUIET seconds, so "the row shows
            # the new value" is unambiguous (as for the pods).
            now = time.monotonic()
            free = next(
                (i for i, (n, _) in enumerate(self.free) if now - touched.get(n, -1e9) > QUIET),
                None,
            )
            held = next(
                (
                    i
                    for i, c in enumerate(self.claims)
                    if now - touched.get(self.held[c][0], -1e9) > QUIET
                ),
                None,
            )
            status: dict[str, Any]
            if (events % 2 == 0 or held is None) and pending_claims and free is not None:
                claim = pending_claims.pop()
                node, device = self.free.pop(free)
                status = {"allocation": dra.allocation(node, [device])}
                self.held[claim] = (node, device)
                self.claims.append(claim)
                allocated[node] += 1
            elif held is not None:
                claim = self.claims.pop(held)
                node, device = self.held.pop(claim)
                status = {"allocation": None}
                self.free.append((node, device))
                pending_claims.append(claim)
                allocated[node] -= 1
            else:
                time.sleep(interval)
                continue
            touched[node] = now
            api.patch_namespaced_resource_claim_status(claim[1], claim[0], {"status": status})
            waiting.append((time.monotonic(), node, allocated[node]))
            events += 1
            waiting = inventory.resolve(waiting, latencies)
        took = time.monotonic() - began
        waiting = inventory.settle(waiting, latencies)
        line = (
            f"claim churn                {events / took:8.1f} events/s for {took:.0f} s, "
            f"{len(latencies)} measured, {len(waiting)} unresolved"
        )
        if latencies:
            line += (
                f"\nclaim change -> status p50 {percentile(latencies, 0.5):8.2f} s"
                f"\n                      p99  {percentile(latencies, 0.99):8.2f} s     "
                "(target <= 1 s)"
            )
        return line


def _resolve(
    pending: list[Change],
    rows: dict[str, int],
    seen_at: float,
    latencies: list[float],
) -> list[Change]:
    """Events whose node row now shows the expected value are reflected since `seen_at`."""
    left = []
    for sent, node, expected in pending:
        if rows.get(node) == expected and seen_at >= sent:
            latencies.append(seen_at - sent)
        else:
            left.append((sent, node, expected))
    return left


if __name__ == "__main__":
    os.environ.setdefault("PYTHONSAFEPATH", "1")
    sys.exit(main())
