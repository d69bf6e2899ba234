"""Poll until a condition holds, with a deadline: tests wait for state, never for time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    probe: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.1, what: str = ""
) -> T:
    """Call `probe` until it returns without raising AssertionError; return its result."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return probe()
        except AssertionError as error:
            if time.monotonic() >= deadline:
                label = f" waiting for {what}" if what else ""
                raise AssertionError(f"timed out after {timeout}s{label}: {error}") from error
        time.sleep(interval)


async def eventually_async(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float = 15.0,
    interval: float = 0.1,
    what: str = "",
) -> T:
    """`eventually` for coroutines."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await probe()
        except AssertionError as error:
            if time.monotonic() >= deadline:
                label = f" waiting for {what}" if what else ""
                raise AssertionError(f"timed out after {timeout}s{label}: {error}") from error
        await asyncio.sleep(interval)


def holds(condition: bool, message: object = "") -> None:
    """`assert` as a function, for the probes (often lambdas) that `eventually` polls."""
    assert condition, message


def equals(got: object, want: object) -> None:
    """`assert got == want` as a function, naming both sides when it fails."""
    assert got == want, f"{got!r} != {want!r}"
