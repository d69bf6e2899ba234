"""Every write is fenced right before it is sent: no Lease, or too little of it left, and the
request is never made; otherwise it gets no more time than is left before a takeover."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from gpu_inventory.operator.kubeapi import ApiError, FencedError, KubeApi


class Fence:
    def __init__(self, left: float | None) -> None:
        self.left = left

    def write_deadline(self) -> float | None:
        return None if self.left is None else time.monotonic() + self.left


def api_with(fence: Fence) -> tuple[KubeApi, list[dict[str, Any]]]:
    api = KubeApi(client.ApiClient(client.Configuration()), timeout=30, fence=fence)
    sent: list[dict[str, Any]] = []

    def patch(*args: Any, **kwargs: Any) -> dict[str, Any]:
        sent.append(kwargs)
        return {"metadata": {"name": "cluster"}}

    api.custom.patch_cluster_custom_object_status = patch
    api.custom.create_cluster_custom_object = patch
    return api, sent


@pytest.mark.parametrize("left", [None, 0.1])
def test_no_write_without_enough_lease(left: float | None) -> None:
    api, sent = api_with(Fence(left))
    with pytest.raises(FencedError):
        api.patch_inventory_status({"status": {}})
    with pytest.raises(FencedError):
        api.create_gpunode({"metadata": {"name": "n1"}})
    assert sent == []


def test_a_write_gets_no_more_time_than_the_lease_leaves() -> None:
    api, sent = api_with(Fence(4.0))
    api.patch_gpunode_status("n1", {"status": {}})
    (call,) = sent
    assert 3.5 < call["_request_timeout"] <= 4.0


def test_reads_are_not_fenced() -> None:
    api, _ = api_with(Fence(None))

    def get(*args: Any, **kwargs: Any) -> Any:
        raise client.ApiException(status=404, reason="Not Found")

    api.custom.get_cluster_custom_object = get
    assert api.get_inventory() is None


def test_etcd_refusing_the_size_is_a_refusal_not_an_outage() -> None:
    api, _ = api_with(Fence(10.0))

    def patch(*args: Any, **kwargs: Any) -> Any:
        error = client.ApiException(status=500, reason="Internal Server Error")
        error.body = '{"kind":"Status","message":"etcdserver: request is too large","code":500}'
        raise error

    api.custom.patch_cluster_custom_object_status = patch
    with pytest.raises(ApiError) as raised:
        api.patch_inventory_status({"status": {}})
    assert raised.value.too_large
    assert raised.value.refusal == "TooLarge"
