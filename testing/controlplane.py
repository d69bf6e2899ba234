"""A real Kubernetes control plane as local processes: etcd, apiserver, controller manager.

The envtest approach without Docker: upstream binaries on free loopback ports, a throwaway PKI,
RBAC on, ServiceAccount token signing, and a controller manager running only the garbage
collector, namespace and service-account controllers (no node lifecycle controller, which would
mark kubelet-less test nodes NotReady and evict their pods). Every process is stopped by its own
pid; a failed start raises with the component's log tail.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from gpu_inventory.testing.binaries import REPO_ROOT, ensure_binaries
from gpu_inventory.testing.pki import CertPair, Pki

START_TIMEOUT = float(os.environ.get("GPU_INVENTORY_START_TIMEOUT", "120"))
STOP_TIMEOUT = 20.0
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "validatingadmissionpolicy-status-controller",
)
STATE_FILE = "controlplane.json"
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "verbs": ["get", "list", "watch"]},
        {"level": "Metadata"},
    ],
}
"""Writes only, at Metadata level: user, verb, object, answer code and timestamps."""


class ControlPlaneError(RuntimeError):
    """A component failed to start or stop; the message carries its log tail."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it; taken again right away by the caller)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Component:
    """One process of the control plane, with the command that restarts it."""

    name: str
    args: list[str]
    log: Path
    health_url: str
    process: subprocess.Popen[bytes] | None = None
    detach: bool = False

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.detach,
            )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        if self.process is None:
            return
        _terminate(self.process.pid, wait=self.process.wait)
        self.process = None

    def failure(self, why: str) -> ControlPlaneError:
        return ControlPlaneError(f"{self.name} {why}; last lines of {self.log}:\n{_tail(self.log)}")


def _terminate(pid: int, *, wait: Callable[[float], object] | None = None) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT: always this pid, never a process name."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if wait is not None:
            try:
                wait(0.2)
                return
            except subprocess.TimeoutExpired:
                continue
        if not alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if wait is not None:
        wait(STOP_TIMEOUT)


