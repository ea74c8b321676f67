"""Clocks: every timing decision in voicebridge goes through one, so tests can run on virtual time.

``MonotonicClock`` is the event loop's clock. ``VirtualClock`` only moves when told to
(``advance``), which makes VAD windows, guards, ack timeouts and reprompts exact in tests.
``wait_for`` bounds any wait on a clock's time, so timeouts are exact there too.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """Seconds since an arbitrary origin, and a sleep that honours the same timeline."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


async def wait_for(clock: Clock, awaitable: Awaitable[T], seconds: float) -> T:
    """``asyncio.wait_for`` on ``clock``'s time: the result of ``awaitable``, or TimeoutError
    (with it cancelled) once ``seconds`` have passed on ``clock``.

    Only a helper task sleeps on the clock; the caller waits for the work itself, so a lockstep
    driver sees it busy (waiting for an answer, not for time) until the work ends or the clock
    is moved past the deadline.
    """
    work = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        raise
    finally:
        timer.cancel()
    if not work.done():
        work.cancel()
        await asyncio.wait({work})  # let it unwind; our own cancellation still comes through
        if work.cancelled():
            raise TimeoutError(f"no result within {seconds:g} s")
    return work.result()


class MonotonicClock:
    """The running event loop's monotonic time."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """A clock that stands still until ``advance`` moves it; sleepers wake in deadline order."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        # Tasks blocked in sleep(): waiting for time, not for CPU (lockstep drivers need this).
        self.sleeping: set[asyncio.Task[object]] = set()
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a task starts sleeping: a driver waiting for everything
        to be idle (or asleep) looks again then, instead of polling."""
        self._listeners.append(listener)

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        task = asyncio.current_task()
        if task is not None:
            self.sleeping.add(task)
        for listener in self._listeners:
            listener()
        try:
            await fut
        finally:
            if task is not None:
                self.sleeping.discard(task)

    @property
    def pending(self) -> int:
        """How many sleepers are waiting (cancelled ones included until they are reached)."""
        return len(self._sleepers)

    async def settle(self, rounds: int = 20) -> None:
        """Let every task that can run do so, without moving time."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float, step: float | None = None) -> None:
        """Move time forward, waking sleepers at their deadlines in order.

        With ``step``, time moves in increments of at most ``step`` so tasks that react to a
        wake-up can schedule new sleeps that fall inside the same advance.
        """
        target = self._now + seconds
        await self.settle()
        while True:
            next_deadline = self._sleepers[0][0] if self._sleepers else None
            stop = target if step is None else min(target, self._now + step)
            if next_deadline is not None and next_deadline <= stop:
                deadline, _, fut = heapq.heappop(self._sleepers)
                self._now = max(self._now, deadline)
                if not fut.done():
                    fut.set_result(None)
                await self.settle()
                continue
            self._now = stop
            await self.settle()
            if stop >= target:
                break


class StreamClock(VirtualClock):
    """A virtual clock driven by the caller's audio: each media frame moves it by its duration.

    The simulator's fast mode gives one to each session, so timers (ack timeouts, reprompts,
    call limits) run on the call's own timeline however fast the audio is fed in.
    """

    async def advance_to(self, t: float) -> None:
        if t > self.now():
            await self.advance(t - self.now())
