"""The whole gpu-inventory system on the local control plane: the e2e test and `make demo`.

It installs gpu-inventory for real, with `kubectl apply -k manifests/` or `helm install` into any
namespace (CRDs, RBAC, the admission policy; the workloads are validated and stored, but no
kubelet runs them), then runs the operator, one agent per simulated node and the MCP server as
local processes. Each agent is the real one over a simulated NVML
(`python -m gpu_inventory.testing.simagent`). Each process authenticates with a token of its own
ServiceAccount from the install, so what is tested is the RBAC users deploy. An agent's token is
bound to the Pod its DaemonSet would create on its node (the installed pod template, admitted
under the namespace's Pod Security level), as the kubelet's projected token is, so the admission
policy sees its node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kubernetes import client

from gpu_inventory.mcpserver.settings import DEFAULT_AUDIENCE as MCP_AUDIENCE
from gpu_inventory.testing import dra
from gpu_inventory.testing import install as installing
from gpu_inventory.testing.builders import container, make_node, make_pod
from gpu_inventory.testing.controlplane import ControlPlane, free_port
from gpu_inventory.testing.nodes import create_node

NAMESPACE = "gpu-inventory"
TOKEN_SECONDS = 86_400


@dataclass(frozen=True)
class SimulatedNode:
    """A GPU node: the Node object the device plugin would advertise (or, with `dra`, the
    ResourceSlice NVIDIA's DRA driver would publish), and its agent's scenario."""

    name: str
    scenario: str
    gpus: int
    product: str
    resources: Mapping[str, str] = field(default_factory=dict)
    dra: bool = False

    def body(self) -> dict[str, Any]:
        if self.dra:
            return make_node(self.name)  # DRA GPUs are no Node capacity
        return make_node(self.name, gpus=self.gpus, product=self.product, resources=self.resources)

    def resource_slice(self) -> dict[str, Any]:
        return dra.make_slice(self.name, dra.h100_mig_devices(self.name))


_H100 = {"nvidia.com/mig-1g.10gb": "14"}  # the h100-8x-mig scenario: GPUs 0-1 as 7 x 1g.10gb

DEFAULT_NODES = (
    SimulatedNode("gpu-t4-a", "t4-single", gpus=1, product="Tesla-T4"),
    SimulatedNode(
        "gpu-h100-a", "h100-8x-mig", gpus=6, product="NVIDIA-H100-80GB-HBM3", resources=_H100
    ),
    SimulatedNode(
        "gpu-h100-b", "h100-8x-mig", gpus=6, product="NVIDIA-H100-80GB-HBM3", resources=_H100
    ),
    # The same HGX H100, its GPUs handed out by NVIDIA's DRA driver: 6 whole, 14 MIG devices.
    SimulatedNode("gpu-h100-dra", "h100-8x-mig", gpus=0, product="NVIDIA-H100-80GB-HBM3", dra=True),
)


def _script(name: str) -> str:
    """A console script of this environment (the venv's bin folder)."""
    return str(Path(sys.executable).with_name(name))


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class GPUInventorySystem:
    """Install, start and stop everything; read the processes' logs on failure."""

    plane: ControlPlane
    nodes: tuple[SimulatedNode, ...] = DEFAULT_NODES
    method: installing.Method = "kustomize"
    namespace: str = ""
    """Where to install (Helm; default `gpu-inventory-helm`); the kustomize base always goes
    into `gpu-inventory`. Set to the install's namespace by `install()`."""
    write_floor_seconds: float = 1.0
    heartbeat_seconds: float = 10.0
    processes: dict[str, Process] = field(default_factory=dict)
    kubeconfigs: dict[str, Path] = field(default_factory=dict)
    operator_metrics_port: int = 0

    @property
    def logs(self) -> Path:
        path = self.plane.workdir / "system-logs"
        path.mkdir(exist_ok=True)
        return path

    # --- install -------------------------------------------------------------------------------

    def install(self) -> None:
        """Install as an admin would (kustomize or Helm), then the simulated GPU nodes."""
        installation = installing.install(self.plane, self.method, self.namespace or None)
        self.namespace = installation.namespace
        api = self.plane.api_client()
        core = client.CoreV1Api(api)
        for node in self.nodes:
            create_node(core, node.body())
            installing.agent_pod(api, installation, node=node.name, name=self.agent_pod_name(node))
        publish_dra(api, [node for node in self.nodes if node.dra])
        for component in ("operator", "mcp"):
            self.kubeconfigs[component] = self.plane.serviceaccount_kubeconfig(
                self.namespace, installation.name(component), expiration_seconds=TOKEN_SECONDS
            )
        for node in self.nodes:
            self.kubeconfigs[f"agent-{node.name}"] = self.plane.serviceaccount_kubeconfig(
                self.namespace,
                installation.name("agent"),
                bound_pod=self.agent_pod_name(node),
                expiration_seconds=TOKEN_SECONDS,
            )
        api.close()

    def uninstall(self) -> None:
        """Remove a Helm release (the kustomize base stays: re-applying it is idempotent)."""
        if self.method == "helm":
            installing.uninstall_helm(self.plane)

    @staticmethod
    def agent_pod_name(node: SimulatedNode) -> str:
        return f"gpu-inventory-agent-{node.name}"

    # --- processes -----------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str]) -> Process:
        log_path = self.logs / f"{name}.log"
        log: IO[bytes] = log_path.open("ab")
        popen = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONSAFEPATH": "1", **env},
        )
        log.close()
        process = Process(name, popen, log_path)
        self.processes[name] = process
        return process

    def start_operator(self) -> Process:
        self.operator_metrics_port = free_port()
        return self._spawn(
            "operator",
            [
                _script("gpu-inventory-operator"),
                f"--lease-namespace={self.namespace}",
                f"--metrics-port={self.operator_metrics_port}",
                f"--liveness=http://127.0.0.1:{free_port()}/healthz",
            ],
            {"KUBECONFIG": str(self.kubeconfigs["operator"]), "POD_NAME": "operator-local"},
        )

    def start_agent(self, node: SimulatedNode, scenario: str | None = None) -> Process:
        """Start `node`'s agent; a running one is stopped first (a node reboot, to the agent)."""
        previous = self.processes.pop(f"agent-{node.name}", None)
        if previous is not None:
            previous.stop()
        scenario = scenario or node.scenario
        return self._spawn(
            f"agent-{node.name}",
            [
                # The real agent over a simulated NVML (testing/simagent.py).
                sys.executable,
                "-m",
                "gpu_inventory.testing.simagent",
                f"--scenario={scenario}",
                "--health-port=0",
                f"--write-floor={self.write_floor_seconds}",
                f"--heartbeat={self.heartbeat_seconds}",
            ],
            {
                "KUBECONFIG": str(self.kubeconfigs[f"agent-{node.name}"]),
                "NODE_NAME": node.name,
                "POD_NAME": self.agent_pod_name(node),
            },
        )

    def start_mcp_http(self, port: int) -> Process:
        """The MCP server over streamable HTTP on 127.0.0.1:`port`, as its own ServiceAccount."""
        return self._spawn(
            "mcp",
            [
                _script("gpu-inventory-mcp"),
                "--transport=http",
                "--host=127.0.0.1",
                f"--port={port}",
                f"--allowed-hosts=127.0.0.1:{port},localhost:{port}",
            ],
            {"KUBECONFIG": str(self.kubeconfigs["mcp"])},
        )

    def reader_token(self, name: str = "demo-reader") -> str:
        """A token for a ServiceAccount bound to the manifests' gpu-inventory-reader role."""
        api = self.plane.api_client()
        client.CoreV1Api(api).create_namespaced_service_account(
            self.namespace, {"metadata": {"name": name}}
        )
        client.RbacAuthorizationV1Api(api).create_cluster_role_binding(
            {
                "metadata": {"name": f"gpu-inventory-{name}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "gpu-inventory-reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": self.namespace}],
            }
        )
        # `kubectl create token NAME --audience gpu-inventory-mcp`: the MCP server accepts only
        # tokens made for it (a token for the API server could be replayed against the cluster).
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "spec": {"audiences": [MCP_AUDIENCE], "expirationSeconds": TOKEN_SECONDS},
        }
        response = client.CoreV1Api(api).create_namespaced_service_account_token(
            name, self.namespace, request
        )
        api.close()
        return str(response.status.token)

    def mcp_command(self) -> tuple[str, list[str], dict[str, str]]:
        """How to start the MCP server over stdio as its own ServiceAccount."""
        env = {
            **os.environ,
            "PYTHONSAFEPATH": "1",
            "KUBECONFIG": str(self.kubeconfigs["mcp"]),
        }
        return _script("gpu-inventory-mcp"), ["--transport=stdio"], env

    def start(self) -> None:
        self.start_operator()
        for node in self.nodes:
            self.start_agent(node)

    def check_alive(self) -> None:
        """Raise with the log tail of any process that exited."""
        for process in self.processes.values():
            if process.popen.poll() is not None:
                raise RuntimeError(
                    f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}"
                )

    def stop(self) -> dict[str, int]:
        return {name: process.stop() for name, process in reversed(self.processes.items())}


