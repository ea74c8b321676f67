"""Waiting on a wire fake: until a condition holds, woken whenever the fake records something.

The fakes set their ``changed`` event on every message they take in or send out; a test waits
(real time, bounded) for what it expects instead of sleeping for a guessed while.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable


async def wait_until(
    changed: asyncio.Event, predicate: Callable[[], bool], timeout: float, what: str
) -> None:
    """Return once ``predicate()`` holds; AssertionError naming ``what`` after ``timeout`` s.
    The condition is checked again whenever ``changed`` is set (and every 20 ms anyway)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), 0.02)
