"""The store: per-node sums kept incrementally, listings applied whole, what changed recorded for
each writer, and a spec change that reshapes projections asking for a refresh."""

from __future__ import annotations

from typing import Any

from gpu_inventory.api.models import GPUInventorySpec
from gpu_inventory.operator import feeding
from gpu_inventory.operator.store import Kind, Phase, Store
from gpu_inventory.operator.tables import Stream
from gpu_inventory.testing.builders import make_node, make_pod
from gpu_inventory.testing.streams import feed, listing, raw, synced_store, watch, with_uid

GPU = "nvidia.com/gpu"


def pod(name: str, node: str, gpus: int, **kwargs: Any) -> dict[str, Any]:
    return with_uid(make_pod(name, node=node, gpus=gpus, **kwargs))


def inventory(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "cluster", "uid": "inv", "generation": 1, "resourceVersion": "1"},
        "spec": GPUInventorySpec(**spec).to_wire(),
    }


def test_the_phase_is_indexing_until_every_kind_is_listed() -> None:
    store = Store()
    assert store.phase() is Phase.INDEXING
    listing(store, Kind.NODES, [make_node("n1", gpus=8)])
    listing(store, Kind.PODS, [])
    listing(store, Kind.GPUNODES, [])
    assert store.phase() is Phase.INDEXING
    assert store.nodes.live  # listed kinds are complete on their own
    listing(store, Kind.INVENTORY, [])
    assert store.phase() is Phase.CURRENT


def test_sums_follow_pod_events_per_node() -> None:
    store = synced_store(nodes=[make_node("n1", gpus=8), make_node("n2", gpus=8)])
    store.take_facts_dirty()
    watch(store, Kind.PODS, "ADDED", pod("a", "n1", 2))
    watch(store, Kind.PODS, "ADDED", pod("b", "n1", 1))
    watch(store, Kind.PODS, "ADDED", pod("c", "n2", 4))
    assert store.allocated == {"n1": {GPU: 3}, "n2": {GPU: 4}}
    assert store.take_facts_dirty() == {"n1", "n2"}
    watch(store, Kind.PODS, "DELETED", pod("a", "n1", 2))
    watch(store, Kind.PODS, "MODIFIED", pod("c", "n2", 4, phase="Succeeded"))
    assert store.allocated == {"n1": {GPU: 1}}
    assert store.take_views_dirty() == {"n1", "n2"}


def test_pods_without_gpus_are_not_kept() -> None:
    store = synced_store(pods=[pod("cpu", "n1", 0), pod("gpu", "n1", 1)])
    assert len(store.pods.live) == 1


def test_a_relist_applies_whole_and_recomputes_the_sums() -> None:
    pods = [pod(f"p{i}", "n1", 1) for i in range(10)]
    store = synced_store(nodes=[make_node("n1", gpus=16)], pods=pods)
    assert store.allocated == {"n1": {GPU: 10}}
    relisted = pods[4:] + [pod(f"new{i}", "n1", 1) for i in range(3)]
    for body in relisted:  # the relist, event by event, with the numbers watched meanwhile
        feed(store, Kind.PODS, raw(None, body, Stream(2, listing=True)))
        assert store.allocated == {"n1": {GPU: 10}}  # old, complete; never a mix
        assert store.phase() is Phase.RELISTING
    feeding.listed(store, "pods", 2, len(relisted), now=0)
    assert store.allocated == {"n1": {GPU: 9}}
    assert store.phase() is Phase.CURRENT


def test_malformed_pods_are_counted_and_named() -> None:
    bad = pod("bad", "n1", 0, resources={GPU: "lots", "nvidia.com/mig-1g.10gb": "1"})
    store = synced_store(nodes=[make_node("n1", gpus=8)], pods=[bad, pod("ok", "n1", 1)])
    assert store.skipped_pods() == 1
    assert store.allocated == {"n1": {GPU: 1, "nvidia.com/mig-1g.10gb": 1}}
    (why,) = store.malformed_pods()
    assert "pod default/bad" in why
    assert "nvidia.com/gpu" in why


def test_a_spec_change_of_resource_names_asks_to_read_pods_and_nodes_again() -> None:
    store = synced_store(inventory=inventory(), nodes=[make_node("n1", gpus=1)])
    assert store.phase() is Phase.CURRENT
    changed = inventory(resource_names=["nvidia.com/gpu", "amd.com/gpu"])
    changed["metadata"].update(generation=2, resourceVersion="2")
    watch(store, Kind.INVENTORY, "MODIFIED", changed)
    assert store.pending_refresh == {Kind.PODS, Kind.NODES}
    assert store.phase() is Phase.REFRESHING
    assert store.projector.matcher.matches("amd.com/gpu")


def test_a_spec_change_of_label_prefixes_asks_to_read_nodes_again() -> None:
    store = synced_store(inventory=inventory())
    changed = inventory(label_prefixes=["team"])
    changed["metadata"].update(generation=2, resourceVersion="2")
    watch(store, Kind.INVENTORY, "MODIFIED", changed)
    assert store.pending_refresh == {Kind.NODES}


def test_a_late_deleted_of_a_replaced_inventory_removes_nothing() -> None:
    store = synced_store(inventory=inventory())
    old = inventory()
    old["metadata"]["uid"] = "the-old-one"
    watch(store, Kind.INVENTORY, "DELETED", old)
    assert store.inventory is not None
    assert store.inventory.uid == "inv"


def test_our_own_view_echoing_back_moves_no_inventory_number() -> None:
    gpunode = {"metadata": {"name": "n1", "uid": "g1", "resourceVersion": "1"}}
    store = synced_store(nodes=[make_node("n1", gpus=1)], gpunodes=[gpunode])
    store.take_facts_dirty()
    echo = {
        "metadata": {"name": "n1", "uid": "g1", "resourceVersion": "2"},
        "status": {"kubernetes": {"allocated": 0}},
    }
    watch(store, Kind.GPUNODES, "MODIFIED", echo)
    assert store.take_facts_dirty() == set()
    assert store.take_views_dirty() == {"n1"}
