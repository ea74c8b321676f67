"""Waiting on a wire fake: until a condition holds, woken whenever the fake records something.

The fakes set their ``changed`` event on every message they take in or send out; a test waits
(real time, bounded) for what it expects instead of sleeping for a guessed while.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol


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


class HoldsSetups(Protocol):
    """A fake that can leave a session's set-up unanswered until ``release``."""

    holding: int
    held: set[int]
    changed: asyncio.Event
    release: asyncio.Event


async def hold_setup(fake: HoldsSetups, connection: Any, number: int) -> None:
    """Hold session ``number``'s set-up until ``fake.release``, or until the client gives up and
    closes ``connection`` (a websockets ``ServerConnection``); ``holding``/``held`` say so."""
    fake.holding += 1
    fake.held.add(number)
    fake.changed.set()
    waits = [
        asyncio.ensure_future(fake.release.wait()),
        asyncio.ensure_future(connection.wait_closed()),
    ]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        fake.holding -= 1
        fake.held.discard(number)
        fake.changed.set()
