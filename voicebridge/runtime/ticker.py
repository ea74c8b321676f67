"""Periodic work for many calls on one timer.

Each call's housekeeping (pacing, lost acks, reprompts, limits) runs ten times a second. A task
per call that sleeps and wakes costs a timer, a future and a task switch each time: a thousand of
each a second at 100 calls. On the event loop's own clock, ``Periodic`` instead joins the loop's
shared ``Ticker``: one task that wakes ``SLOTS`` times per period and runs one slice of the calls
each time, so the wake-ups per second no longer grow with the number of calls and the calls'
work stays spread over the period instead of landing at one instant. On any other clock (a
virtual clock in tests and the simulator) ``Periodic`` sleeps on that clock in a task of its
own, so its timing stays exact there.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from voicebridge.clock import Clock, MonotonicClock

log = structlog.get_logger("voicebridge.runtime")

SLOTS = 10  # slices of the calls per period: a tick of 0.1 s wakes the ticker every 10 ms

# The work done each period: None when it is done, or a coroutine that finishes it (run in a
# task; the call's next ticks are skipped until it ends, as a task that awaited it would).
Work = Callable[[], Coroutine[Any, Any, None] | None]


class Ticker:
    """One task calling each of its callbacks once per ``period``, spread over ``SLOTS``."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._slots: list[dict[int, Callable[[], None]]] = [{} for _ in range(SLOTS)]
        self._keys = itertools.count()
        self._count = 0
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return self._count

    def add(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` every period from now on; returns the function that stops it."""
        key = next(self._keys)
        slot = self._slots[key % SLOTS]
        slot[key] = callback
        self._count += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ticker")

        def remove() -> None:
            if slot.pop(key, None) is not None:
                self._count -= 1

        return remove

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        step = self.period / SLOTS
        due = loop.time() + step
        index = 0
        try:
            while self._count:
                await asyncio.sleep(due - loop.time())
                # A loop running late catches up from now rather than in a burst.
                due = max(due + step, loop.time())
                for callback in list(self._slots[index].values()):
                    try:
                        callback()
                    except Exception as exc:  # one call's fault never reaches another's
                        log.error("tick_failed", error=repr(exc)[:300])
                index = (index + 1) % SLOTS
        finally:
            self._task = None


_TICKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Ticker]] = (
    weakref.WeakKeyDictionary()
)


def shared_ticker(period: float) -> Ticker:
    """The running loop's ticker for ``period`` (made on first use)."""
    tickers = _TICKERS.setdefault(asyncio.get_running_loop(), {})
    ticker = tickers.get(period)
    if ticker is None:
        ticker = tickers[period] = Ticker(period)
    return ticker


class Periodic:
    """``work`` every ``period`` seconds of ``clock`` until ``stop``."""

    def __init__(self, clock: Clock, period: float, work: Work, *, name: str) -> None:
        self._clock = clock
        self._period = period
        self._work = work
        self._name = name
        self._remove: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None  # the own loop, or a tick's pending work
        self._stopped = False

    def start(self) -> None:
        if type(self._clock) is MonotonicClock:
            self._remove = shared_ticker(self._period).add(self._tick)
        else:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self._name)

    def stop(self) -> None:
        """No more ticks; work under way is cancelled unless it is what called ``stop``."""
        self._stopped = True
        if self._remove is not None:
            self._remove()
            self._remove = None
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _tick(self) -> None:
        if self._task is not None or self._stopped:
            return  # the last tick's work is still going on
        pending = self._work()
        if pending is not None:
            self._task = task = asyncio.get_running_loop().create_task(pending, name=self._name)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("tick_failed", error=repr(task.exception())[:300])

    async def _loop(self) -> None:
        while not self._stopped:
            await self._clock.sleep(self._period)
            pending = self._work()
            if pending is not None:
                try:
                    await pending
                except Exception as exc:  # the next tick tries again
                    log.error("tick_failed", error=repr(exc)[:300])
