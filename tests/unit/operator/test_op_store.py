"""The projection store: incremental per-node sums, what changed, listings, relists and sweeps."""

from __future__ import annotations

from typing import Any

from gpu_inventory.operator import projections
from gpu_inventory.operator.projections import LabelFilter, PodProjection
from gpu_inventory.operator.store import Kind, Projections
from gpu_inventory.testing.builders import make_node

GPU = "nvidia.com/gpu"
MIG = "nvidia.com/mig-1g.10gb"


def pod(node: str, gpus: int = 1, *, counted: bool = True) -> PodProjection:
    return PodProjection(node, counted, ((GPU, gpus),) if gpus else ())


def synced_store() -> Projections:
    store = Projections(now=0.0)
    for kind in Kind:
        store.expect(kind, False)
    store.take_changes()
    return store


def test_pod_add_update_delete_adjust_the_node_sums() -> None:
    store = synced_store()
    store.pod_event("a", pod("n1", 2), listing=False, now=1.0)
    store.pod_event("b", PodProjection("n1", True, ((GPU, 1), (MIG, 3))), listing=False, now=1.0)
    store.pod_event("c", pod("n2", 4), listing=False, now=1.0)
    assert store.allocated == {"n1": {GPU: 3, MIG: 3}, "n2": {GPU: 4}}
    store.pod_event("b", None, listing=False, now=2.0)
    assert store.allocated == {"n1": {GPU: 2}, "n2": {GPU: 4}}
    store.pod_event("a", None, listing=False, now=2.0)
    assert store.allocated == {"n2": {GPU: 4}}
    assert store.pods_on == {"n2": 1}


def test_a_pod_that_stops_counting_leaves_its_node() -> None:
    store = synced_store()
    store.pod_event("a", pod("n1", 2), listing=False, now=1.0)
    store.pod_event("a", pod("n1", 2, counted=False), listing=False, now=2.0)
    assert store.allocated == {}
    assert store.pods == {}


def test_pods_that_hold_no_gpu_are_not_kept() -> None:
    store = synced_store()
    assert not store.pod_event("cpu-only", pod("n1", 0), listing=False, now=1.0)
    assert store.pods == {}
    assert not store.dirty


def test_changes_name_the_nodes_touched_and_the_first_pod_event_time() -> None:
    store = synced_store()
    store.pod_event("a", pod("n1"), listing=False, now=5.0)
    store.pod_event("b", pod("n2"), listing=False, now=6.0)
    changes = store.take_changes()
    assert (changes.inventory, changes.nodes, changes.first_pod_event) == (
        True,
        frozenset({"n1", "n2"}),
        5.0,
    )
    assert not store.dirty


def test_an_event_that_changes_nothing_marks_nothing() -> None:
    store = synced_store()
    store.pod_event("a", pod("n1"), listing=False, now=1.0)
    store.take_changes()
    assert not store.pod_event("a", pod("n1"), listing=False, now=2.0)
    assert not store.dirty


def test_restore_puts_back_what_a_failed_write_did_not_reflect() -> None:
    store = synced_store()
    store.pod_event("a", pod("n1"), listing=False, now=5.0)
    changes = store.take_changes()
    store.pod_event("b", pod("n2"), listing=False, now=7.0)
    store.restore(changes)
    again = store.take_changes()
    assert again.nodes == {"n1", "n2"}
    assert again.first_pod_event == 5.0


def test_a_skipped_pod_is_remembered_and_never_summed() -> None:
    store = synced_store()
    store.pod_skipped("bad", listing=False, now=1.0)
    assert store.skipped_pods == {"bad"}
    assert store.allocated == {}
    store.pod_event("bad", None, listing=False, now=2.0)  # deleted
    assert store.skipped_pods == set()


def test_a_kubelet_report_that_moves_nothing_we_keep_is_no_change() -> None:
    store = synced_store()
    body = make_node("n1", gpus=1)
    body["metadata"].update(uid="u", resourceVersion="5")
    store.node_event("n1", "u", projections.project_node(body, store.labels), listing=False, now=1)
    store.take_changes()
    body["metadata"]["resourceVersion"] = "6"
    body["metadata"].setdefault("annotations", {})["node.alpha.kubernetes.io/ttl"] = "0"
    assert not store.node_event(
        "n1", "u", projections.project_node(body, store.labels), listing=False, now=2
    )
    assert not store.dirty
    assert store.nodes["n1"].resource_version == "6"  # what a later refresh compares with


def test_our_own_gpunode_status_echoing_back_moves_no_inventory_number() -> None:
    store = synced_store()
    body: dict[str, Any] = {"metadata": {"name": "n1", "uid": "g1"}, "status": {}}
    store.gpunode_event("n1", "g1", projections.project_gpunode(body), listing=False, now=1)
    store.take_changes()
    body["status"] = {"kubernetes": {"allocated": 1}}
    assert store.gpunode_written(projections.project_gpunode(body))
    changes = store.take_changes()
    assert (changes.inventory, changes.nodes) == (False, frozenset({"n1"}))


