"""A table applies each listing whole: never half of one, and a relist removes what is gone in the
same step that adds what is new (the bug: a relist after an API server restart published
`allocated: 338` where the truth was 279, a state that never existed, for about 2 s)."""

from __future__ import annotations

import dataclasses

from gpu_inventory.operator.tables import Changed, Replaced, Stream, Table


@dataclasses.dataclass(frozen=True)
class Obj:
    value: int
    uid: str = ""


def listing(epoch: int) -> Stream:
    return Stream(epoch, listing=True)


def watch(epoch: int) -> Stream:
    return Stream(epoch, listing=False)


def listed(table: Table[Obj], epoch: int, objects: dict[str, int]) -> list[object]:
    """Feed one complete LIST the way kopf does: the objects, then the LISTED count."""
    updates: list[object] = [table.apply(k, Obj(v), listing(epoch)) for k, v in objects.items()]
    updates.append(table.listing_over(epoch, len(objects)))
    return updates


def test_nothing_is_live_until_the_whole_first_listing_is_handled() -> None:
    table: Table[Obj] = Table()
    for i in range(499):
        assert table.apply(f"p{i}", Obj(1), listing(1)) is None
    assert table.live == {}
    assert not table.synced
    # kopf's LIST ends (its LISTED bookmark) while one more object is still queued in a worker:
    assert table.listing_over(1, 500) is None
    assert not table.synced
    assert table.gathering
    update = table.apply("p499", Obj(1), listing(1))
    assert isinstance(update, Replaced)
    assert len(table.live) == 500
    assert table.synced
    assert not table.gathering


def test_a_slow_listing_only_delays_completeness() -> None:
    table: Table[Obj] = Table()
    table.apply("a", Obj(1), listing(1))
    # minutes of silence change nothing: completeness comes from the count, not from quiet
    assert not table.synced
    assert table.live == {}
    table.apply("b", Obj(1), listing(1))
    assert isinstance(table.listing_over(1, 2), Replaced)


def test_an_empty_listing_completes_at_once() -> None:
    table: Table[Obj] = Table()
    assert isinstance(table.listing_over(1, 0), Replaced)
    assert table.synced
    assert table.live == {}


def test_watch_events_handled_before_the_last_listed_object_join_the_snapshot() -> None:
    """kopf handles each object in its own worker: object b's watch event can run before
    object a's listing event. Both belong to the snapshot."""
    table: Table[Obj] = Table()
    table.apply("b", Obj(1), listing(1))
    assert table.listing_over(1, 2) is None
    assert table.apply("b", Obj(5), watch(1)) is None  # still gathering
    table.apply("a", Obj(1), listing(1))
    assert table.live == {"a": Obj(1), "b": Obj(5)}


def test_after_the_listing_watch_events_change_the_live_table_one_by_one() -> None:
    table: Table[Obj] = Table()
    listed(table, 1, {"a": 1})
    assert table.apply("a", Obj(2), watch(1)) == Changed("a", Obj(1), Obj(2))
    assert table.apply("b", Obj(3), watch(1)) == Changed("b", None, Obj(3))
    assert table.apply("a", None, watch(1)) == Changed("a", Obj(2), None)
    assert table.apply("a", None, watch(1)) is None  # already gone
    assert table.apply("b", Obj(3), watch(1)) is None  # the same content again


def test_a_relist_replaces_the_table_in_one_step() -> None:
    """The measured outage: 100 pod changes queued while the API server was down; the relist
    brings 50 new pods and lacks 38 deleted ones."""
    table: Table[Obj] = Table()
    before = {f"old{i}": 1 for i in range(300)}
    listed(table, 1, before)
    after = {k: v for i, (k, v) in enumerate(before.items()) if i >= 38}
    after.update({f"new{i}": 1 for i in range(50)})
    shown: list[int] = []
    for key, value in after.items():
        table.apply(key, Obj(value), listing(2))
        shown.append(sum(o.value for o in table.live.values()))
    assert set(shown) == {300}  # never the 338 that never existed
    update = table.listing_over(2, len(after))
    assert isinstance(update, Replaced)
    assert sum(o.value for o in table.live.values()) == 312
    assert set(update.old) - set(update.new) == {f"old{i}" for i in range(38)}


def test_events_from_before_a_relist_are_superseded() -> None:
    table: Table[Obj] = Table()
    listed(table, 1, {"a": 1, "b": 1})
    table.apply("a", Obj(1), listing(2))  # the relist has begun
    assert table.apply("b", Obj(9), watch(1)) is None  # queued before the relist: ignored
    assert table.apply("c", Obj(9), watch(1)) is None
    listed_update = table.listing_over(2, 1)
    assert isinstance(listed_update, Replaced)
    assert table.live == {"a": Obj(1)}


def test_a_listing_abandoned_midway_is_replaced_by_the_next_one() -> None:
    """kopf's LIST fails on a page (connection lost): no LISTED; it lists again from scratch."""
    table: Table[Obj] = Table()
    table.apply("a", Obj(1), listing(1))
    table.apply("b", Obj(1), listing(1))
    listed(table, 2, {"a": 2})
    assert table.live == {"a": Obj(2)}
    assert table.synced


def test_a_late_deleted_of_a_predecessor_removes_nothing() -> None:
    table: Table[Obj] = Table()
    listed(table, 1, {})
    table.apply("n1", Obj(1, uid="new"), watch(1))
    assert table.apply("n1", None, watch(1), uid="old") is None
    assert table.live == {"n1": Obj(1, uid="new")}
    assert table.apply("n1", None, watch(1), uid="new") is not None


def test_our_own_answers_apply_only_outside_a_listing() -> None:
    table: Table[Obj] = Table()
    table.apply("w", Obj(1), listing(1))
    assert table.answer("x", Obj(1)) is None  # first listing under way
    table.listing_over(1, 1)
    assert table.answer("x", Obj(1)) == Changed("x", None, Obj(1))
    table.apply("y", Obj(1), listing(2))
    assert table.answer("x", Obj(2)) is None


def test_a_refresh_keeps_what_events_touched_meanwhile() -> None:
    table: Table[Obj] = Table()
    listed(table, 1, {"a": 1, "b": 1, "gone": 1})
    assert table.begin_refresh()
    table.apply("b", Obj(7), watch(1))  # newer than the refresh's LIST may be
    table.apply("c", Obj(3), watch(1))  # created after the LIST read
    update = table.finish_refresh({"a": Obj(10), "b": Obj(10)})
    assert isinstance(update, Replaced)
    assert table.live == {"a": Obj(10), "b": Obj(7), "c": Obj(3)}


def test_a_refresh_overtaken_by_a_relist_is_void() -> None:
    table: Table[Obj] = Table()
    listed(table, 1, {"a": 1})
    assert table.begin_refresh()
    table.apply("a", Obj(2), listing(2))
    assert table.finish_refresh({"a": Obj(10)}) is None
    assert not table.begin_refresh()  # while the relist gathers
