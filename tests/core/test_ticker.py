"""Periodic work: one shared ticker on the loop's clock, a task of its own on a virtual clock."""

from __future__ import annotations

import asyncio

from voicebridge.clock import MonotonicClock, VirtualClock
from voicebridge.runtime.ticker import Periodic, Ticker, shared_ticker


async def test_every_callback_runs_once_per_period() -> None:
    ticker = Ticker(period=0.05)
    calls: list[int] = []
    removes = [ticker.add(lambda key=key: calls.append(key)) for key in range(25)]
    periods: list[list[int]] = []
    done = asyncio.Event()

    def watch() -> None:  # one more callback: what ran since it last ran
        periods.append(sorted(calls))
        calls.clear()
        if len(periods) == 4:
            done.set()

    removes.append(ticker.add(watch))
    await done.wait()
    # Between two turns of the watcher, each of the others ran exactly once.
    assert periods[1:] == [list(range(25))] * 3
    for remove in removes:
        remove()
    assert len(ticker) == 0


async def test_the_ticker_task_ends_with_its_last_callback_and_comes_back() -> None:
    ticker = Ticker(period=0.01)
    ticked = asyncio.Event()
    remove = ticker.add(ticked.set)
    await ticked.wait()
    remove()
    [task] = [t for t in asyncio.all_tasks() if t.get_name() == "ticker"]
    await task  # ends on its own: nothing left to tick
    again = asyncio.Event()
    remove = ticker.add(again.set)
    await again.wait()
    remove()


async def test_a_failing_callback_does_not_stop_the_others() -> None:
    ticker = Ticker(period=0.01)
    ticked = asyncio.Event()

    def boom() -> None:
        raise RuntimeError("one call's bug")

    remove_boom = ticker.add(boom)
    remove_ok = ticker.add(ticked.set)
    await ticked.wait()
    remove_boom()
    remove_ok()


async def test_the_loop_clock_shares_one_ticker_per_period() -> None:
    assert shared_ticker(0.1) is shared_ticker(0.1)
    ran = asyncio.Event()
    periodic = Periodic(MonotonicClock(), 0.1, lambda: ran.set(), name="t")
    periodic.start()
    assert len(shared_ticker(0.1)) == 1
    await ran.wait()
    periodic.stop()
    assert len(shared_ticker(0.1)) == 0


async def test_work_that_awaits_runs_in_a_task_and_skips_ticks_until_done() -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def slow() -> None:
        await release.wait()

    def work() -> object:
        started.append(len(started))
        return slow()

    periodic = Periodic(MonotonicClock(), 0.01, work, name="slow-tick")  # type: ignore[arg-type]
    periodic.start()
    while not started:
        await asyncio.sleep(0.005)
    [task] = [t for t in asyncio.all_tasks() if t.get_name() == "slow-tick"]
    # While the first tick's work waits, later ticks do not start more of it.
    done = asyncio.Event()
    remove = shared_ticker(0.01).add(done.set)
    for _ in range(3):
        done.clear()
        await done.wait()  # a whole period of slices went by
    assert started == [0]
    release.set()
    await task
    periodic.stop()
    remove()


async def test_a_virtual_clock_ticks_exactly_on_its_own_time() -> None:
    clock = VirtualClock()
    times: list[float] = []
    periodic = Periodic(clock, 0.1, lambda: times.append(round(clock.now(), 3)), name="v")
    periodic.start()
    await clock.advance(0.35, step=0.01)
    periodic.stop()
    await clock.advance(0.3, step=0.01)
    assert times == [0.1, 0.2, 0.3]
