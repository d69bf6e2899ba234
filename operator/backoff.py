"""Exponential backoff per operation: a refused or failing write is retried less and less often.

Pure: no I/O; `now` is passed in (monotonic seconds). A write the API server refuses (403
Forbidden, 422 Invalid, too large) is retried after 1 s, 2 s, 4 s ... up to `ceiling` (minutes),
so a missing RBAC rule costs a handful of requests an hour, not two a second, and the operator
recovers by itself within one ceiling once the rule is fixed.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(slots=True)
class _State:
    failures: int
    until: float


class Backoff:
    """When each named operation may be tried again."""

    def __init__(self, *, first: float = 1.0, ceiling: float = 300.0) -> None:
        self.first = first
        self.ceiling = ceiling
        self._states: dict[str, _State] = {}

    def failed(self, what: str, *, now: float) -> float:
        """Note a failure; return the delay before `what` may be tried again."""
        state = self._states.get(what)
        failures = 1 if state is None else state.failures + 1
        delay = min(self.ceiling, self.first * float(2 ** min(failures - 1, 30)))
        self._states[what] = _State(failures, now + delay)
        return delay

    def succeeded(self, what: str) -> bool:
        """Note a success; whether `what` had been failing."""
        return self._states.pop(what, None) is not None

    def ready(self, what: str, *, now: float) -> bool:
        """Whether `what` may be tried now."""
        state = self._states.get(what)
        return state is None or now >= state.until

    def failures(self, what: str) -> int:
        state = self._states.get(what)
        return 0 if state is None else state.failures

    def next_retry(self) -> float | None:
        """The earliest time some operation may be tried again."""
        return min((s.until for s in self._states.values()), default=None)
