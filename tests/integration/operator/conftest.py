"""The operator as users run it: `gpu-inventory-operator` in a subprocess against the control plane.

A subprocess (not KopfRunner in a thread) because kopf's registry, settings and signal
handling are process-wide, and a real process also proves the console script, the kubeconfig
loading and the metrics port. Every process is stopped by its own pid; its log is printed
when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.api import constants
from gpu_inventory.testing.controlplane import ControlPlane, free_port
from gpu_inventory.testing.metrics import Samples, scrape
from gpu_inventory.testing.nodes import create_node
from gpu_inventory.testing.wait import eventually

G, V = constants.GROUP, constants.VERSION
OPERATOR = str(Path(sys.executable).with_name("gpu-inventory-operator"))

FAST = {
    "GPU_INVENTORY_WRITE_WINDOW": "0.2",
    "GPU_INVENTORY_RESYNC_INTERVAL": "2",
}
"""Short timings so tests converge in a second or two; the logic is the same."""


class OperatorProcess:
    """One running operator: its metrics, its log, and how to stop it."""

    def __init__(
        self,
        plane: ControlPlane,
        log: Path,
        *,
        kubeconfig: Path | None = None,
        args: tuple[str, ...] = ("--standalone",),
        env: dict[str, str] | None = None,
    ) -> None:
        self.metrics_port = free_port()
        self.log_path = log
        environ = plane.env(**FAST, GPU_INVENTORY_METRICS_PORT=str(self.metrics_port))
        if kubeconfig is not None:
            environ["KUBECONFIG"] = str(kubeconfig)
        environ.update(env or {})
        environ.pop("POD_NAMESPACE", None)
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [OPERATOR, "--liveness", f"http://127.0.0.1:{free_port()}/healthz", *args],
            env=environ,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def metrics(self) -> Samples:
        """Every sample of /metrics; AssertionError while it is not served yet."""
        try:
            return scrape(self.metrics_port, timeout=5)
        except OSError as error:  # not listening yet: keep polling
            raise AssertionError(f"metrics not served yet: {error}") from error

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


@pytest.fixture
def start_operator(
    cluster: ControlPlane, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators on demand (`start_operator(args=..., kubeconfig=...)`); all are stopped
    at the end, and their logs shown if the test failed."""
    started: list[OperatorProcess] = []

    def start(**kwargs: Any) -> OperatorProcess:
        process = OperatorProcess(cluster, tmp_path / f"operator-{len(started)}.log", **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for process in started:
            sys.stderr.write(f"\n----- {process.log_path.name} -----\n{process.log()[-20000:]}")


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    """One standalone operator."""
    return start_operator()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


# --- reading and writing the cluster ------------------------------------------------------------


class Kube:
    """Small helpers over an admin client; tests get one as the `kube` fixture (test modules
    cannot import each other under --import-mode=importlib)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def inventory(self) -> dict[str, Any]:
        return dict(
            self.custom.get_cluster_custom_object(
                G, V, constants.INVENTORY_PLURAL, constants.INVENTORY_NAME
            )
        )

    def status(self) -> dict[str, Any]:
        """The CR's status; AssertionError (keep polling) while it is missing or has no Ready."""
        try:
            body = self.inventory()
        except client.ApiException as error:
            raise AssertionError(f"GPUInventory not readable yet: {error.status}") from error
        status = body.get("status") or {}
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
        assert ready is not None, "no Ready condition yet"
        return dict(status)

    @staticmethod
    def condition(status: dict[str, Any], type_: str) -> tuple[str, str]:
        found = next(c for c in status["conditions"] if c["type"] == type_)
        return found["status"], found["reason"]

    def wait_for(
        self,
        check: Callable[[dict[str, Any]], None],
        *,
        timeout: float = 20,
        what: str = "the inventory status",
    ) -> dict[str, Any]:
        """Poll the CR until `check(status)` stops raising AssertionError; return the status."""

        def probe() -> dict[str, Any]:
            status = self.status()
            try:
                check(status)
            except (KeyError, IndexError, StopIteration) as error:  # a field not written yet
                raise AssertionError(f"{type(error).__name__}: {error}") from error
            return status

        return eventually(probe, timeout=timeout, interval=0.2, what=what)

    def create_node(self, body: dict[str, Any]) -> None:
        create_node(self.core, body)

    def create_pod(self, body: dict[str, Any]) -> None:
        self.core.create_namespaced_pod(body["metadata"]["namespace"], body)

    def set_phase(self, namespace: str, name: str, phase: str) -> None:
        self.core.patch_namespaced_pod_status(name, namespace, {"status": {"phase": phase}})

    def gpunode(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_cluster_custom_object(G, V, constants.NODE_PLURAL, name))

    def view(self, name: str, *, allocated: int | None = None) -> dict[str, Any]:
        """GPUNode `name`'s `status.kubernetes`; AssertionError until the operator wrote it
        (with `allocated`, until it shows that many)."""
        try:
            view = (self.gpunode(name).get("status") or {}).get("kubernetes")
        except client.ApiException as error:
            raise AssertionError(f"no GPUNode {name} yet") from error
        assert view is not None, f"GPUNode {name}: status.kubernetes not written yet"
        if allocated is not None:
            assert view["allocated"] == allocated, view
        return dict(view)

    def gpunode_names(self) -> set[str]:
        items = self.custom.list_cluster_custom_object(G, V, constants.NODE_PLURAL)["items"]
        return {item["metadata"]["name"] for item in items}

    @staticmethod
    def quietly(fn: Callable[[], object]) -> None:
        with contextlib.suppress(client.ApiException):
            fn()


@pytest.fixture
def kube(k8s: client.ApiClient) -> Kube:
    return Kube(k8s)
