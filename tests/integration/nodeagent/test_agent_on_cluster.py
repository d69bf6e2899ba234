"""Agents against a real kube-apiserver: their GPUNodes stay current, writes are paced, a
refusal by the CRD is survived, the operator's `status.kubernetes` is never touched, XIDs
survive a restart (not a reboot), a driver upgrade announced on the Node releases NVML and
ends the process for a new container, and the watch on the Node sees a label change at once.

Agents are the real ones over a simulated NVML (`testing/simnvml.py`): in-process on a clock
the test moves, or as processes (`python -m gpu_inventory.testing.simagent`), one of them as
the agent's own ServiceAccount with the manifests' RBAC and admission policy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.api import constants
from gpu_inventory.api.objects import gpunode_object
from gpu_inventory.nodeagent.agent import Agent
from gpu_inventory.nodeagent.config import AgentConfig
from gpu_inventory.nodeagent.nodeview import NodeReader
from gpu_inventory.nodeagent.nvml import NVMLBackend
from gpu_inventory.nodeagent.reporter import ReportPolicy
from gpu_inventory.nodeagent.writer import GPUNodeWriter
from gpu_inventory.testing.builders import make_node
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.install import agent_pod, install
from gpu_inventory.testing.nodes import create_node, reboot
from gpu_inventory.testing.scenario import load_scenario, simulate
from gpu_inventory.testing.simnvml import SimulatedNVML
from gpu_inventory.testing.wait import eventually, holds

pytestmark = pytest.mark.cluster

G, V, PLURAL = constants.GROUP, constants.VERSION, constants.NODE_PLURAL


class ScenarioClock:
    """Seconds since the agent started, as far as its scenario is concerned."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


@dataclasses.dataclass
class RunningAgent:
    agent: Agent
    writer: GPUNodeWriter
    thread: threading.Thread
    nvml: SimulatedNVML
    node: NodeReader


@contextlib.contextmanager
def running_agent(
    plane: ControlPlane,
    node: str,
    scenario: str,
    *,
    clock: ScenarioClock | None = None,
    floor: float = 0.5,
    heartbeat: float = 2.0,
    retry_initial: float = 0.2,
    retry_max: float = 1.0,
    read_interval: float = 0.2,
) -> Iterator[RunningAgent]:
    """One agent in this process, over `scenario`'s simulated NVML installed into pynvml."""
    _, parsed = load_scenario(scenario)
    timeline = simulate(parsed, seed=node, elapsed=clock)
    api = plane.api_client()
    writer = GPUNodeWriter(api, node, request_timeout=5)
    config = AgentConfig(
        node_name=node,
        pod_name=f"gpu-inventory-agent-{node}",
        read_interval_seconds=read_interval,
        event_wait_seconds=0.05,
        report=ReportPolicy(
            write_floor_seconds=floor,
            heartbeat_seconds=heartbeat,
            retry_initial_seconds=retry_initial,
            retry_max_seconds=retry_max,
        ),
    )
    with timeline.sim.installed():
        reader = NodeReader(api, node, poll_seconds=config.node_poll_seconds, request_timeout=5)
        agent = Agent(config, NVMLBackend(), writer, node=reader, version="test")
        reader.start(on_change=agent.wake)
        stop = threading.Event()
        thread = threading.Thread(target=agent.run, args=(stop,), name=f"agent-{node}", daemon=True)
        thread.start()
        try:
            yield RunningAgent(agent, writer, thread, timeline.sim, reader)
        finally:
            stop.set()
            agent.wake()
            thread.join(15)
            reader.stop()
            api.close()
    assert not thread.is_alive(), "the agent did not stop"


def add_node(k8s: client.ApiClient, name: str, gpus: int = 1) -> str:
    return create_node(client.CoreV1Api(k8s), make_node(name, gpus=gpus))