def test_the_deleted_event_of_a_same_named_predecessor_keeps_the_new_node() -> None:
    store = synced_store()
    new = projections.project_node(
        {"metadata": {"name": "n1", "uid": "new"}, "status": {}}, LabelFilter()
    )
    store.node_event("n1", "new", new, listing=False, now=1.0)
    assert not store.node_event("n1", "old", None, listing=False, now=2.0)
    assert store.nodes["n1"] is new


# --- listings -----------------------------------------------------------------------------------


def test_a_kind_is_synced_once_its_listing_goes_quiet() -> None:
    store = Projections(now=0.0)
    for kind in (Kind.NODES, Kind.GPUNODES, Kind.INVENTORY):
        store.expect(kind, False)
    store.expect(Kind.PODS, True)
    store.pod_event("a", pod("n1"), listing=True, now=1.0)
    assert store.settle(now=1.5, quiet=1.0, timeout=60) == []
    assert not store.synced()
    store.settle(now=2.1, quiet=1.0, timeout=60)
    assert store.synced()


def test_a_kind_probed_non_empty_waits_for_its_listing_until_the_timeout() -> None:
    store = Projections(now=0.0)
    store.expect(Kind.PODS, True)
    store.settle(now=30.0, quiet=1.0, timeout=60)
    assert not store.synced(Kind.PODS)
    store.settle(now=61.0, quiet=1.0, timeout=60)
    assert store.synced(Kind.PODS)


def test_a_watch_event_ends_the_listing_of_its_kind_at_once() -> None:
    store = Projections(now=0.0)
    store.expect(Kind.PODS, True)
    store.pod_event("a", pod("n1"), listing=True, now=1.0)
    store.pod_event("b", pod("n1"), listing=False, now=1.1)
    assert store.synced(Kind.PODS)


def test_after_a_relist_the_sweep_drops_only_what_is_gone_and_untouched() -> None:
    store = synced_store()
    for key in ("kept", "gone", "touched"):
        store.pod_event(key, pod("n1"), listing=False, now=1.0)
    store.pod_event("kept", pod("n1"), listing=True, now=10.0)  # relisted
    assert store.settle(now=10.5, quiet=1.0, timeout=60) == []
    assert store.settle(now=11.5, quiet=1.0, timeout=60) == [Kind.PODS]
    store.begin_sweep(Kind.PODS)
    store.pod_event("touched", pod("n1", 2), listing=False, now=11.6)  # after the LIST began
    assert store.sweep(Kind.PODS, {"kept"}, now=12.0) == ["gone"]
    assert set(store.pods) == {"kept", "touched"}
    assert store.allocated == {"n1": {GPU: 3}}


def test_a_skipped_pod_gone_during_a_relist_is_swept() -> None:
    store = synced_store()
    store.pod_skipped("bad", listing=False, now=1.0)
    store.pod_event("ok", pod("n1"), listing=True, now=10.0)  # relisted; "bad" is not
    assert store.settle(now=11.5, quiet=1.0, timeout=60) == [Kind.PODS]
    store.begin_sweep(Kind.PODS)
    assert store.sweep(Kind.PODS, {"ok"}, now=12.0) == ["bad"]
    assert store.skipped_pods == set()


def test_narrowing_the_label_prefixes_refilters_in_place() -> None:
    store = synced_store()
    body = make_node("n1", gpus=1, labels={"topology.kubernetes.io/zone": "z"})
    body["metadata"]["uid"] = "u"
    store.node_event("n1", "u", projections.project_node(body, store.labels), listing=False, now=1)
    assert store.set_label_filter(LabelFilter(("topology.kubernetes.io/",)))
    assert store.nodes["n1"].labels == (("topology.kubernetes.io/zone", "z"),)


def test_widening_the_label_prefixes_asks_for_a_relist_and_takes_the_same_version() -> None:
    store = synced_store()
    body = make_node("n1", gpus=1, labels={"team": "ml"})
    body["metadata"].update(uid="u", resourceVersion="5")
    store.node_event("n1", "u", projections.project_node(body, store.labels), listing=False, now=1)
    wider = LabelFilter((*store.labels.prefixes, "team"))
    assert not store.set_label_filter(wider)
    assert store.refresh_node(projections.project_node(body, wider))
    assert ("team", "ml") in store.nodes["n1"].labels
    body["metadata"]["resourceVersion"] = "4"  # an older listing: not taken
    assert not store.refresh_node(projections.project_node(body, LabelFilter(("x",))))
