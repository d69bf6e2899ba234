"""Every answer fits a model's context by default, on a cluster shaped like a production one.

Claude Code refuses MCP output over 25,000 tokens by default (MAX_MCP_OUTPUT_TOKENS) and warns
from 10,000; the text a model reads is the answer's compact JSON. So an answer asked without
`limit` holds as many items as fit in `views.TEXT_BUDGET` characters (about 10,000 tokens of
JSON), always at least one, and says how many more there are; an explicit `limit` is a page
size. Nodes carry the ~40 labels GPU Feature Discovery and the GPU Operator set and 12 node
conditions (`samples.production_node`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from gpu_inventory.mcpserver import shapes, views
from gpu_inventory.mcpserver.snapshot import Snapshot
from gpu_inventory.testing import samples

NOW = samples.EPOCH + timedelta(minutes=1)
NODES = 120


@pytest.fixture(scope="module")
def production() -> Snapshot:
    return samples.snapshot(
        [
            samples.production_node(f"ip-10-0-{i // 250}-{i % 250}", allocated=i % 9)
            for i in range(NODES)
        ]
    )


@pytest.fixture(scope="module")
def fleet_event() -> Snapshot:
    """Every GPU of every node degraded at once (a bad driver roll-out), a tenth of the nodes
    NotReady."""
    nodes = [
        samples.production_node(
            f"gpu-{i:04d}",
            gpus=[
                samples.gpu(
                    j,
                    node=f"gpu-{i:04d}",
                    name="NVIDIA H100 80GB HBM3",
                    health="Degraded",
                    reasons=["XID 94: contained ECC error"],
                    xids=[samples.xid(94, minute=(i + j) % 60, action="RestartApplication")],
                )
                for j in range(8)
            ],
            ready=i % 10 != 0,
        )
        for i in range(NODES)
    ]
    return samples.snapshot(nodes)


def text(answer: BaseModel) -> str:
    """What the model reads: the answer as compact JSON (the tool's text content)."""
    return answer.model_dump_json()


def inventory(snapshot: Snapshot, **args: Any) -> shapes.InventoryAnswer:
    return views.inventory_answer(snapshot, now=NOW, max_staleness_seconds=300, **args)


def test_the_default_inventory_page_fits_and_every_node_is_reachable(production: Snapshot) -> None:
    first = inventory(production)

    assert 0.6 * views.TEXT_BUDGET < len(text(first)) <= views.TEXT_BUDGET
    assert first.truncated
    assert first.nodes_matched == NODES
    seen = [n.node_name for n in first.nodes]
    cursor = first.next_cursor
    while cursor is not None:
        page = inventory(production, cursor=cursor)
        assert len(text(page)) <= views.TEXT_BUDGET
        seen += [n.node_name for n in page.nodes]
        cursor = page.next_cursor
    assert seen == sorted(production.nodes)


def test_an_explicit_limit_is_a_page_size_whatever_its_text(production: Snapshot) -> None:
    page = inventory(production, limit=40)

    assert len(page.nodes) == 40
    assert len(text(page)) > views.TEXT_BUDGET


def test_a_node_larger_than_the_budget_still_comes_one_per_page(production: Snapshot) -> None:
    pages = [inventory(production, text_budget=1_000)]
    while pages[-1].next_cursor is not None and len(pages) < 4:
        pages.append(inventory(production, text_budget=1_000, cursor=pages[-1].next_cursor))

    assert [len(p.nodes) for p in pages] == [1, 1, 1, 1]


def test_the_default_health_answer_fits_and_counts_everything(fleet_event: Snapshot) -> None:
    answer = views.health_answer(fleet_event, now=NOW, max_staleness_seconds=300)

    assert len(text(answer)) <= views.TEXT_BUDGET
    assert (answer.degraded_gpus, answer.gpus_matched, answer.truncated) == (
        NODES * 8,
        NODES * 8,
        True,
    )
    assert 0 < len(answer.gpus) < NODES * 8
    # The newest events are the ones shown.
    everything = views.health_answer(
        fleet_event, now=NOW, max_staleness_seconds=300, limit=views.MAX_LIMIT
    )
    assert answer.gpus == everything.gpus[: len(answer.gpus)]
    assert answer.nodes_not_ready_count == NODES // 10
    assert answer.nodes_not_ready == everything.nodes_not_ready[: len(answer.nodes_not_ready)]


def test_health_takes_a_limit(fleet_event: Snapshot) -> None:
    answer = views.health_answer(fleet_event, now=NOW, max_staleness_seconds=300, limit=5)

    assert len(answer.gpus) == 5
    assert answer.gpus_matched == NODES * 8


def test_the_default_capacity_answer_fits_and_counts_everything() -> None:
    nodes = [samples.production_node(f"gpu-{i:04d}", allocated=i % 3) for i in range(1_000)]
    snapshot = samples.snapshot(nodes)
    answer = views.capacity_answer(snapshot, now=NOW, max_staleness_seconds=300, count=1)

    assert len(text(answer)) <= views.TEXT_BUDGET
    assert (answer.nodes_matched, answer.truncated) == (1_000, True)
    # Tightest fit first: nodes with 6 of 8 allocated (2 free) lead.
    assert {n.available for n in answer.nodes} == {6}
    assert "1000 node(s) can take a pod" in answer.message
    limited = views.capacity_answer(snapshot, now=NOW, max_staleness_seconds=300, count=1, limit=3)
    assert [n.node_name for n in limited.nodes] == [n.node_name for n in answer.nodes[:3]]
