"""Where kopf's LISTs begin and end: a stamp on every event, and a count at the end of each LIST.

kopf reads every watched kind as LIST, then WATCH from the list's resourceVersion, and LISTs
again when the watch is lost (`kopf._cogs.clients.watching.continuous_watch`). It marks the
end of each LIST in its own stream (`Bookmark.LISTED`, what its index gate waits for) but
hands handlers nothing of it: listed objects arrive as events of type None, exactly like the
watch events after them except for the type, and a relist is not announced at all.

So the operator wraps that one generator (the only place the boundary is known) and:
- stamps each raw event with `tables.Stream(epoch, listing)`: which LIST-then-WATCH run of the
  stream it belongs to, and whether it came from the LIST;
- tells its listeners, at each LISTED, how many objects that LIST yielded;
- hands listed objects of the kinds that have a consumer straight to it, in stream order, and
  yields only the watch events to kopf's per-object workers. kopf's per-event machinery
  (a worker task per object, loggers, the cause detection, the handler invocation: about 40 %
  of the operator's CPU in a py-spy profile of a 20,000-pod listing) buys nothing for a
  listed object the operator only projects, and a LIST of 150,000 pods would spend a minute in
  it. kopf still lists and watches (paging, retries, reconnects, bookmarks); every watch event
  still reaches the handlers through kopf.

The store then applies each listing as one complete snapshot (`tables`), so a slow page can only
delay `Ready`, and a relist after an outage can never publish half-old, half-new totals.

This reaches into kopf's internals; `install()` checks the hook point and fails loudly (the
operator does not start) if a kopf release moves it, and the integration tests run through it.
kopf is pinned to 1.45.x in pyproject.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from kopf._cogs.clients import watching

from gpu_inventory.operator.tables import STREAM_KEY, Stream

logger = logging.getLogger(__name__)

Listener = Callable[[str, int, int], None]
"""Called with (resource plural, epoch, objects the LIST yielded) when a LIST is over."""

Consumer = Callable[[dict[str, Any]], bool]
"""Takes one stamped listing event of its kind (what the kind's event handler would do);
returns whether the store took it (only taken objects count toward the LIST's total)."""

_listeners: list[Listener] = []
_consumers: dict[str, Consumer] = {}
_epochs: dict[str, int] = {}


class HookError(RuntimeError):
    """kopf's watch stream is not where this module expects it."""


def subscribe(listener: Listener) -> Callable[[], None]:
    """Hear about the end of every LIST; returns the function that stops it."""
    _listeners.append(listener)
    return functools.partial(_listeners.remove, listener)


def consume_listings(plural: str, consumer: Consumer) -> Callable[[], None]:
    """Hand the listed objects of `plural` to `consumer` instead of kopf's workers; returns the
    function that stops it."""
    _consumers[plural] = consumer

    def stop() -> None:
        _consumers.pop(plural, None)

    return stop


SUPPORTED_KOPF: Final = (1, 45)
"""The kopf minor release whose watch stream this module was written against."""


def install() -> None:
    """Wrap kopf's `continuous_watch` (idempotent). Must run before kopf starts watching.

    Refuses a kopf release other than the one it was written against, and a stream that is not
    where it was: a silent change here would bring back completeness guessed from silence.
    """
    version = tuple(int(part) for part in importlib.metadata.version("kopf").split(".")[:2])
    original = getattr(watching, "continuous_watch", None)
    if (
        version != SUPPORTED_KOPF
        or original is None
        or not hasattr(watching, "Bookmark")
        or "continuous_watch" not in watching.infinite_watch.__code__.co_names
    ):
        raise HookError(
            f"kopf {'.'.join(map(str, version))}: its watch stream is not the one"
            " operator/listing.py wraps (written for kopf 1.45); install the kopf version"
            " pyproject.toml pins"
        )
    if getattr(original, "_gpu_inventory_hook", False):
        return

    @functools.wraps(original)
    async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
        plural = str(getattr(kwargs.get("resource"), "plural", "?"))
        epoch = _epochs[plural] = _epochs.get(plural, 0) + 1
        listed, watched = Stream(epoch, listing=True), Stream(epoch, listing=False)
        count = 0
        async for event in original(**kwargs):
            if event is watching.Bookmark.LISTED:
                logger.debug("listed %d %s (stream %d)", count, plural, epoch)
                for listener in list(_listeners):
                    listener(plural, epoch, count)
            elif isinstance(event, dict):
                if event.get("type") is None:
                    event[STREAM_KEY] = listed
                    consumer = _consumers.get(plural)
                    if consumer is not None:
                        count += _consume(consumer, event, plural)
                        continue
                    count += 1
                else:
                    event[STREAM_KEY] = watched
            yield event

    continuous_watch._gpu_inventory_hook = True  # type: ignore[attr-defined]
    watching.continuous_watch = continuous_watch


def _consume(consumer: Consumer, event: dict[str, Any], plural: str) -> int:
    """One listed object to its consumer: 1 if taken (it counts toward the LIST's total). A
    failure is logged and never breaks kopf's stream; the object is then missing until its
    next event, as a failed handler would leave it, and the listing still completes."""
    try:
        taken = consumer(event)
    except Exception:
        logger.exception("a listed %s could not be taken", plural)
        return 0
    return 1 if taken else 0
