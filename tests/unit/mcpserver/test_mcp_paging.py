"""Paging: every node is reachable, page by page, with an opaque cursor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gpu_inventory.api.models import MAX_NODES, GPUNode
from gpu_inventory.mcpserver import shapes, views
from gpu_inventory.mcpserver.snapshot import Snapshot
from gpu_inventory.testing import samples

NOW = samples.EPOCH + timedelta(minutes=1)


def page(snapshot: Snapshot, **args: Any) -> shapes.InventoryAnswer:
    return views.inventory_answer(snapshot, now=NOW, max_staleness_seconds=300, **args)


def cluster(count: int) -> list[GPUNode]:
    sick = samples.gpu(1, health="Degraded", reasons=["row remapping pending"])
    return [
        samples.gpunode(f"n{i:03d}", gpus=[samples.gpu(0), sick] if i % 3 == 0 else 2)
        for i in range(count)
    ]


def walk(
    snapshot: Snapshot, cursor: str | None = None, **args: Any
) -> list[shapes.InventoryAnswer]:
    pages = [page(snapshot, cursor=cursor, **args)]
    while pages[-1].next_cursor is not None:
        pages.append(page(snapshot, cursor=pages[-1].next_cursor, **args))
        assert len(pages) < 100
    return pages


def names(pages: list[shapes.InventoryAnswer]) -> list[str]:
    return [n.node_name for p in pages for n in p.nodes]


def test_the_default_page_is_small_and_says_more_follow() -> None:
    first = page(samples.snapshot(cluster(200)))

    assert 1 < len(first.nodes) < 200
    assert (first.nodes_matched, first.truncated) == (200, True)
    assert first.next_cursor is not None
    assert first.cluster_summary.total_nodes == 200


def test_walking_the_cursor_reaches_every_node_once_in_order() -> None:
    pages = walk(samples.snapshot(cluster(47)), limit=10)

    assert [len(p.nodes) for p in pages] == [10, 10, 10, 10, 7]
    assert names(pages) == [f"n{i:03d}" for i in range(47)]
    assert pages[-1].next_cursor is None
    assert not pages[-1].truncated
    # The summary is whole on every page.
    assert {p.cluster_summary.total_nodes for p in pages} == {47}


def test_filters_page_too() -> None:
    pages = walk(samples.snapshot(cluster(30)), limit=4, only_unhealthy_or_degraded=True)

    assert names(pages) == [f"n{i:03d}" for i in range(0, 30, 3)]
    assert {p.nodes_matched for p in pages} == {10}


def test_a_node_added_or_removed_between_pages_neither_repeats_nor_skips_others() -> None:
    nodes = cluster(10)
    first = page(samples.snapshot(nodes), limit=5)
    assert names([first]) == [f"n{i:03d}" for i in range(5)]

    changed = [n for n in nodes if n.metadata.name != "n002"] + [samples.gpunode("n004a", gpus=1)]
    rest = walk(samples.snapshot(changed), limit=5, cursor=first.next_cursor)

    assert names(rest) == ["n004a", "n005", "n006", "n007", "n008", "n009"]


def test_the_largest_page_never_asks_for_more_rows_than_the_inventory_holds() -> None:
    assert views.MAX_LIMIT <= MAX_NODES


def test_a_cursor_with_other_filters_is_refused() -> None:
    snapshot = samples.snapshot(cluster(30))
    cursor = page(snapshot, limit=5).next_cursor

    with pytest.raises(views.ArgumentError, match=r"^cursor belongs to a query with other filters"):
        page(snapshot, limit=5, cursor=cursor, only_unhealthy_or_degraded=True)


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", "e30", "eyJ2IjogMn0", "%%%", "eyJ2IjogMSwgImFmdGVyIjogMSwgImYiOiAiIn0"],
    ids=["garbage", "empty-object", "other-version", "not-base64", "wrong-types"],
)
def test_a_cursor_this_server_did_not_return_is_refused(cursor: str) -> None:
    with pytest.raises(views.ArgumentError, match=r"^cursor is not a cursor this server returned"):
        page(samples.snapshot(cluster(3)), cursor=cursor)


def test_a_blank_cursor_names_the_argument() -> None:
    with pytest.raises(views.ArgumentError, match=r"^cursor must be a non-empty string"):
        page(samples.snapshot(cluster(3)), cursor="  ")
