"""Faults between the operator and a real API server, injected by a proxy in front of it: slow
LIST pages only delay `Ready`, a relist after an outage is applied whole, and an inventory that
cannot be written does not hold back the GPUNodes."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.testing.builders import make_node, make_pod
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.faultproxy import FaultProxy, Rule
from gpu_inventory.testing.inventorywatch import InventoryWatch
from gpu_inventory.testing.wait import equals, eventually, holds

pytestmark = pytest.mark.cluster

PAGE = {"GPU_INVENTORY_LIST_CHUNK_SIZE": "10"}
"""Pages of 10 pods: a listing of 40 pods takes four pages, each slowed by the proxy."""


@dataclasses.dataclass(frozen=True)
class Proxied:
    """The fault proxy, and a kubeconfig through it for a ServiceAccount bound to
    cluster-admin (a bearer token, which the proxy forwards as it is)."""

    proxy: FaultProxy
    kubeconfig: Path


@pytest.fixture
def proxied(cluster: ControlPlane, k8s: client.ApiClient, namespace: str) -> Iterator[Proxied]:
    client.CoreV1Api(k8s).create_namespaced_service_account(
        namespace, {"metadata": {"name": "operator"}}
    )
    binding = f"operator-admin-{namespace}"
    rbac = client.RbacAuthorizationV1Api(k8s)
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": binding},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}],
        }
    )
    token = cluster.serviceaccount_token(namespace, "operator")
    try:
        with FaultProxy(cluster) as proxy:
            yield Proxied(proxy, proxy.kubeconfig(token))
    finally:
        rbac.delete_cluster_role_binding(binding)


def allocated(status: dict[str, Any]) -> int:
    return int(status["summary"]["allocated"])


def slow_pod_pages(seconds: float) -> Rule:
    return Rule(lambda r: r.is_list("pods") and r.continues, delay=seconds)


def test_slow_pages_delay_ready_and_never_make_it_lie(
    start_operator: Any, kube: Any, namespace: str, proxied: Proxied
) -> None:
    """The bug: completeness was guessed from a 1.5 s quiet gap, so one slow page published
    the first `Ready` from part of the cluster."""
    kube.create_node(make_node("n1", gpus=100))
    for index in range(40):
        kube.create_pod(make_pod(f"p{index:02d}", namespace=namespace, node="n1", gpus=1))
    slow = slow_pod_pages(3.0)  # twice the old quiet gap, three times in a row
    proxied.proxy.rules.append(slow)
    totals = InventoryWatch(kube.api)
    began = time.monotonic()
    start_operator(kubeconfig=proxied.kubeconfig, env=PAGE)
    kube.wait_for(
        lambda s: equals(kube.condition(s, "Ready"), ("True", "InventoryCurrent")),
        timeout=60,
        what="Ready after the slow listing",
    )
    took = time.monotonic() - began
    assert slow.hits >= 3, "the pages were not slowed; the test proved nothing"
    assert took >= 9, f"Ready after {took:.1f}s, before the last slow page could arrive"
    totals.stop()
    assert set(totals.ready_totals()) == {40}, "a Ready status showed part of the listing"


def test_a_relist_after_an_outage_is_applied_whole(
    start_operator: Any, kube: Any, namespace: str, proxied: Proxied
) -> None:
    """The measured bug: kube-apiserver restarted while pod changes queued up; the relist
    counted the new pods at once and kept the deleted ones until its sweep, publishing
    `allocated: 338` (truth 279), a total that never existed, with Ready=True."""
    kube.create_node(make_node("n1", gpus=1000))
    for index in range(30):
        kube.create_pod(make_pod(f"old{index:02d}", namespace=namespace, node="n1", gpus=1))
    operator = start_operator(kubeconfig=proxied.kubeconfig, env=PAGE)
    kube.wait_for(lambda s: equals((kube.condition(s, "Ready")[0], allocated(s)), ("True", 30)))
    totals = InventoryWatch(kube.api)
    slow = slow_pod_pages(2.0)  # the relist's pages arrive slowly too
    proxied.proxy.rules.append(slow)
    operator.pause()  # frozen: it misses every event while the history is compacted away
    try:
        proxied.proxy.plane.restart_apiserver()
        for index in range(12):
            kube.core.delete_namespaced_pod(f"old{index:02d}", namespace, grace_period_seconds=0)
        for index in range(20):
            kube.create_pod(make_pod(f"new{index:02d}", namespace=namespace, node="n1", gpus=1))
        compact_etcd(proxied.proxy.plane)
    finally:
        operator.resume()
    kube.wait_for(
        lambda s: equals((kube.condition(s, "Ready")[0], allocated(s)), ("True", 38)),
        timeout=90,
        what="the relist to be applied",
    )
    totals.stop()
    assert slow.hits >= 3, "the relist's pages were not slowed; the test proved nothing"
    relisting = [s for s in totals.statuses if kube.condition(s, "Ready") == ("False", "Relisting")]
    assert relisting, "no relist was announced; was there one?"
    assert {allocated(s) for s in relisting} == {30}  # the old numbers, said to be old
    seen = set(totals.ready_totals())
    assert seen <= {30, 38}, f"published totals that never existed: {sorted(seen)}"
    kube.create_pod(make_pod("after", namespace=namespace, node="n1", gpus=4))
    kube.wait_for(lambda s: equals(allocated(s), 42), timeout=30, what="watching again")
    assert operator.alive()


def compact_etcd(plane: ControlPlane) -> None:
    """Compact etcd's history up to now (what the API server does every 5 minutes)."""
    base = plane.components["etcd"].health_url.removesuffix("/health")

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    revision = int(post("/v3/kv/range", {"key": "YQ=="})["header"]["revision"])
    post("/v3/kv/compaction", {"revision": revision, "physical": True})


def test_gpunode_writes_go_on_while_the_inventory_cannot_be_written(
    start_operator: Any, kube: Any, namespace: str, proxied: Proxied
) -> None:
    """The bug: any 5xx (etcd's "request is too large" among them) retried the inventory
    forever and starved the GPUNode writes behind it."""
    failing = Rule(lambda r: r.method == "PATCH" and "/gpuinventories/" in r.path, status=500)
    proxied.proxy.rules.append(failing)
    kube.create_node(make_node("n1", gpus=8))
    kube.create_pod(make_pod("p", namespace=namespace, node="n1", gpus=3))
    operator = start_operator(kubeconfig=proxied.kubeconfig)
    view = eventually(lambda: kube.view("n1", allocated=3), timeout=30, what="n1's view")
    assert view["gpuResources"][0]["allocated"] == 3
    eventually(lambda: holds(failing.hits >= 3), timeout=30, what="inventory writes failing")
    kube.create_pod(make_pod("q", namespace=namespace, node="n1", gpus=2))
    eventually(lambda: kube.view("n1", allocated=5), timeout=30, what="n1's view to follow")
    proxied.proxy.rules.remove(failing)
    kube.wait_for(
        lambda s: equals((kube.condition(s, "Ready")[0], allocated(s)), ("True", 5)),
        timeout=60,
        what="the inventory to catch up once the API server answers",
    )
    assert operator.alive()