def gpunode(k8s: client.ApiClient, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(k8s).get_cluster_custom_object(
        G, V, PLURAL, name
    )
    return found


def exists(k8s: client.ApiClient, name: str) -> bool:
    try:
        gpunode(k8s, name)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def status_of(k8s: client.ApiClient, name: str) -> dict[str, Any]:
    """The GPUNode's status; an AssertionError while it has none (so `eventually` waits)."""
    try:
        body = gpunode(k8s, name)
    except client.ApiException as error:
        raise AssertionError(f"GPUNode/{name}: HTTP {error.status}") from error
    assert body.get("status", {}).get("agent"), f"GPUNode/{name} has no agent status yet"
    status: dict[str, Any] = body["status"]
    return status


def start_simagent(
    plane: ControlPlane,
    node: str,
    scenario: str | Path,
    log_path: Path,
    *,
    kubeconfig: Path | None = None,
    pod: str = "",
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """`python -m gpu_inventory.testing.simagent` for `node`, its output into `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gpu_inventory.testing.simagent",
                f"--scenario={scenario}",
                "--health-port=0",
                "--health-host=127.0.0.1",
                *extra,
            ],
            env={
                **plane.env(),
                "KUBECONFIG": str(kubeconfig or plane.kubeconfig),
                "NODE_NAME": node,
                "POD_NAME": pod or f"gpu-inventory-agent-{node}",
                "PYTHONSAFEPATH": "1",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def simagent(
    plane: ControlPlane,
    node: str,
    scenario: str,
    log_path: Path,
    *,
    kubeconfig: Path | None = None,
    pod: str = "",
    extra: tuple[str, ...] = ("--write-floor=0.5", "--heartbeat=2", "--node-poll=1"),
) -> Iterator[subprocess.Popen[bytes]]:
    """The agent as a process over a simulated NVML; stopped with SIGTERM, which must exit 0."""
    process = start_simagent(
        plane, node, scenario, log_path, kubeconfig=kubeconfig, pod=pod, extra=extra
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        output = log_path.read_text()
        assert code == 0, output
        assert "Traceback" not in output, output


def test_three_agents_keep_their_gpunodes_current(
    cluster: ControlPlane, k8s: client.ApiClient, tmp_path: Path
) -> None:
    nodes = {"gpu-t4-a": "t4-single", "gpu-h100-a": "h100-8x-mig", "gpu-h100-b": "h100-8x-events"}
    uids = {name: add_node(k8s, name) for name in nodes}
    with contextlib.ExitStack() as stack:
        for name, scenario in nodes.items():
            stack.enter_context(simagent(cluster, name, scenario, tmp_path / f"{name}.log"))

        def all_reported() -> dict[str, dict[str, Any]]:
            found = {name: status_of(k8s, name) for name in nodes}
            assert [found[n]["summary"]["gpus"] for n in nodes] == [1, 8, 8]
            return found

        first = eventually(all_reported, timeout=30, what="three GPUNodes")
        assert first["gpu-t4-a"]["summary"]["product"] == "Tesla-T4"
        assert first["gpu-h100-a"]["summary"]["product"] == "NVIDIA-H100-80GB-HBM3"
        mig = [g for g in first["gpu-h100-a"]["gpus"] if g["mig"]["enabled"]]
        assert sum(len(g["mig"]["instances"]) for g in mig) == 14
        for name in nodes:
            assert first[name]["agent"]["podName"] == f"gpu-inventory-agent-{name}"
            assert first[name]["agent"]["nvmlAvailable"] is True
            owner = gpunode(k8s, name)["metadata"]["ownerReferences"][0]
            assert (owner["kind"], owner["name"], owner["uid"]) == ("Node", name, uids[name])

        # The events scenario plays in real time: corrected ECC errors rise on GPU 2 at 5 s.
        def current() -> None:
            now = {name: status_of(k8s, name) for name in nodes}
            for name in nodes:  # every agent keeps heart-beating
                assert now[name]["agent"]["heartbeatTime"] > first[name]["agent"]["heartbeatTime"]
            assert now["gpu-h100-b"]["gpus"][2]["ecc"]["volatileCorrected"] >= 12

        eventually(current, timeout=30, what="fresh readings")


def test_a_scripted_xid_turns_a_gpu_unhealthy_without_waiting_for_the_heartbeat(
    cluster: ControlPlane, k8s: client.ApiClient
) -> None:
    floor = 1.0
    add_node(k8s, "gpu-xid")
    clock = ScenarioClock()
    with running_agent(
        cluster, "gpu-xid", "h100-8x-events", clock=clock, floor=floor, heartbeat=30
    ):
        before = eventually(lambda: status_of(k8s, "gpu-xid"), timeout=20, what="first write")
        assert before["gpus"][3]["health"]["status"] == "Healthy"

        clock.seconds = 10  # XID 79 on GPU 3
        xid_at = time.monotonic()

        def unhealthy() -> dict[str, Any]:
            gpu3: dict[str, Any] = status_of(k8s, "gpu-xid")["gpus"][3]
            assert gpu3["health"]["status"] == "Unhealthy"
            return gpu3

        gpu3 = eventually(unhealthy, timeout=20, interval=0.05, what="GPU 3 Unhealthy")
        took = time.monotonic() - xid_at
        # Written for the change, not by the 30 s heartbeat (with room for a busy machine).
        assert took < 10, f"took {took:.2f}s with a {floor}s write floor and a 30s heartbeat"
        assert [x["xid"] for x in gpu3["xids"]] == [79]
        assert gpu3["xids"][0]["class"] == "Hardware"
        assert any("NodeReboot" in r or "XID 79" in r for r in gpu3["health"]["reasons"])


def test_unchanged_readings_are_written_only_as_often_as_the_heartbeat(
    cluster: ControlPlane, k8s: client.ApiClient
) -> None:
    heartbeat, window = 2.0, 7.0
    add_node(k8s, "gpu-quiet")
    with running_agent(cluster, "gpu-quiet", "t4-single", floor=0.5, heartbeat=heartbeat) as run:
        eventually(lambda: status_of(k8s, "gpu-quiet"), timeout=20, what="first write")
        writes_before = run.writer.writes
        versions = {gpunode(k8s, "gpu-quiet")["metadata"]["resourceVersion"]}
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:  # writes are >= 0.5 s apart: polling sees each one
            versions.add(gpunode(k8s, "gpu-quiet")["metadata"]["resourceVersion"])
            time.sleep(0.05)
        writes = run.writer.writes - writes_before
    assert writes <= math.ceil(window / heartbeat), f"{writes} writes in {window}s"
    assert writes >= math.floor(window / heartbeat) - 1, "the heartbeat must keep writing"
    assert len(versions) - 1 == writes, "every write the agent counted is a change on the server"


def test_a_status_the_crd_refuses_is_logged_and_retried_while_the_agent_runs(
    cluster: ControlPlane, k8s: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    add_node(k8s, "gpu-40")
    caplog.set_level(logging.INFO, logger="gpu_inventory.nodeagent")
    with running_agent(cluster, "gpu-40", "too-many-gpus", retry_initial=0.2) as run:
        eventually(lambda: holds(run.writer.failures >= 3), timeout=20, what="three refused writes")
        assert run.thread.is_alive()
        refusals = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.ERROR and "refused the agent's status" in r.getMessage()
        ]
        assert len(refusals) >= 3
        # The API server's own words: the list is longer than the schema's maxItems.
        assert "HTTP 422" in refusals[0]
        assert "must have at most 32 items" in refusals[0]
        status = status_of(k8s, "gpu-40")
        assert "refused this agent's readings" in status["agent"]["message"]
        assert "must have at most 32 items" in status["agent"]["message"]
        assert "gpus" not in status
        assert run.writer.writes == 0


def test_the_agent_never_touches_the_operators_status_kubernetes(
    cluster: ControlPlane, k8s: client.ApiClient
) -> None:
    uid = add_node(k8s, "gpu-shared")
    custom = client.CustomObjectsApi(k8s)
    custom.create_cluster_custom_object(G, V, PLURAL, gpunode_object("gpu-shared", uid))
    operator_view = {
        "labels": {"nvidia.com/gpu.product": "Tesla-T4"},
        "conditions": {"Ready": True, "MemoryPressure": False},
        "gpuResources": [
            {"name": "nvidia.com/gpu", "capacity": 1, "allocatable": 1, "allocated": 1}
        ],
        "allocated": 1,
        "agentState": "Reporting",
    }
    custom.patch_cluster_custom_object_status(
        G,
        V,
        PLURAL,
        "gpu-shared",
        {"status": {"kubernetes": operator_view}},
        field_manager=constants.OPERATOR_FIELD_MANAGER,
    )
    with running_agent(cluster, "gpu-shared", "t4-single", floor=0.3, heartbeat=0.6) as run:
        eventually(lambda: holds(run.writer.writes >= 3), timeout=20, what="three writes")
    body = gpunode(k8s, "gpu-shared")
    assert body["status"]["kubernetes"] == operator_view
    assert body["status"]["gpus"][0]["name"] == "Tesla T4"
    owned = [
        m
        for m in body["metadata"]["managedFields"]
        if m["manager"] == constants.AGENT_FIELD_MANAGER and m.get("subresource") == "status"
    ]
    assert owned, "the agent's writes are recorded under its field manager"
    assert set(owned[0]["fieldsV1"]["f:status"]) == {"f:summary", "f:agent", "f:driver", "f:gpus"}


def test_the_agent_creates_its_gpunode_owned_by_its_node(
    cluster: ControlPlane, k8s: client.ApiClient
) -> None:
    uid = add_node(k8s, "gpu-new")
    with running_agent(cluster, "gpu-new", "t4-single"):
        eventually(lambda: status_of(k8s, "gpu-new"), timeout=20, what="GPUNode/gpu-new")
    body = gpunode(k8s, "gpu-new")
    assert body["metadata"]["ownerReferences"][0]["uid"] == uid
    assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gpu-inventory"

    client.CoreV1Api(k8s).delete_node("gpu-new")

    def collected() -> None:
        assert not exists(k8s, "gpu-new"), "GPUNode/gpu-new still exists"

    eventually(collected, timeout=60, what="the garbage collector to delete GPUNode/gpu-new")


def test_a_gpunode_the_operator_created_first_is_used_as_is(
    cluster: ControlPlane, k8s: client.ApiClient
) -> None:
    uid = add_node(k8s, "gpu-race")
    custom = client.CustomObjectsApi(k8s)
    custom.create_cluster_custom_object(G, V, PLURAL, gpunode_object("gpu-race", uid))
    api = cluster.api_client()
    try:
        writer = GPUNodeWriter(api, "gpu-race")
        # The operator won the race between the agent's 404 and its create: AlreadyExists.
        writer._create()
        patch = {
            "status": {
                "summary": {"gpus": 1, "product": "", "health": "Healthy", "unhealthy": 0},
                "gpus": [{"uuid": "GPU-1", "index": 0, "health": {"status": "Healthy"}}],
            }
        }
        assert writer.write(patch).ok
    finally:
        api.close()
    assert gpunode(k8s, "gpu-race")["status"]["summary"]["gpus"] == 1


def test_without_its_node_the_agent_reports_why_and_keeps_trying(
    cluster: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gpu_inventory.nodeagent")
    with running_agent(cluster, "gpu-ghost", "t4-single", retry_initial=0.2) as run:
        eventually(lambda: holds(run.writer.failures >= 2), timeout=20, what="two failures")
        assert run.thread.is_alive()
    assert 'nodes \\"gpu-ghost\\" not found' in caplog.text or 'nodes "gpu-ghost" not found' in (
        caplog.text
    )


def test_the_agent_rides_out_an_api_server_restart(
    cluster: ControlPlane, k8s: client.ApiClient
) -> None:
    add_node(k8s, "gpu-outage")
    with running_agent(cluster, "gpu-outage", "t4-single", floor=0.3, heartbeat=0.6) as run:
        eventually(lambda: status_of(k8s, "gpu-outage"), timeout=20, what="first write")
        cluster.restart_apiserver()  # the agent's writes fail while it is down
        admin = cluster.api_client()  # a fresh client: the fixture's may hold dead connections
        try:
            restarted = status_of(admin, "gpu-outage")["agent"]["heartbeatTime"]

            def fresh() -> None:
                latest = status_of(admin, "gpu-outage")["agent"]["heartbeatTime"]
                assert latest > restarted

            eventually(fresh, timeout=30, what="writes after the restart")
            # The watch on the Node was cut by the restart; the reader lists and watches anew
            # (in watch mode nothing else would bring it the label).
            client.CoreV1Api(admin).patch_node(
                "gpu-outage",
                {"metadata": {"labels": {"nvidia.com/gpu.deploy.client": "paused-for-mig-change"}}},
            )
            eventually(lambda: holds(run.nvml.initialised == 0), timeout=30, what="released")
            assert run.node.watching
        finally:
            admin.close()
        assert run.thread.is_alive()
        assert run.writer.failures > 0, "the outage was seen"


# --- the console script, as the agent's own ServiceAccount ------------------------------------

NAMESPACE = "gpu-inventory"


def test_the_agent_runs_as_its_serviceaccount_and_exits_0_on_sigterm(
    cluster: ControlPlane, k8s: client.ApiClient, tmp_path: Path
) -> None:
    # The manifests as users install them: the agent's ServiceAccount, RBAC and the admission
    # policy that pins it to its own node's GPUNode, and its pod as its DaemonSet would make it.
    installation = install(cluster, "kustomize")
    uid = add_node(k8s, "gpu-cli")
    agent_pod(k8s, installation, node="gpu-cli", name="gpu-inventory-agent-cli")
    kubeconfig = cluster.serviceaccount_kubeconfig(
        NAMESPACE, "gpu-inventory-agent", bound_pod="gpu-inventory-agent-cli"
    )
    log_path = tmp_path / "agent.log"
    with simagent(
        cluster,
        "gpu-cli",
        "t4-single",
        log_path,
        kubeconfig=kubeconfig,
        pod="gpu-inventory-agent-cli",
        extra=("--write-floor=1", "--heartbeat=2", "--node-poll=1"),
    ):
        status = eventually(
            lambda: status_of(k8s, "gpu-cli"), timeout=30, what=f"GPUNode: {log_path}"
        )
        assert status["agent"]["podName"] == "gpu-inventory-agent-cli"
        assert status["agent"]["version"] == "0.1.0"
        assert status["gpus"][0]["name"] == "Tesla T4"
        assert gpunode(k8s, "gpu-cli")["metadata"]["ownerReferences"][0]["uid"] == uid

        def port() -> int:
            found = re.search(r"health endpoint listening on port (\d+)", log_path.read_text())
            assert found, log_path.read_text()
            return int(found.group(1))

        with urllib.request.urlopen(f"http://127.0.0.1:{eventually(port)}/healthz") as answer:
            assert answer.status == 200
        # Its own RBAC lets it read its Node (upgrade labels) and its GPUNode (XIDs to restore).
        # With `get` only on nodes it may not watch its Node: it says so once and GETs it.
        text = log_path.read_text()
        assert "cannot read it" not in text, text
        assert "not allowed to read it back" not in text, text
        assert text.count("not allowed to watch it") == 1, text
    output = log_path.read_text()
    assert "received SIGTERM; stopping" in output
    assert "agent stopped" in output


# --- restarts, reboots and driver upgrades ----------------------------------------------------


def set_boot_id(k8s: client.ApiClient, name: str, boot_id: str) -> None:
    reboot(client.CoreV1Api(k8s), name, boot_id)


def xids_of(status: dict[str, Any], index: int) -> list[int]:
    return [x["xid"] for x in status["gpus"][index].get("xids", [])]


def test_a_restarted_agent_keeps_the_xids_it_wrote_and_a_reboot_clears_them(
    cluster: ControlPlane, k8s: client.ApiClient
) -> None:
    add_node(k8s, "gpu-restart")
    set_boot_id(k8s, "gpu-restart", "boot-1")
    clock = ScenarioClock()
    with running_agent(cluster, "gpu-restart", "h100-8x-events", clock=clock, heartbeat=30):
        eventually(lambda: status_of(k8s, "gpu-restart"), timeout=20, what="first write")
        clock.seconds = 10  # XID 79 on GPU 3

        def unhealthy() -> dict[str, Any]:
            status = status_of(k8s, "gpu-restart")
            assert xids_of(status, 3) == [79], status["gpus"][3]
            return status

        before = eventually(unhealthy, timeout=20, what="XID 79 written")
    assert before["agent"]["bootId"] == "boot-1"

    # A rollout: a new process, whose NVML never saw that XID (healthy MIG readings).
    with running_agent(cluster, "gpu-restart", "h100-8x-mig", heartbeat=30):

        def rewritten() -> dict[str, Any]:
            status = status_of(k8s, "gpu-restart")
            assert status["agent"]["heartbeatTime"] > before["agent"]["heartbeatTime"]
            return status

        after = eventually(rewritten, timeout=20, what="the new agent's first write")
    assert after["gpus"][3]["xids"] == before["gpus"][3]["xids"]
    assert after["gpus"][3]["health"]["status"] == "Unhealthy"
    assert after["summary"]["unhealthy"] == 1

    set_boot_id(k8s, "gpu-restart", "boot-2")  # the node rebooted: GPUs reset, XIDs resolved
    with running_agent(cluster, "gpu-restart", "h100-8x-mig", heartbeat=30):

        def forgotten() -> dict[str, Any]:
            status = status_of(k8s, "gpu-restart")
            assert status["agent"]["bootId"] == "boot-2"
            return status

        rebooted = eventually(forgotten, timeout=20, what="a write after the reboot")
    assert xids_of(rebooted, 3) == []
    assert rebooted["summary"]["unhealthy"] == 0


def test_a_driver_upgrade_releases_nvml_and_the_agent_exits_after_it(
    cluster: ControlPlane, k8s: client.ApiClient
) -> None:
    add_node(k8s, "gpu-upgrade")
    core = client.CoreV1Api(k8s)
    label = "nvidia.com/gpu-driver-upgrade-state"
    with running_agent(cluster, "gpu-upgrade", "t4-single", heartbeat=30) as run:
        eventually(
            lambda: holds(status_of(k8s, "gpu-upgrade")["agent"]["nvmlAvailable"]), timeout=20
        )
        # The GPU Operator's upgrade controller moves the node along its states; draining
        # workloads leaves the driver alone.
        core.patch_node("gpu-upgrade", {"metadata": {"labels": {label: "drain-required"}}})
        core.patch_node("gpu-upgrade", {"metadata": {"labels": {label: "pod-restart-required"}}})

        def released() -> dict[str, Any]:
            status = status_of(k8s, "gpu-upgrade")
            assert status["agent"]["nvmlAvailable"] is False, status["agent"]
            return status

        status = eventually(released, timeout=20, what="NVML released")
        assert status["agent"]["message"] == (
            "NVML released while the GPU Operator upgrades the NVIDIA driver on this node "
            f"({label}=pod-restart-required)"
        )
        assert [g["name"] for g in status["gpus"]] == ["Tesla T4"]  # listed, not read
        assert status["gpus"][0]["health"]["status"] == "Unknown"
        assert (run.nvml.initialised, run.nvml.waiting) == (0, 0)  # no /dev/nvidia* held
        assert not run.agent.watcher.alive
        run.nvml.upgrade_driver("580.82.07")  # the new driver pod replaces the module

        core.patch_node("gpu-upgrade", {"metadata": {"labels": {label: "upgrade-done"}}})
        run.thread.join(20)
        assert not run.thread.is_alive(), "the agent must exit for a new container"
        assert run.agent.restart_reason is not None
        assert run.nvml.initialised == 0  # never taken with the old library

        def said_why() -> None:
            agent = status_of(k8s, "gpu-upgrade")["agent"]
            assert agent["message"].endswith("the agent exits for a new container"), agent

        eventually(said_why, timeout=10, what="the last status before exiting")


def test_the_watch_on_its_node_sees_a_label_change_at_once(
    cluster: ControlPlane, k8s: client.ApiClient
) -> None:
    """Allowed to watch its Node (here with the admin's credentials), the agent reacts to a
    label change within seconds, although it reads NVML only every 30 s and would GET the
    Node only every 60 s."""
    add_node(k8s, "gpu-watch")
    core = client.CoreV1Api(k8s)
    label = "nvidia.com/gpu.deploy.client"
    with running_agent(cluster, "gpu-watch", "t4-single", read_interval=30, heartbeat=60) as run:
        eventually(lambda: status_of(k8s, "gpu-watch"), timeout=20, what="first write")
        assert run.node.watching
        assert not run.node.polling
        core.patch_node("gpu-watch", {"metadata": {"labels": {label: "paused-for-mig-change"}}})
        changed = time.monotonic()
        eventually(lambda: holds(run.nvml.initialised == 0), timeout=20, what="NVML released")
        took = time.monotonic() - changed
        assert took < 10, f"took {took:.1f}s; the next NVML read was 30 s away"
        core.patch_node("gpu-watch", {"metadata": {"labels": {label: "true"}}})
        eventually(lambda: holds(run.nvml.initialised == 1), timeout=20, what="NVML taken back")
        assert run.agent.restart_reason is None  # a MIG change keeps the driver


def test_an_agent_whose_nvml_library_is_stale_exits_3_and_says_why(
    cluster: ControlPlane, k8s: client.ApiClient, tmp_path: Path
) -> None:
    """nvmlInit answers LibRmVersionMismatch: this container's library is not the driver's.
    The agent writes why, then exits 3 for the kubelet to start a new container."""
    add_node(k8s, "gpu-stale")
    scenario = tmp_path / "stale.yaml"
    scenario.write_text("nvml: LibRmVersionMismatch\ngpus: [{name: Tesla T4}]\n")
    log_path = tmp_path / "agent.log"
    process = start_simagent(cluster, "gpu-stale", scenario, log_path)
    try:
        code = process.wait(60)
    finally:
        process.kill()
    output = log_path.read_text()
    assert code == 3, output
    assert "exiting with code 3 for a new container" in output
    agent = status_of(k8s, "gpu-stale")["agent"]
    assert agent["nvmlAvailable"] is False
    assert "LibRmVersionMismatch" in agent["message"]
    assert "does not match the loaded NVIDIA driver" in agent["message"]
