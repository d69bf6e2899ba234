"""One kind's objects as projections, with every listing applied as one consistent snapshot.

Pure: no I/O. kopf reads each kind as LIST, then WATCH from the list's resourceVersion, and
LISTs again after the watch is lost ("410 Gone", e.g. after the API server restarts). Every event
carries where it came from in that stream (`Stream`, stamped by `listing`), and kopf says how
many objects each LIST yielded. So a table knows exactly when a listing is complete, and it
never shows half of one:

- while a listing is being gathered, its objects (and the watch events that follow it) go to a
  *shadow* table; the live table keeps the last complete state;
- when every listed object has been handled, the shadow replaces the live table in one step:
  objects deleted while the watch was lost disappear in the same step that adds the new ones;
- events from an older stream (queued before the relist began) are superseded by the listing
  and ignored.

The first listing works the same way, so `synced` means "a whole LIST has been applied", never
"events went quiet for a while": a slow API server delays it, and can never fake it.

A second, rarer snapshot comes from the operator's own LIST after a spec change that alters how
objects are projected (`begin_refresh` / `finish_refresh`): objects that events touched while
the LIST ran keep their event-fed state, the rest take the LIST's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final, Generic, TypeVar

V = TypeVar("V")

STREAM_KEY: Final = "gpuInventoryStream"
"""The key `listing` adds to kopf's raw event dicts (kopf reads only `type` and `object`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Stream:
    """Where an event came from in kopf's watch stream of its kind."""

    epoch: int
    """Which LIST-then-WATCH run of the stream: 1, then one more after every relist."""
    listing: bool
    """Part of the LIST (kopf's event type None), else a watch event."""


class UnstampedEventError(RuntimeError):
    """An event without its listing stamp: `listing.install()` did not run before kopf."""


def stream_of(event: Mapping[str, Any]) -> Stream:
    """The stamp `listing` put on a raw event. Raises UnstampedEventError for an unstamped one:
    counting it anyway would bring back completeness guessed from silence."""
    stream = event.get(STREAM_KEY)
    if not isinstance(stream, Stream):
        raise UnstampedEventError(
            "a kopf event reached the operator without its listing stamp: the hook on kopf's"
            " continuous_watch is not installed (listing.install() must run before kopf)"
        )
    return stream


@dataclasses.dataclass(frozen=True, slots=True)
class Changed(Generic[V]):
    """One live object changed (`old` or `new` is None for an addition or a removal)."""

    key: str
    old: V | None
    new: V | None


@dataclasses.dataclass(frozen=True, slots=True)
class Replaced(Generic[V]):
    """The live table was replaced by a complete snapshot."""

    old: Mapping[str, V]
    new: Mapping[str, V]


Update = Changed[V] | Replaced[V]


class Table(Generic[V]):
    """The live objects of one kind, keyed by name (or uid for pods)."""

    __slots__ = ("_expected", "_listed", "_shadow", "_touched", "epoch", "live", "synced")

    def __init__(self) -> None:
        self.live: dict[str, V] = {}
        self.epoch = 0
        self.synced = False
        """A whole listing has been applied at least once."""
        self._shadow: dict[str, V] | None = None
        self._listed = 0
        self._expected: int | None = None
        self._touched: set[str] | None = None

    @property
    def gathering(self) -> bool:
        """A listing is under way (the first one, or a relist)."""
        return self._shadow is not None

    @property
    def refreshing(self) -> bool:
        return self._touched is not None

    # --- kopf's stream ----------------------------------------------------------------------------

    def apply(
        self, key: str, value: V | None, stream: Stream, *, uid: str = ""
    ) -> Update[V] | None:
        """An event: `value` is the new projection, None for a deletion (or "not kept").

        `uid`, for a deletion, guards against the late DELETED of a predecessor with the same
        name: it removes nothing from a successor with another uid.
        """
        if stream.epoch < self.epoch:
            return None  # queued before a relist began; the listing supersedes it
        if stream.epoch > self.epoch:
            self._begin(stream.epoch)
        if self._shadow is not None:
            _put(self._shadow, key, value, uid)
            if stream.listing:
                self._listed += 1
            return self._complete()
        if self._touched is not None:
            self._touched.add(key)
        return self._set_live(key, value, uid)

    def listing_over(self, epoch: int, count: int) -> Update[V] | None:
        """kopf's LIST of `epoch` is over and yielded `count` objects."""
        if epoch < self.epoch:
            return None
        if epoch > self.epoch:
            self._begin(epoch)
        self._expected = count
        return self._complete()

    def _begin(self, epoch: int) -> None:
        self.epoch = epoch
        self._shadow = {}
        self._listed = 0
        self._expected = None
        self._touched = None  # a relist re-reads everything under the current projection

    def _complete(self) -> Replaced[V] | None:
        if self._shadow is None or self._expected is None or self._listed < self._expected:
            return None
        old, self.live, self._shadow = self.live, self._shadow, None
        self.synced = True
        return Replaced(old, self.live)

    # --- the operator's own reads and writes ----------------------------------------------------

    def answer(self, key: str, value: V | None) -> Update[V] | None:
        """The server's answer to our own read or write: the freshest state of `key`.

        Ignored while a listing is gathered: the listing (or a watch event after it) brings
        the object in the same or a newer state.
        """
        if self._shadow is not None:
            return None
        return self._set_live(key, value, "")

    def begin_refresh(self) -> bool:
        """Start recording which keys events touch; the caller LISTs next. False (no refresh
        now) while a listing is gathered: it re-reads everything anyway."""
        if self._shadow is not None:
            return False
        self._touched = set()
        return True

    def finish_refresh(self, listed: Mapping[str, V]) -> Replaced[V] | None:
        """Apply the caller's LIST: untouched keys take the listed state, touched keys keep
        the (newer) event-fed one. None if a relist began meanwhile (the refresh is void)."""
        touched, self._touched = self._touched, None
        if touched is None or self._shadow is not None:
            return None
        fresh = {key: value for key, value in listed.items() if key not in touched}
        for key in touched:
            if key in self.live:
                fresh[key] = self.live[key]
        old, self.live = self.live, fresh
        return Replaced(old, fresh)

    def abort_refresh(self) -> None:
        self._touched = None

    # --- helpers --------------------------------------------------------------------------------

    def _set_live(self, key: str, value: V | None, uid: str) -> Changed[V] | None:
        old = self.live.get(key)
        if not _put(self.live, key, value, uid):
            return None
        new = self.live.get(key)
        if old == new:
            return None
        return Changed(key, old, new)


def _put(table: dict[str, V], key: str, value: V | None, uid: str) -> bool:
    """Store or remove `key`; whether the table was touched. A removal carrying another uid
    than the stored object's is a predecessor's late DELETED and removes nothing."""
    if value is not None:
        table[key] = value
        return True
    old = table.get(key)
    if old is None:
        return False
    stored_uid = getattr(old, "uid", "")
    if uid and stored_uid and stored_uid != uid:
        return False
    del table[key]
    return True
