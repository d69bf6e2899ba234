"""What the operator wrote, as the API server's own audit log tells it: a replica that lost the
Lease writes nothing more, and a refused write is retried less and less often.

These tests run on a control plane of their own with audit logging on (every write request,
who sent it, when, and the answer), so no other test's writes are in the log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.testing.builders import make_node, make_pod
from gpu_inventory.testing.controlplane import ControlPlane, running
from gpu_inventory.testing.rbac import bind_cluster_role
from gpu_inventory.testing.wait import equals, eventually

pytestmark = pytest.mark.cluster

LEADER = "gpu_inventory_operator_leader"
FAST_LEASE = {
    "GPU_INVENTORY_LEASE_DURATION": "6",
    "GPU_INVENTORY_LEASE_RENEW_DEADLINE": "4",
    "GPU_INVENTORY_LEASE_RENEW_INTERVAL": "1",
}
OURS = frozenset({"gpunodes", "gpuinventories"})


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """Overrides the session's control plane for this module: one with an audit log."""
    with running(tmp_path_factory.mktemp("audited"), audit=True) as plane:
        yield plane


def account(plane: ControlPlane, api: client.ApiClient, namespace: str, name: str) -> Path:
    """A ServiceAccount with the shipped operator rules (from the other RBAC test), as a
    kubeconfig; each replica gets its own, so the audit log tells them apart."""
    rules = [
        {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["gpuinventory.io"],
            "resources": ["gpunodes", "gpuinventories"],
            "verbs": ["get", "list", "watch", "create"],
        },
        {
            "apiGroups": ["gpuinventory.io"],
            "resources": ["gpunodes/status", "gpuinventories/status"],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        {
            "apiGroups": ["resource.k8s.io"],
            "resources": ["resourceslices", "resourceclaims", "deviceclasses"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        },
    ]
    bind_cluster_role(api, namespace, name, f"{namespace}-{name}", rules)
    return plane.serviceaccount_kubeconfig(namespace, name)


def writes(
    plane: ControlPlane, user: str, *, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Every write request of `user` to our objects, from the audit log."""
    found = []
    for event in plane.audit_events():
        ref = event.get("objectRef") or {}
        if event["user"]["username"] != user or ref.get("resource") not in OURS:
            continue
        if event["verb"] not in ("create", "update", "patch", "delete"):
            continue
        if since is not None and _time(event["requestReceivedTimestamp"]) <= since:
            continue
        found.append(event)
    return found


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sa(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


class Churn:
    """Creates a GPU pod every 0.2 s, so a leader always has something to write."""

    def __init__(self, kube: Any, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            index += 1
            self.kube.quietly(
                lambda i=index: self.kube.create_pod(
                    make_pod(f"churn-{i}", namespace=self.namespace, node="n1", gpus=1)
                )
            )
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_a_leader_frozen_past_its_lease_writes_nothing_after_the_takeover(
    start_operator: Callable[..., Any], kube: Any, namespace: str, control_plane: ControlPlane
) -> None:
    kube.create_node(make_node("n1", gpus=1000))
    first = start_operator(
        kubeconfig=account(control_plane, kube.api, namespace, "op-a"),
        args=("--lease-namespace", namespace, "--identity", "a"),
        env=FAST_LEASE,
    )
    eventually(lambda: equals(first.metric(LEADER), 1.0), timeout=30, what="a to lead")
    second = start_operator(
        kubeconfig=account(control_plane, kube.api, namespace, "op-b"),
        args=("--lease-namespace", namespace, "--identity", "b"),
        env=FAST_LEASE,
    )
    churn = Churn(kube, namespace)
    try:
        kube.wait_for(lambda s: equals(s["summary"]["nodes"], 1), timeout=30)
        time.sleep(2)  # a is writing the churn
        assert writes(control_plane, sa(namespace, "op-a")), "a never wrote; nothing to prove"
        first.pause()
        eventually(lambda: equals(second.metric(LEADER), 1.0), timeout=30, what="b to take over")
        lease = client.CoordinationV1Api(kube.api).read_namespaced_lease(
            "gpu-inventory-operator", namespace
        )
        assert lease.spec.holder_identity == "b"
        taken = lease.spec.acquire_time
        time.sleep(3)
        first.resume()  # a wakes up with a backlog of events and writes it would like to send
        time.sleep(6)
    finally:
        churn.stop()
    late = writes(control_plane, sa(namespace, "op-a"), since=taken)
    assert late == [], [(e["verb"], e["objectRef"], e["requestReceivedTimestamp"]) for e in late]
    assert writes(control_plane, sa(namespace, "op-b"), since=taken), "b never wrote"
    eventually(lambda: equals(first.metric(LEADER), 0.0), timeout=10, what="a to know it lost")


def test_a_forbidden_write_is_retried_less_and_less_and_recovers(
    start_operator: Callable[..., Any], kube: Any, namespace: str, control_plane: ControlPlane
) -> None:
    """The bug: 60 forbidden PATCHes in 30 s (2/s, in the audit log)."""
    kubeconfig = account(control_plane, kube.api, namespace, "op")
    role = f"{namespace}-op"
    rbac = client.RbacAuthorizationV1Api(kube.api)
    rules = rbac.read_cluster_role(role).rules
    for rule in rules:
        if "gpunodes/status" in rule.resources:
            rule.resources = ["gpuinventories/status"]  # patching GPUNode status is forbidden
    rbac.patch_cluster_role(role, {"rules": rules})
    kube.create_node(make_node("n1", gpus=8))
    operator = start_operator(kubeconfig=kubeconfig)
    churn = Churn(kube, namespace)  # every pod changes n1's view: a write is always wanted
    try:
        kube.wait_for(
            lambda s: equals(kube.condition(s, "Stalled"), ("True", "Forbidden")),
            timeout=30,
            what="Stalled=Forbidden",
        )
        time.sleep(20)
        refused = [
            e
            for e in writes(control_plane, sa(namespace, "op"))
            if e["objectRef"].get("subresource") == "status"
            and e["objectRef"]["resource"] == "gpunodes"
        ]
        assert all(e["responseStatus"]["code"] == 403 for e in refused)
        assert 3 <= len(refused) <= 6, f"{len(refused)} forbidden PATCHes in about 20 s"
        rbac.patch_cluster_role(
            role,
            {
                "rules": [
                    *rules,
                    {
                        "apiGroups": ["gpuinventory.io"],
                        "resources": ["gpunodes/status"],
                        "verbs": ["patch"],
                    },
                ]
            },
        )
        kube.wait_for(
            lambda s: equals(kube.condition(s, "Stalled"), ("False", "NotStalled")),
            timeout=45,
            what="recovery within one backoff once RBAC allows the write",
        )
    finally:
        churn.stop()
    assert "refused to patch gpunodes/status (Forbidden)" in operator.log()
    eventually(lambda: kube.view("n1"), timeout=20, what="the view written at last")