MIG_RESOURCE = "nvidia.com/mig-1g.10gb"
DRA_NODE = "gpu-h100-dra"


def publish_dra(api: client.ApiClient, nodes: Sequence[SimulatedNode]) -> None:
    """What NVIDIA's DRA driver creates: its DeviceClasses, and each DRA node's ResourceSlice."""
    if not nodes:
        return
    resource = client.ResourceV1Api(api)
    for create, body in [
        *((resource.create_device_class, c) for c in dra.gpu_classes()),
        *((resource.create_resource_slice, n.resource_slice()) for n in nodes),
    ]:
        try:
            create(body)
        except client.ApiException as error:
            if error.status != 409:  # left by an earlier run
                raise


def create_workload(api: client.ApiClient, namespace: str = "ml") -> None:
    """GPU pods as a team would run them: on the device-plugin nodes 7 GPUs and 3 MIG slices in
    use as the scheduler counts them (an init container's 2 GPUs overlap its pod's 1), plus a
    finished pod that holds none; on the DRA node 2 GPUs and 1 MIG device (`create_dra_workload`).
    """
    core = client.CoreV1Api(api)
    try:  # an earlier test's (its pods are wiped between tests, the namespace stays)
        core.create_namespace({"metadata": {"name": namespace}})
    except client.ApiException as error:
        if error.status != 409:
            raise
    pods = [
        make_pod("notebook", namespace=namespace, node="gpu-t4-a", gpus=1),
        make_pod("train", namespace=namespace, node="gpu-h100-a", gpus=4),
        make_pod("infer", namespace=namespace, node="gpu-h100-b", resources={MIG_RESOURCE: "3"}),
        make_pod(
            "prep-then-run",
            namespace=namespace,
            node="gpu-h100-b",
            init_containers=[container("prep", gpus=2)],
            containers=[container("run", gpus=1)],
        ),
        make_pod("done", namespace=namespace, node="gpu-h100-b", gpus=2),
    ]
    for pod in pods:
        core.create_namespaced_pod(namespace, pod)
    core.patch_namespaced_pod_status("done", namespace, {"status": {"phase": "Succeeded"}})
    create_dra_workload(api, namespace)


