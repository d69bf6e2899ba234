"""The watch cache applies LIST results and watch events (driven directly, no API server)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gpu_inventory.mcpserver import views
from gpu_inventory.mcpserver.cache import INVENTORY, NODES, InventoryCache
from gpu_inventory.testing import samples


def wire(model: Any, resource_version: str = "1") -> dict[str, Any]:
    body: dict[str, Any] = model.to_wire()
    body["metadata"]["resourceVersion"] = resource_version
    return body


@pytest.fixture
def cache() -> InventoryCache:
    return InventoryCache(None)


def test_nothing_is_synced_until_both_kinds_are_listed(cache: InventoryCache) -> None:
    assert cache.snapshot().synced is False
    cache.replace_all(NODES, [])
    assert cache.snapshot().synced is False
    cache.replace_all(INVENTORY, [])

    snapshot = cache.snapshot()
    assert (snapshot.synced, snapshot.connected, snapshot.inventory) == (True, True, None)


def test_list_then_events_keep_the_nodes_current(cache: InventoryCache) -> None:
    cache.replace_all(NODES, [wire(samples.gpunode("a", gpus=1))])
    cache.apply_event(NODES, "ADDED", wire(samples.gpunode("b", gpus=2)))
    cache.apply_event(NODES, "MODIFIED", wire(samples.gpunode("a", gpus=4), "2"))
    cache.apply_event(NODES, "DELETED", wire(samples.gpunode("b", gpus=2)))

    nodes = cache.snapshot().nodes
    assert list(nodes) == ["a"]
    assert nodes["a"].status is not None
    assert len(nodes["a"].status.gpus) == 4


def test_a_relist_drops_nodes_that_vanished_meanwhile(cache: InventoryCache) -> None:
    cache.replace_all(NODES, [wire(samples.gpunode(n)) for n in ("a", "b", "c")])
    cache.replace_all(NODES, [wire(samples.gpunode("b"))])

    assert list(cache.snapshot().nodes) == ["b"]


def test_an_earlier_snapshot_never_changes_under_its_reader(cache: InventoryCache) -> None:
    cache.replace_all(NODES, [wire(samples.gpunode("a"))])
    before = cache.snapshot()

    cache.apply_event(NODES, "ADDED", wire(samples.gpunode("b")))
    assert list(before.nodes) == ["a"]
    assert list(cache.snapshot().nodes) == ["a", "b"]


def test_an_invalid_gpunode_is_logged_and_left_out(
    cache: InventoryCache, caplog: pytest.LogCaptureFixture
) -> None:
    bad = wire(samples.gpunode("bad", gpus=1))
    bad["status"]["gpus"][0]["temperature"] = "hot"

    with caplog.at_level(logging.WARNING):
        cache.replace_all(NODES, [bad, wire(samples.gpunode("good"))])
    assert list(cache.snapshot().nodes) == ["good"]
    assert "GPUNode 'bad' is invalid" in caplog.text


def test_an_answer_warns_about_every_gpunode_it_could_not_read(cache: InventoryCache) -> None:
    """A malformed GPUNode (an agent of another version, a hand edit) leaves its node with no
    GPUs in the answer: the answer says so rather than looking complete."""
    nodes = [samples.gpunode("bad", gpus=2), samples.gpunode("good", gpus=1)]
    cache.replace_all(INVENTORY, [wire(samples.inventory(nodes))])
    bad = wire(nodes[0])
    bad["status"]["gpus"][0]["temperature"] = "hot"
    cache.replace_all(NODES, [bad, wire(nodes[1])])

    def warnings() -> list[str]:
        answer = views.inventory_answer(
            cache.snapshot(), now=samples.EPOCH, max_staleness_seconds=300
        )
        return answer.warnings

    assert dict(cache.snapshot().invalid_nodes).keys() == {"bad"}
    (warning,) = warnings()
    assert "1 GPUNode could not be read" in warning
    assert "GPUNode 'bad' is invalid: status.gpus.0.temperature" in warning

    cache.apply_event(NODES, "MODIFIED", wire(nodes[0], "2"))  # the agent fixed it
    assert warnings() == []
    cache.apply_event(NODES, "MODIFIED", bad)  # broken again by a watch event
    assert len(warnings()) == 1
    cache.apply_event(NODES, "DELETED", bad)
    assert warnings() == []


def test_an_invalid_inventory_update_keeps_the_last_good_one(cache: InventoryCache) -> None:
    good = samples.inventory([samples.gpunode("a", gpus=2)])
    cache.replace_all(INVENTORY, [wire(good)])
    bad = wire(good, "2")
    bad["status"]["summary"]["gpus"] = -1

    cache.apply_event(INVENTORY, "MODIFIED", bad)
    assert cache.snapshot().inventory == good.model_copy(
        update={"metadata": good.metadata.model_copy(update={"resource_version": "1"})}
    )


def test_an_invalid_inventory_in_a_relist_keeps_the_last_good_one(cache: InventoryCache) -> None:
    good = samples.inventory([samples.gpunode("a", gpus=2)])
    cache.replace_all(INVENTORY, [wire(good)])
    bad = wire(good, "2")
    bad["status"]["summary"]["gpus"] = -1

    cache.replace_all(INVENTORY, [bad])  # after a 410 or an API server restart
    kept = cache.snapshot().inventory
    assert kept is not None, "an invalid CR is not an absent one"
    assert kept.metadata.resource_version == "1"
    cache.replace_all(INVENTORY, [])
    assert cache.snapshot().inventory is None  # really gone


def test_inventory_listeners_hear_content_changes_only(cache: InventoryCache) -> None:
    heard: list[int] = []
    cache.subscribe(lambda: heard.append(1))
    one = samples.inventory([samples.gpunode("a", gpus=2)])
    two = samples.inventory([samples.gpunode("a", gpus=2, allocated=1)])

    cache.replace_all(INVENTORY, [wire(one)])
    cache.apply_event(INVENTORY, "MODIFIED", wire(one, "2"))  # same content, new version
    cache.apply_event(NODES, "ADDED", wire(samples.gpunode("a", gpus=2)))
    assert len(heard) == 1

    cache.apply_event(INVENTORY, "MODIFIED", wire(two, "3"))
    cache.apply_event(INVENTORY, "DELETED", wire(two, "4"))
    assert len(heard) == 3
    assert cache.snapshot().inventory is None


def test_only_the_cluster_inventory_counts(cache: InventoryCache) -> None:
    other = wire(samples.inventory([]))
    other["metadata"]["name"] = "other"

    cache.replace_all(INVENTORY, [other])
    cache.apply_event(INVENTORY, "ADDED", other)
    assert cache.snapshot().inventory is None


def test_an_unsubscribed_listener_is_not_called(cache: InventoryCache) -> None:
    heard: list[int] = []
    unsubscribe = cache.subscribe(lambda: heard.append(1))
    unsubscribe()

    cache.replace_all(INVENTORY, [wire(samples.inventory([]))])
    assert heard == []


def test_a_failing_listener_does_not_stop_the_others(cache: InventoryCache) -> None:
    heard: list[int] = []

    def broken() -> None:
        raise RuntimeError("boom")

    cache.subscribe(broken)
    cache.subscribe(lambda: heard.append(1))
    cache.replace_all(INVENTORY, [wire(samples.inventory([]))])
    assert heard == [1]


def test_a_cache_built_from_models_is_synced_and_never_starts_threads() -> None:
    node = samples.gpunode("a", gpus=1)
    cache = InventoryCache.from_models(samples.inventory([node]), [node])

    cache.start()
    snapshot = cache.snapshot()
    assert (snapshot.synced, snapshot.connected, list(snapshot.nodes)) == (True, True, ["a"])
    cache.stop()
