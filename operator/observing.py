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
    """One shared memory for every object: nothing per object is remembered.

    What kopf keeps in a memory serves daemons, timers, indexes, admission webhooks and change
    handlers (resumption, throttling after framework errors). With event handlers alone all
    of it stays empty, so one instance serves every object, and 150,000 pods cost no memory
    entries at all.
    """

    def __init__(self) -> None:
        super().__init__()
        self._shared: ResourceMemory | None = None
        """Made at the first event: a memory needs the running event loop."""

    async def recall(
        self,
        raw_body: Any,
        *,
        memobase: Any = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        if self._shared is None:
            self._shared = ResourceMemory()
        if memobase is not None and self._shared.memo is not memobase:
            self._shared.memo = memobase  # the operator's memo itself: handlers read the runtime
        return self._shared

    async def forget(self, raw_body: Any) -> None:
        return None
