"""Completeness comes from the listing itself: slow pages only delay `Ready`, and a relist after an
outage is applied whole. The API server is real; a proxy in front of it slows LIST pages."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from gpu_inventory.testing.builders import make_node, make_pod
from gpu_inventory.testing.controlplane import ControlPlane
from gpu_inventory.testing.faultproxy import FaultProxy, Rule
from gpu_inventory.testing.wait import equals

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


class Totals:
    """Every `summary.allocated` the CR shows with Ready=True, seen by a watch of our own."""

    def __init__(self, custom: client.CustomObjectsApi) -> None:
        self.custom = custom
        self.seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.seen

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    "gpuinventory.io",
                    "v1alpha1",
                    "gpuinventories",
                    timeout_seconds=5,
                )
                for event in stream:
                    status = event["object"].get("status") or {}
                    ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
                    if ready and ready[0]["status"] == "True":
                        self.seen.append(status["summary"]["allocated"])
                    if self._stop.is_set():
                        return
            except Exception:  # the API server may restart under this watch
                time.sleep(0.2)


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
    totals = Totals(kube.custom)
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
    assert set(totals.stop()) == {40}, "a Ready status showed part of the listing"


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
    totals = Totals(kube.custom)
    proxied.proxy.rules.append(slow_pod_pages(2.0))  # the relist's pages arrive slowly too
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
    seen = totals.stop()
    assert set(seen) <= {30, 38}, f"published totals that never existed: {sorted(set(seen))}"
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