def create_dra_workload(api: client.ApiClient, namespace: str = "ml") -> None:
    """On the DRA node, claims allocated as kube-scheduler writes them: two data-parallel pods
    share one claim of 2 whole GPUs (held once), and an inference pod holds 1 MIG device."""
    core, resource = client.CoreV1Api(api), client.ResourceV1Api(api)

    def claimed(pod: str, claim: str) -> dict[str, Any]:
        body = make_pod(pod, namespace=namespace, node=DRA_NODE)
        body["spec"]["resourceClaims"] = [{"name": "gpus", "resourceClaimName": claim}]
        body["spec"]["containers"][0]["resources"] = {"claims": [{"name": "gpus"}]}
        created = core.create_namespaced_pod(namespace, body)
        return {"metadata": {"name": pod, "uid": created.metadata.uid}}

    for claim, count, device_class, devices, pods in (
        ("ddp-gpus", 2, "gpu.nvidia.com", ["gpu-2", "gpu-3"], ["ddp-0", "ddp-1"]),
        ("infer-mig", 1, "mig.nvidia.com", ["gpu-0-mig-1g10gb-19-0"], ["infer-dra"]),
    ):
        resource.create_namespaced_resource_claim(
            namespace, dra.make_claim(claim, namespace, count, device_class=device_class)
        )
        consumers = [claimed(pod, claim) for pod in pods]
        status = {
            "allocation": dra.allocation(DRA_NODE, devices),
            "reservedFor": dra.reserved_for(*consumers),
        }
        resource.patch_namespaced_resource_claim_status(claim, namespace, {"status": status})


@contextlib.contextmanager
def running_system(plane: ControlPlane, **options: Any) -> Iterator[GPUInventorySystem]:
    system = GPUInventorySystem(plane, **options)
    system.install()
    try:
        system.start()  # inside: an agent that fails to start must not leave the rest running
        yield system
    finally:
        codes = system.stop()
        system.uninstall()
        if any(code not in (0, -signal.SIGTERM) for code in codes.values()):
            print(f"processes exited with {codes}", file=sys.stderr)
