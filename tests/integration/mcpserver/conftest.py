"""Fixtures for the MCP server on the local control plane: CRs written as the operator and agents
would (admin, /status), ServiceAccounts and their tokens (`kubectl create token`), the HTTP
app served on a loopback port, and a proxy in front of the API server's token reviews."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from kubernetes import client
from starlette.applications import Starlette

from gpu_inventory.api import constants
from gpu_inventory.api.models import GPUInventory, GPUNode
from gpu_inventory.api.objects import inventory_object
from gpu_inventory.mcpserver.settings import DEFAULT_AUDIENCE
from gpu_inventory.testing.controlplane import ControlPlane, free_port
from gpu_inventory.testing.kubectl import run_kubectl
from gpu_inventory.testing.pki import Pki
from gpu_inventory.testing.wait import eventually

G, V = constants.GROUP, constants.VERSION


@dataclass
class Objects:
    """Create or update the CRs a test needs; the `cluster` fixture wipes them before a test."""

    custom: client.CustomObjectsApi

    def put_node(self, node: GPUNode) -> None:
        name = node.metadata.name
        body = {"apiVersion": constants.API_VERSION, "kind": "GPUNode", "metadata": {"name": name}}
        with contextlib.suppress(client.ApiException):
            self.custom.create_cluster_custom_object(G, V, constants.NODE_PLURAL, body)
        assert node.status is not None
        self.custom.patch_cluster_custom_object_status(
            G, V, constants.NODE_PLURAL, name, {"status": node.status.to_wire()}
        )

    def put_inventory(self, inventory: GPUInventory) -> None:
        with contextlib.suppress(client.ApiException):
            self.custom.create_cluster_custom_object(
                G, V, constants.INVENTORY_PLURAL, inventory_object(inventory.spec)
            )
        assert inventory.status is not None
        self.custom.patch_cluster_custom_object_status(
            G,
            V,
            constants.INVENTORY_PLURAL,
            constants.INVENTORY_NAME,
            {"status": inventory.status.to_wire()},
        )

    def put(self, inventory: GPUInventory, *nodes: GPUNode) -> None:
        for node in nodes:
            self.put_node(node)
        self.put_inventory(inventory)

    def delete_node(self, name: str) -> None:
        self.custom.delete_cluster_custom_object(G, V, constants.NODE_PLURAL, name)


@pytest.fixture
def objects(cluster: ControlPlane, k8s: client.ApiClient) -> Objects:
    return Objects(client.CustomObjectsApi(k8s))


@pytest.fixture
def unreachable_kubeconfig(control_plane: ControlPlane, tmp_path: Path) -> Path:
    """The admin kubeconfig, pointing at a loopback port where nothing listens."""
    document = yaml.safe_load(control_plane.kubeconfig.read_text())
    document["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    path = tmp_path / "unreachable.kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def cluster_rbac(k8s: client.ApiClient) -> Iterator[list[tuple[str, str]]]:
    """Cluster-scoped RBAC objects a test creates, as (kind, name); deleted afterwards."""
    created: list[tuple[str, str]] = []
    yield created
    rbac = client.RbacAuthorizationV1Api(k8s)
    for kind, name in created:
        with contextlib.suppress(client.ApiException):
            if kind == "ClusterRole":
                rbac.delete_cluster_role(name)
            else:
                rbac.delete_cluster_role_binding(name)


# --- callers: ServiceAccounts, RBAC and tokens ---------------------------------------------------


def kubectl_create_token(
    cluster: ControlPlane, namespace: str, name: str, *, audience: str | None = DEFAULT_AUDIENCE
) -> str:
    """What the README tells callers to run: `kubectl create token SA --audience ...`
    (without `audience`, a token meant for the API server itself)."""
    args = ["create", "token", name, "-n", namespace, "--duration=1h"]
    if audience is not None:
        args.append(f"--audience={audience}")
    done = run_kubectl(cluster.kubeconfig, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def service_account(k8s: client.ApiClient, namespace: str, name: str) -> None:
    client.CoreV1Api(k8s).create_namespaced_service_account(namespace, {"metadata": {"name": name}})


def grant_inventory_reader(
    k8s: client.ApiClient,
    namespace: str,
    name: str,
    created: list[tuple[str, str]],
    *,
    subject: dict[str, str] | None = None,
) -> None:
    """A ClusterRole that may `get gpuinventories`, bound to ServiceAccount namespace/name (or
    to `subject`, e.g. a group)."""
    rbac = client.RbacAuthorizationV1Api(k8s)
    role = f"{namespace}-{name}-gpuinventory-reader"
    rbac.create_cluster_role(
        {
            "metadata": {"name": role},
            "rules": [
                {
                    "apiGroups": [constants.GROUP],
                    "resources": [constants.INVENTORY_PLURAL],
                    "verbs": ["get"],
                }
            ],
        }
    )
    created.append(("ClusterRole", role))
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [
                subject or {"kind": "ServiceAccount", "name": name, "namespace": namespace}
            ],
        }
    )
    created.append(("ClusterRoleBinding", role))


@pytest.fixture
def reader(
    cluster: ControlPlane,
    k8s: client.ApiClient,
    namespace: str,
    cluster_rbac: list[tuple[str, str]],
) -> str:
    """ServiceAccount `reader`, which may `get gpuinventories`; its name."""
    service_account(k8s, namespace, "reader")
    grant_inventory_reader(k8s, namespace, "reader", cluster_rbac)
    return "reader"


@pytest.fixture
def reader_token(cluster: ControlPlane, namespace: str, reader: str) -> str:
    """A `reader` token meant for the MCP server (`--audience gpu-inventory-mcp`)."""
    return kubectl_create_token(cluster, namespace, reader)


# --- the HTTP app on a loopback port -------------------------------------------------------------


@contextlib.contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()

    def started() -> None:
        assert server.started, "uvicorn has not started"

    try:
        eventually(started, timeout=15, what="uvicorn")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


# --- a proxy in front of the API server's token reviews ------------------------------------------

Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


class ReviewProxy:
    """HTTPS on a loopback port; POSTs are relayed to the API server as the admin, except that
    TokenReviews hang while `hang` is set, and TokenReview answers pass through `rewrite` when
    it is set (to stand in for authenticators this control plane does not run)."""

    def __init__(self, api: client.ApiClient, directory: Path) -> None:
        self.api = api
        self.hang = threading.Event()
        self.release = threading.Event()
        self.hanging = 0
        self.rewrite: Rewrite | None = None
        pki = Pki(directory)
        serving_pair = pki.issue("proxy", common_name="localhost", server=True)
        self.ca = pki.ca.cert
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(serving_pair.cert, serving_pair.key)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                review = self.path.endswith("/tokenreviews")
                if review and proxy.hang.is_set():
                    proxy.hanging += 1
                    proxy.release.wait(60)
                    self.send_error(503)
                    return
                upstream = proxy.api.rest_client.pool_manager.request(
                    "POST",
                    proxy.api.configuration.host + self.path,
                    body=body,
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                )
                data = upstream.data
                if review and proxy.rewrite is not None and upstream.status == 201:
                    data = json.dumps(proxy.rewrite(json.loads(data))).encode()
                self.send_response(upstream.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}"

    def kubeconfig(self, admin: Path, path: Path) -> Path:
        """The admin kubeconfig, pointed at this proxy."""
        document = yaml.safe_load(admin.read_text())
        cluster = document["clusters"][0]["cluster"]
        cluster["server"] = self.url
        cluster["certificate-authority-data"] = base64.b64encode(self.ca.read_bytes()).decode()
        path.write_text(yaml.safe_dump(document))
        return path

    def __enter__(self) -> ReviewProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(
    control_plane: ControlPlane, k8s: client.ApiClient, tmp_path: Path
) -> Iterator[ReviewProxy]:
    with ReviewProxy(k8s, tmp_path / "pki") as running:
        yield running


# --- the real operator ---------------------------------------------------------------------------

OPERATOR = str(Path(sys.executable).with_name("gpu-inventory-operator"))


@pytest.fixture
def operator(cluster: ControlPlane, tmp_path: Path) -> Iterator[Path]:
    """`gpu-inventory-operator --standalone` on the admin kubeconfig, with short timings, as
    the operator's own tests run it; stopped by its pid. Yields its log file (printed when the
    test fails, by pytest's captured output)."""
    log = tmp_path / "operator.log"
    environ = cluster.env(
        GPU_INVENTORY_WRITE_WINDOW="0.2",
        GPU_INVENTORY_LIST_SETTLE="0.5",
        GPU_INVENTORY_RESYNC_INTERVAL="2",
    )
    environ.pop("POD_NAMESPACE", None)
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                OPERATOR,
                "--standalone",
                f"--metrics-port={free_port()}",
                f"--liveness=http://127.0.0.1:{free_port()}/healthz",
            ],
            env=environ,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield log
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
            sys.stderr.write(f"----- operator log (tail) -----\n{log.read_text()[-5000:]}\n")
