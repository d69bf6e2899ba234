"""Least privilege and high availability against a real API server with RBAC on.

- The operator works with exactly the ClusterRole shipped in manifests/ (rendered from the chart);
  take one permission away and the inventory says Stalled=Forbidden (and recovers).
- Two replicas with a Lease: only the holder writes; when it stops, the standby takes over.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from gpu_inventory.testing.binaries import REPO_ROOT
from gpu_inventory.testing.builders import make_node, make_pod
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.rbac import bind_cluster_role
from gpu_inventory.testing.wait import equals, eventually

pytestmark = pytest.mark.cluster

LEADER = "gpu_inventory_operator_leader"


def shipped_rules() -> list[dict[str, Any]]:
    documents = yaml.safe_load_all((REPO_ROOT / "manifests" / "gpu-inventory.yaml").read_text())
    role = next(
        d
        for d in documents
        if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == "gpu-inventory-operator"
    )
    return list(role["rules"])


def without(rules: list[dict[str, Any]], resource: str, verb: str) -> list[dict[str, Any]]:
    trimmed = copy.deepcopy(rules)
    for rule in trimmed:
        if resource in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return [r for r in trimmed if r["verbs"]]


@pytest.fixture
def operator_account(
    cluster: ControlPlane, k8s: client.ApiClient, namespace: str
) -> Iterator[tuple[str, Any]]:
    """A ServiceAccount bound to a ClusterRole the test can edit; yields (role name, kubeconfig)."""
    rbac = client.RbacAuthorizationV1Api(k8s)
    name = f"gpu-inventory-operator-test-{uuid.uuid4().hex[:6]}"
    bind_cluster_role(k8s, namespace, "operator", name, shipped_rules())
    try:
        yield name, cluster.serviceaccount_kubeconfig(namespace, "operator")
    finally:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


def test_without_rbac_for_dra_the_operator_counts_device_plugin_gpus_and_says_why(
    start_operator: Any, kube: Any, operator_account: tuple[str, Any]
) -> None:
    """The shipped rules without resource.k8s.io (an older chart, or rules copied by hand) on
    a cluster that serves DRA: no watch stuck on 403s, a current inventory whose Degraded
    condition says DRA's GPUs are left out and which verbs are missing, one warning."""
    role, kubeconfig = operator_account
    rules = [r for r in shipped_rules() if "resource.k8s.io" not in r["apiGroups"]]
    assert len(rules) == len(shipped_rules()) - 1
    client.RbacAuthorizationV1Api(kube.api).patch_cluster_role(role, {"rules": rules})
    kube.create_node(make_node("n1", gpus=2))
    operator = start_operator(kubeconfig=kubeconfig)

    def current(status: dict[str, Any]) -> None:
        assert kube.condition(status, "Ready") == ("True", "InventoryCurrent")
        assert kube.condition(status, "Degraded") == ("True", "DRANotCounted")
        assert status["summary"]["capacity"] == 2

    status = kube.wait_for(current, timeout=30, what="a current inventory without DRA's watches")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "list deviceclasses" in degraded["message"], degraded
    log = operator.log()
    assert log.count("RBAC does not let this operator") == 1, log
    assert "list deviceclasses, watch deviceclasses, list resourceclaims" in log, log
    assert "[ERROR" not in log, log


def test_shipped_rbac_suffices_and_a_missing_permission_stalls_the_inventory(
    start_operator: Any, kube: Any, namespace: str, operator_account: tuple[str, Any]
) -> None:
    role, kubeconfig = operator_account
    rbac = client.RbacAuthorizationV1Api(kube.api)
    rbac.patch_cluster_role(role, {"rules": without(shipped_rules(), "gpunodes/status", "patch")})
    kube.create_node(make_node("n1", gpus=4))
    kube.create_pod(make_pod("p", namespace=namespace, node="n1", gpus=1))
    operator = start_operator(kubeconfig=kubeconfig)

    def stalled(status: dict[str, Any]) -> None:
        assert status["summary"]["allocated"] == 1  # what it may write, it still writes
        assert kube.condition(status, "Stalled") == ("True", "Forbidden")
        assert kube.condition(status, "Ready") == ("False", "WriteFailed")
        message = next(c for c in status["conditions"] if c["type"] == "Stalled")["message"]
        assert "patch gpunodes/status" in message

    kube.wait_for(stalled, timeout=30, what="Stalled=Forbidden")
    assert "refused to patch gpunodes/status (Forbidden)" in operator.log()
    rbac.patch_cluster_role(role, {"rules": shipped_rules()})

    def recovered(status: dict[str, Any]) -> None:
        assert kube.condition(status, "Stalled") == ("False", "NotStalled")
        assert kube.condition(status, "Ready") == ("True", "InventoryCurrent")

    kube.wait_for(recovered, timeout=30, what="recovery once RBAC allows the write")
    view = eventually(lambda: kube.view("n1"), timeout=20, what="GPUNode status.kubernetes")
    assert view["allocated"] == 1


def test_two_replicas_one_writer_and_failover(
    start_operator: Any, kube: Any, namespace: str
) -> None:
    fast_lease = {
        "GPU_INVENTORY_LEASE_DURATION": "4",
        "GPU_INVENTORY_LEASE_RENEW_DEADLINE": "3",
        "GPU_INVENTORY_LEASE_RENEW_INTERVAL": "1",
    }
    args = ("--lease-namespace", namespace)
    first = start_operator(args=(*args, "--identity", "first"), env=fast_lease)
    kube.create_node(make_node("n1", gpus=4))
    kube.wait_for(lambda s: equals(s["summary"]["nodes"], 1), timeout=30)
    second = start_operator(args=(*args, "--identity", "second"), env=fast_lease)
    eventually(
        lambda: equals((first.metric(LEADER), second.metric(LEADER)), (1.0, 0.0)),
        timeout=20,
        what="one leader and one standby",
    )
    lease = client.CoordinationV1Api(kube.api).read_namespaced_lease(
        "gpu-inventory-operator", namespace
    )
    assert lease.spec.holder_identity == "first"
    writes = second.metric(
        "gpu_inventory_operator_status_writes_total", kind="GPUInventory", result="ok"
    )
    assert writes == 0, "the standby wrote"

    first.stop()  # releases the Lease on the way out
    eventually(lambda: equals(second.metric(LEADER), 1.0), timeout=20, what="the takeover")
    kube.create_pod(make_pod("p", namespace=namespace, node="n1", gpus=3))
    kube.wait_for(
        lambda s: equals(s["summary"]["allocated"], 3), timeout=20, what="the new leader to write"
    )


def test_a_start_with_the_shipped_rbac_logs_no_error(
    start_operator: Any, kube: Any, namespace: str, operator_account: tuple[str, Any]
) -> None:
    """The bug: kopf logged 9 ERROR lines at every start (forbidden to list CRDs, then "Not
    enough permissions to watch"). kopf now scans nothing the operator does not name."""
    _role, kubeconfig = operator_account
    kube.create_node(make_node("n1", gpus=2))
    kube.create_pod(make_pod("p", namespace=namespace, node="n1", gpus=1))
    operator = start_operator(kubeconfig=kubeconfig)
    kube.wait_for(
        lambda s: equals(
            (kube.condition(s, "Ready"), s["summary"]["allocated"]),
            (("True", "InventoryCurrent"), 1),
        ),
        timeout=30,
    )
    eventually(lambda: kube.view("n1", allocated=1), timeout=20, what="n1's view")
    time.sleep(5)  # kopf's scanning errors came in the first seconds, then every minute
    errors = [line for line in operator.log().splitlines() if "[ERROR" in line]
    assert errors == []
