"""`gpu-inventory-agent`: flags and environment -> the agent, its /healthz, and signals.

`--once` reads NVML once, prints the GPUNode status the agent would write (JSON) and exits: no
cluster and no kubeconfig needed, and nothing of Kubernetes imported (the Kubernetes client is
imported only on the long-running path below). It is the first thing to run on a GPU node to
see what the agent sees.

Exit codes: 0 after SIGTERM/SIGINT (event thread stopped, NVML shut down), or after `--once`
printed a status read from NVML; 1 after `--once` printed a status without NVML (the message
says why); 2 for a bad option (missing NODE_NAME, no Kubernetes credentials, port in use); 3
when only a new container can read NVML: a driver upgrade it released NVML for is over, or
nvmlInit answered LibRmVersionMismatch (the container's NVML library is the old driver's). The
kubelet then starts a new container, into which the NVIDIA runtime mounts the current library.
No NVML and no API server are not exits for the long-running agent: it reports the first and
retries both.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from gpu_inventory.nodeagent import status
from gpu_inventory.nodeagent.agent import Agent, utcnow
from gpu_inventory.nodeagent.config import FLAGS, AgentConfig, ConfigError
from gpu_inventory.nodeagent.health import HealthPolicy
from gpu_inventory.nodeagent.healthz import HealthServer, Liveness
from gpu_inventory.nodeagent.nvml import NVMLBackend
from gpu_inventory.nodeagent.ports import WriteOutcome
from gpu_inventory.nodeagent.reporter import ReportPolicy

if TYPE_CHECKING:
    from kubernetes import client

log = logging.getLogger("gpu_inventory.nodeagent")

_PROG = "gpu-inventory-agent"
EXIT_RESTART = 3
"""Only a new container can read NVML (see the module docstring)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG,
        description="Read this node's GPUs through NVML and keep its GPUNode status current.",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="read NVML once, print the GPUNode status as JSON and exit (no cluster needed)",
    )
    p.add_argument("--node-name", help="this node (default: $NODE_NAME)")
    p.add_argument("--pod-name", help="this agent's pod (default: $POD_NAME)")
    p.add_argument("--kubeconfig", help="default: $KUBECONFIG, in-cluster, ~/.kube/config")
    # Defaults come from the config dataclasses, the one place they are written.
    agent, report, health = AgentConfig(node_name="-"), ReportPolicy(), HealthPolicy()
    number: list[tuple[str, type, object, str]] = [
        (
            FLAGS["read_interval_seconds"],
            float,
            agent.read_interval_seconds,
            "seconds between NVML reads",
        ),
        ("--write-floor", float, report.write_floor_seconds, "min seconds between writes"),
        ("--heartbeat", float, report.heartbeat_seconds, "max seconds between writes"),
        (
            "--memory-deadband-mib",
            int,
            report.memory_deadband_bytes // 2**20,
            "memory-used change that counts",
        ),
        (
            "--temperature-deadband",
            int,
            report.temperature_deadband_celsius,
            "temperature change that counts (C)",
        ),
        ("--xid-window", float, health.xid_window_seconds, "seconds an XID counts"),
        (
            FLAGS["nvml_retry_seconds"],
            float,
            agent.nvml_retry_seconds,
            "seconds between NVML inits",
        ),
        (
            FLAGS["node_poll_seconds"],
            float,
            agent.node_poll_seconds,
            "seconds between GETs of the Node where it may not be watched",
        ),
        ("--retry-initial", float, report.retry_initial_seconds, "first wait after a failed write"),
        ("--retry-max", float, report.retry_max_seconds, "longest wait between writes"),
    ]
    for flag, kind, default, text in number:
        p.add_argument(flag, type=kind, default=default, help=f"{text} (%(default)s)")
    p.add_argument(
        "--health-host", default=agent.health_host, help="address of /healthz (%(default)s)"
    )
    p.add_argument(
        "--health-port", type=int, default=agent.health_port, help="port of /healthz; 0 = any free"
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def agent_config(args: argparse.Namespace, env: Mapping[str, str]) -> AgentConfig:
    """Flags first, then the environment; raises ConfigError naming the bad option."""
    backend = env.get("GPU_INVENTORY_BACKEND", "nvml")
    if backend != "nvml":
        raise ConfigError(
            f"GPU_INVENTORY_BACKEND={backend!r}: the agent reads NVML only; for a simulated node"
            " run `python -m gpu_inventory.testing.simagent --scenario NAME`"
        )
    try:
        report = ReportPolicy(
            write_floor_seconds=args.write_floor,
            heartbeat_seconds=args.heartbeat,
            memory_deadband_bytes=args.memory_deadband_mib * 2**20,
            temperature_deadband_celsius=args.temperature_deadband,
            retry_initial_seconds=args.retry_initial,
            retry_max_seconds=args.retry_max,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from error
    node_name = args.node_name or env.get("NODE_NAME", "")
    if args.once and not node_name:
        node_name = socket.gethostname()  # only names the log lines: --once writes nothing
    return AgentConfig(
        node_name=node_name,
        pod_name=args.pod_name or env.get("POD_NAME", ""),
        kubeconfig=args.kubeconfig,
        read_interval_seconds=args.interval,
        nvml_retry_seconds=args.nvml_retry,
        node_poll_seconds=args.node_poll,
        report=report,
        health=HealthPolicy(xid_window_seconds=args.xid_window),
        health_host=args.health_host,
        health_port=args.health_port,
    )


def package_version() -> str:
    try:
        return importlib.metadata.version("gpu-inventory")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        cfg = agent_config(args, os.environ)
    except ConfigError as error:
        print(f"{_PROG}: {error}", file=sys.stderr)
        return 2
    if args.once:
        return once(cfg)
    return serve(cfg)


class _Printed:
    """The sink of `--once`: keeps the one patch; there is no earlier status to restore."""

    def __init__(self) -> None:
        self.patch: dict[str, Any] | None = None

    def write(self, patch: dict[str, Any]) -> WriteOutcome:
        self.patch = patch
        return WriteOutcome(ok=True)

    def previous(self) -> None:
        return None


BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
"""Where the kubelet reads the Node's bootID too; not namespaced, so a container sees the host's."""


def local_boot_id(path: str = BOOT_ID_PATH) -> str:
    """This machine's boot ID; "" where there is none (not Linux)."""
    try:
        with open(path, encoding="ascii") as found:
            return found.read().strip()
    except OSError:
        return ""


def once(cfg: AgentConfig) -> int:
    """Read NVML once and print the status the agent would write."""
    printed = _Printed()
    agent = Agent(
        cfg, NVMLBackend(), printed, version=package_version(), boot_id=local_boot_id(), once=True
    )
    try:
        turn = agent.run_once(utcnow())
    finally:
        agent.backend.stop()
    print(json.dumps(status.status_patch(turn.report)["status"], indent=2))
    return 0 if turn.report.agent.nvml_available else 1


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """The given kubeconfig, else $KUBECONFIG, else in-cluster, else ~/.kube/config."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if (
        kubeconfig is None
        and not os.environ.get("KUBECONFIG")
        and ("KUBERNETES_SERVICE_HOST" in os.environ)
    ):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


def serve(cfg: AgentConfig) -> int:
    """The long-running agent: NVML in, GPUNode status out, until SIGTERM."""
    from kubernetes import config

    from gpu_inventory.nodeagent.nodeview import NodeReader
    from gpu_inventory.nodeagent.writer import GPUNodeWriter

    # urllib3 warns on each of its own connection retries; the writer logs the outcome once.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    try:
        api = api_client(cfg.kubeconfig)
    except config.ConfigException as error:
        print(f"{_PROG}: cannot load Kubernetes credentials: {error}", file=sys.stderr)
        return 2

    liveness = Liveness(cfg.liveness_stale_seconds)
    try:
        server = HealthServer(liveness, host=cfg.health_host, port=cfg.health_port)
    except OSError as error:
        print(f"{_PROG}: cannot serve /healthz on port {cfg.health_port}: {error}", file=sys.stderr)
        api.close()
        return 2
    port = server.start()
    log.info("health endpoint listening on port %d (/healthz)", port)

    version = package_version()
    writer = GPUNodeWriter(api, cfg.node_name)
    node = NodeReader(api, cfg.node_name, poll_seconds=cfg.node_poll_seconds)
    agent = Agent(
        cfg,
        NVMLBackend(),
        writer,
        node=node,
        version=version,
        liveness=liveness,
        boot_id=local_boot_id(),
    )
    node.start(on_change=agent.wake)  # a label change starts the next turn at once
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()
        agent.wake()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "agent %s for node %s (floor %.1fs, heartbeat %.1fs)",
        version,
        cfg.node_name,
        cfg.report.write_floor_seconds,
        cfg.report.heartbeat_seconds,
    )
    try:
        restart = agent.run(stop)
    finally:
        node.stop()
        server.stop()
        api.close()
    if restart is not None:
        log.error("exiting with code %d for a new container: %s", EXIT_RESTART, restart)
        return EXIT_RESTART
    return 0
