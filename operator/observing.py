"""What kopf keeps and computes per object, trimmed to what an operator that only observes needs.

kopf is built for operators that react to changes of their objects: for every event it builds
the object's "essence" (a deep copy of the body) to diff against the last handled state, and it
keeps a memory per object (a copy of the memo, an error throttler, indexing and daemon state)
until the object is deleted. This operator has only `@kopf.on.event` handlers, which need
neither: at 150,000 pods the deep copies were 8 % of the operator's CPU (py-spy), and the
per-object memories a large share of its memory. Both are kopf extension points (`kopf.run`
takes `memories`; `settings.persistence.diffbase_storage` takes any `kopf.DiffBaseStorage`).
"""

from __future__ import annotations

from typing import Any

import kopf
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory


class NoDiffBase(kopf.DiffBaseStorage):
    """No essence, nothing stored: only change handlers (`on.update` & co.) read a diff."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


class ObservingMemories(ResourceMemories):
    """Nothing per object is remembered: each event gets a fresh memory, dropped after it.

    What kopf keeps in a memory serves daemons, timers, indexes, admission webhooks and change
    handlers (resumption, and the throttling of an object after a framework error), none of
    which an operator with only event handlers has. A fresh memory per event (not one shared
    by all: a framework error would then throttle every object) keeps the per-event behaviour
    kopf intends, and 150,000 pods cost no memory entries at all.
    """

    async def recall(
        self,
        raw_body: Any,
        *,
        memobase: Any = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        if memobase is None:
            return ResourceMemory(noticed_by_listing=noticed_by_listing)
        # The operator's memo itself, not a copy: handlers only read the runtime from it.
        return ResourceMemory(noticed_by_listing=noticed_by_listing, memo=memobase)

    async def forget(self, raw_body: Any) -> None:
        return None