def alive(pid: int) -> bool:
    """Whether `pid` runs. A zombie does not: ours is reaped here; another's (its parent, e.g.
    the shell of `make cluster-up`, is gone and nothing reaps it) is read from /proc."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    status = Path(f"/proc/{pid}/status")
    with contextlib.suppress(OSError):
        return "State:\tZ" not in status.read_text()
    return True


@dataclass
class ControlPlane:
    """Start with `start()` (or use as a context manager); stop with `stop()`.

    `workdir` holds the PKI, etcd's data, logs and kubeconfigs. With `detach=True` the
    processes survive this Python process (used by `make cluster-up`).
    """

    workdir: Path
    detach: bool = False
    etcd_args: tuple[str, ...] = ()
    """Extra etcd flags, e.g. `--max-request-bytes=65536` to make etcd refuse large objects."""
    apiserver_args: tuple[str, ...] = ()
    """Extra kube-apiserver flags, e.g. `--feature-gates=...`."""
    controllers: tuple[str, ...] = CONTROLLERS
    """kube-controller-manager's controllers; e.g. `CONTROLLERS + ("daemonset-controller",)`
    for a test that needs the DaemonSet controller's own verdict on which nodes get a pod."""
    audit: bool = False
    """Record every write request in `audit_log` (JSON lines): who wrote what, when, answered
    how. The API server's own account of what a client did, for tests that must prove a
    client did *not* write."""
    components: dict[str, Component] = field(default_factory=dict)
    kubeconfig: Path = field(init=False)
    server: str = field(init=False)
    startup_seconds: float = field(init=False, default=0.0)
    _pki: Pki | None = field(init=False, default=None, repr=False)
    _sa_key: CertPair | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.kubeconfig = self.workdir / "kubeconfig"
        self.server = ""

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        began = time.monotonic()
        bin_dir = ensure_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        pki = Pki(self.workdir / "pki")
        self._pki = pki
        serving = pki.issue("apiserver", common_name="localhost", server=True)
        admin = pki.issue("admin", common_name="admin", organizations=("system:masters",))
        self._sa_key = pki.service_account_key()

        etcd_port, etcd_peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.components["etcd"] = Component(
            "etcd",
            [
                str(bin_dir / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
                *self.etcd_args,
            ],
            logs / "etcd.log",
            f"{etcd_url}/health",
            detach=self.detach,
        )
        api_port = free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        self.components["kube-apiserver"] = Component(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--etcd-servers={etcd_url}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--authorization-mode=Node,RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # No kubelet or token controller runs; pods name their ServiceAccount explicitly.
                "--disable-admission-plugins=ServiceAccount",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={self._sa_key.cert}",
                f"--service-account-signing-key-file={self._sa_key.key}",
                f"--cert-dir={self.workdir / 'pki'}",
                "--profiling=false",
                "--v=1",
                *self._audit_args(),
                *self.apiserver_args,
            ],
            logs / "kube-apiserver.log",
            f"{self.server}/readyz",
            detach=self.detach,
        )
        self._write_kubeconfig(
            self.kubeconfig,
            user={
                "client-certificate-data": _b64(admin.cert.read_bytes()),
                "client-key-data": _b64(admin.key.read_bytes()),
            },
        )
        kcm_port = free_port()
        self.components["kube-controller-manager"] = Component(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--controllers={','.join(self.controllers)}",
                f"--service-account-private-key-file={self._sa_key.key}",
                f"--root-ca-file={pki.ca.cert}",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez",
                "--concurrent-gc-syncs=5",
                "--v=1",
            ],
            logs / "kube-controller-manager.log",
            f"https://127.0.0.1:{kcm_port}/healthz",
            detach=self.detach,
        )
        try:
            for component in self.components.values():
                component.start()
                self._wait_healthy(component)
            self._wait_default_namespace()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        self._save_state()
        return self

    @property
    def pki(self) -> Pki:
        """The control plane's CA, to issue certificates its clients trust."""
        if self._pki is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._pki

    @property
    def audit_log(self) -> Path:
        return self.workdir / "logs" / "audit.log"

    def _audit_args(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(_AUDIT_POLICY))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-mode=blocking",  # an entry is on disk before the answer is sent
            "--audit-log-format=json",
        ]

    def audit_events(self) -> list[dict[str, Any]]:
        """Every audit event recorded so far (ResponseComplete stage only)."""
        if not self.audit_log.exists():
            return []
        events = []
        for line in self.audit_log.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                event = json.loads(line)
                if event.get("stage") == "ResponseComplete":
                    events.append(event)
        return events

    def stop(self) -> None:
        """Stop every component, newest first, each by its own pid."""
        for component in reversed(list(self.components.values())):
            component.stop()
        state = self.workdir / STATE_FILE
        state.unlink(missing_ok=True)

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port; etcd keeps the data."""
        component = self.components["kube-apiserver"]
        component.stop()
        component.start()
        self._wait_healthy(component)
        self._save_state()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- health --------------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname = False  # the KCM serves a self-signed cert of its own,
        context.verify_mode = ssl.CERT_NONE  # and /healthz is all this context asks for
        return context

    def _wait_healthy(self, component: Component) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        context = self._ssl_context()
        last = "no answer yet"
        while time.monotonic() < deadline:
            if component.process is not None and component.process.poll() is not None:
                raise component.failure(f"exited with code {component.process.returncode}")
            try:
                with urllib.request.urlopen(component.health_url, timeout=2, context=context) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except urllib.error.HTTPError as error:
                last = f"HTTP {error.code}"
            except (OSError, urllib.error.URLError) as error:
                last = str(error)
            time.sleep(0.1)
        raise component.failure(
            f"was not healthy at {component.health_url} within {START_TIMEOUT:.0f}s ({last})"
        )

    def _wait_default_namespace(self) -> None:
        with self.api_client() as api_client:
            api = client.CoreV1Api(api_client)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                with contextlib.suppress(client.ApiException):
                    api.read_namespace("default")
                    return
                time.sleep(0.1)
        raise self.components["kube-apiserver"].failure("never created namespace 'default'")

    # --- clients and kubeconfigs ---------------------------------------------------------------

    def api_client(self, kubeconfig: Path | None = None) -> client.ApiClient:
        """A new API client (admin unless another kubeconfig is given)."""
        configuration = client.Configuration()
        config.load_kube_config(
            config_file=str(kubeconfig or self.kubeconfig), client_configuration=configuration
        )
        return client.ApiClient(configuration)

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ with KUBECONFIG pointing at the admin kubeconfig, for subprocesses."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), **extra}

    def _write_kubeconfig(self, path: Path, *, user: Mapping[str, str]) -> None:
        assert self._pki is not None
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": _b64(self._pki.ca.cert.read_bytes()),
                    },
                }
            ],
            "users": [{"name": "user", "user": dict(user)}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "user"}}],
            "current-context": "local",
        }
        path.write_text(yaml.safe_dump(document))
        path.chmod(0o600)

    def serviceaccount_token(
        self,
        namespace: str,
        name: str,
        *,
        bound_pod: str | None = None,
        expiration_seconds: int = 3600,
    ) -> str:
        """A token for ServiceAccount namespace/name (TokenRequest).

        With `bound_pod`, the token is bound to that Pod, so it carries the Pod's node name
        (`authentication.kubernetes.io/node-name` in the user's extra) as a kubelet-mounted
        projected token does.
        """
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
        with self.api_client() as api_client:
            core = client.CoreV1Api(api_client)
            if bound_pod is not None:
                pod = core.read_namespaced_pod(bound_pod, namespace)
                spec["boundObjectRef"] = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": bound_pod,
                    "uid": pod.metadata.uid,
                }
            response = core.create_namespaced_service_account_token(
                name, namespace, {"apiVersion": "authentication.k8s.io/v1", "spec": spec}
            )
        return str(response.status.token)

    def serviceaccount_kubeconfig(
        self,
        namespace: str,
        name: str,
        *,
        bound_pod: str | None = None,
        expiration_seconds: int = 3600,
    ) -> Path:
        """A kubeconfig that authenticates as ServiceAccount namespace/name."""
        token = self.serviceaccount_token(
            namespace, name, bound_pod=bound_pod, expiration_seconds=expiration_seconds
        )
        suffix = f"-{bound_pod}" if bound_pod else ""
        path = self.workdir / "kubeconfigs" / f"{namespace}-{name}{suffix}.kubeconfig"
        path.parent.mkdir(exist_ok=True)
        self._write_kubeconfig(path, user={"token": token})
        return path

    def install_crds(self, directory: Path = REPO_ROOT / "crds") -> list[str]:
        """Create or replace every CRD in `directory` and wait until each is Established."""
        with self.api_client() as api_client:
            return _install_crds(client.ApiextensionsV1Api(api_client), directory)

    # --- state for `cluster-up` / `cluster-down` -----------------------------------------------

    def _save_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "pids": {name: c.pid for name, c in self.components.items()},
        }
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2))


@contextlib.contextmanager
def running(workdir: Path, *, crds: bool = True, **options: Any) -> Iterator[ControlPlane]:
    """A control plane for a test session or module: started in `workdir` with `options` (the
    ControlPlane fields) and, unless `crds=False`, our CRDs; stopped at the end, its etcd data
    removed (the logs stay for a post-mortem)."""
    plane = ControlPlane(workdir, **options)
    plane.start()
    try:
        if crds:
            plane.install_crds()
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(plane.workdir / "etcd", ignore_errors=True)


def _install_crds(extensions: client.ApiextensionsV1Api, directory: Path) -> list[str]:
    names = []
    for path in sorted(directory.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        if body.get("kind") != "CustomResourceDefinition":
            continue  # e.g. the kustomization that lists them
        name = body["metadata"]["name"]
        try:
            extensions.create_custom_resource_definition(body)
        except client.ApiException as error:
            if error.status != 409:
                raise
            current = extensions.read_custom_resource_definition(name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            extensions.replace_custom_resource_definition(name, body)
        names.append(name)
    deadline = time.monotonic() + START_TIMEOUT
    for name in names:
        while not _established(extensions.read_custom_resource_definition(name)):
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"CRD {name} was not Established in time")
            time.sleep(0.05)
    return names


@contextlib.contextmanager
def with_crds(workdir: Path, **options: Any) -> Iterator[ControlPlane]:
    """A control plane of its own (`options` as for `ControlPlane`) with our CRDs installed,
    stopped and its etcd data removed afterwards: what a test module that needs other flags
    than the session's yields from its `control_plane` fixture."""
    plane = ControlPlane(workdir, **options)
    plane.start()
    try:
        plane.install_crds()
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(workdir / "etcd", ignore_errors=True)


def stop_detached(workdir: Path) -> list[str]:
    """Stop a control plane started with `detach=True`, from its state file. Names stopped."""
    state_path = workdir / STATE_FILE
    if not state_path.exists():
        return []
    state = json.loads(state_path.read_text())
    stopped = []
    for name, pid in reversed(list(state["pids"].items())):
        if pid and alive(pid):
            _terminate(pid)
            stopped.append(name)
    state_path.unlink()
    return stopped


def _established(crd: Any) -> bool:
    conditions = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
