"""Where the operator meets kopf: the stamp on its events, the count at the end of each LIST and
the listed objects taken straight from its stream (against kopf's own watching module); the
trimmed per-object memory and essence; and the exponential backoff of refused writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import watching

from gpu_inventory.operator import listing
from gpu_inventory.operator.backoff import Backoff
from gpu_inventory.operator.observing import NoDiffBase, ObservingMemories
from gpu_inventory.operator.tables import STREAM_KEY, Stream, UnstampedEventError, stream_of


class Resource:
    plural = "pods"


@pytest.fixture
def fake_kopf_stream(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """kopf's continuous_watch replaced by scripted runs (each: a LIST, LISTED, watch events),
    then wrapped by listing.install() exactly as in production."""
    runs: list[list[Any]] = []

    async def continuous_watch(**_: Any) -> AsyncIterator[Any]:
        for item in runs.pop(0):
            yield item

    monkeypatch.setattr(watching, "continuous_watch", continuous_watch)
    monkeypatch.setattr(listing, "_epochs", {})
    listing.install()
    return runs


async def drain(**kwargs: Any) -> list[Any]:
    return [event async for event in watching.continuous_watch(**kwargs)]


async def test_events_are_stamped_and_each_list_is_counted(
    fake_kopf_stream: list[list[Any]],
) -> None:
    heard: list[tuple[str, int, int]] = []
    stop = listing.subscribe(lambda *args: heard.append(args))
    try:
        fake_kopf_stream.append(
            [
                {"type": None, "object": {}},
                {"type": None, "object": {}},
                watching.Bookmark.LISTED,
                {"type": "ADDED", "object": {}},
            ]
        )
        fake_kopf_stream.append([watching.Bookmark.LISTED, {"type": "MODIFIED", "object": {}}])
        first = await drain(resource=Resource())
        second = await drain(resource=Resource())
    finally:
        stop()
    assert [e[STREAM_KEY] for e in first if isinstance(e, dict)] == [
        Stream(1, True),
        Stream(1, True),
        Stream(1, False),
    ]
    assert [e[STREAM_KEY] for e in second if isinstance(e, dict)] == [Stream(2, False)]
    assert heard == [("pods", 1, 2), ("pods", 2, 0)]
    assert watching.Bookmark.LISTED in first  # kopf's own gate still sees its bookmark


async def test_listed_objects_go_to_their_consumer_and_only_watch_events_to_kopf(
    fake_kopf_stream: list[list[Any]],
) -> None:
    taken: list[dict[str, Any]] = []
    heard: list[tuple[str, int, int]] = []

    def consume(event: dict[str, Any]) -> bool:
        if event["object"].get("bad"):
            raise ValueError("a bug in the consumer")
        if event["object"].get("refused"):
            return False  # e.g. a GPUInventory of another name: not counted either
        taken.append(event)
        return True

    stops = [
        listing.consume_listings("pods", consume),
        listing.subscribe(lambda *a: heard.append(a)),
    ]
    try:
        fake_kopf_stream.append(
            [
                {"type": None, "object": {"n": 1}},
                {"type": None, "object": {"bad": True}},
                {"type": None, "object": {"refused": True}},
                {"type": None, "object": {"n": 2}},
                watching.Bookmark.LISTED,
                {"type": "MODIFIED", "object": {"n": 1}},
            ]
        )
        to_kopf = await drain(resource=Resource())
    finally:
        for stop in stops:
            stop()
    assert [e["object"] for e in taken] == [{"n": 1}, {"n": 2}]
    assert all(e[STREAM_KEY] == Stream(1, True) for e in taken)
    assert to_kopf == [
        watching.Bookmark.LISTED,
        {"type": "MODIFIED", "object": {"n": 1}, STREAM_KEY: Stream(1, False)},
    ]
    assert heard == [("pods", 1, 2)]  # what the consumer did not take is not expected


def test_install_is_idempotent_on_kopfs_real_module() -> None:
    listing.install()
    wrapped = watching.continuous_watch
    listing.install()
    assert watching.continuous_watch is wrapped
    assert getattr(wrapped, "_gpu_inventory_hook", False)


def test_an_unstamped_event_is_an_error_not_a_guess() -> None:
    with pytest.raises(UnstampedEventError, match=r"listing\.install"):
        stream_of({"type": None, "object": {}})


def test_backoff_doubles_to_its_ceiling_and_a_success_resets_it() -> None:
    backoff = Backoff(first=1, ceiling=300)
    delays = [backoff.failed("w", now=0) for _ in range(12)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert not backoff.ready("w", now=299)
    assert backoff.ready("w", now=300)
    assert backoff.succeeded("w")
    assert backoff.ready("w", now=0)
    assert backoff.next_retry() is None


async def test_no_memory_is_kept_per_object_and_none_is_shared() -> None:
    memories = ObservingMemories()
    memo = kopf.Memo(marker=1)
    first = await memories.recall({"metadata": {"uid": "a"}}, memobase=memo)
    again = await memories.recall({"metadata": {"uid": "a"}}, memobase=memo)
    assert first is not again  # a framework error's throttle stays with its own event
    assert first.memo is memo  # type: ignore[comparison-overlap]  # kopf types memo as AnyMemo
    await memories.forget({"metadata": {"uid": "a"}})
    assert list(memories.iter_all_memories()) == []  # nothing per object, ever


def test_no_essence_is_built_for_event_handlers() -> None:
    storage = NoDiffBase()
    body = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}] * 50}}
    assert storage.build(body=body) is None
    assert storage.fetch(body=body) is None
