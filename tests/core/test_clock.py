import asyncio

import pytest

from voicebridge.clock import VirtualClock, wait_for


async def test_virtual_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper("b", 0.2)), asyncio.create_task(sleeper("a", 0.1))]
    await clock.advance(0.15)
    assert woke == [("a", 0.1)]
    await clock.advance(1.0)
    assert woke == [("a", 0.1), ("b", 0.2)]
    assert clock.now() == 1.15
    await asyncio.gather(*tasks)


async def test_virtual_clock_step_lets_rescheduled_sleeps_fire_within_one_advance() -> None:
    clock = VirtualClock()
    ticks: list[float] = []

    async def ticker() -> None:
        while len(ticks) < 5:
            await clock.sleep(0.1)
            ticks.append(round(clock.now(), 6))

    task = asyncio.create_task(ticker())
    await clock.advance(0.5, step=0.05)
    assert ticks == [0.1, 0.2, 0.3, 0.4, 0.5]
    await task


async def test_wait_for_returns_the_result_when_it_comes_before_the_deadline() -> None:
    clock = VirtualClock()
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(wait_for(clock, answer, 1.0))
    await clock.advance(0.5)
    answer.set_result("ok")
    assert await task == "ok"
    assert clock.now() == 0.5


async def test_wait_for_times_out_on_virtual_time_only() -> None:
    clock = VirtualClock()
    never = asyncio.Event()
    waiter = asyncio.create_task(never.wait())
    task = asyncio.create_task(wait_for(clock, waiter, 2.0))
    await clock.settle()
    # The caller waits for the work, not for time: a lockstep driver sees it busy.
    assert task not in clock.sleeping and clock.pending == 1
    await clock.advance(1.99)
    assert not task.done()
    await clock.advance(0.01)
    with pytest.raises(TimeoutError):
        await task
    assert waiter.cancelled()


async def test_wait_for_cancelled_cancels_the_work() -> None:
    clock = VirtualClock()
    waiter = asyncio.create_task(asyncio.Event().wait())
    task = asyncio.create_task(wait_for(clock, waiter, 5.0))
    await clock.settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await clock.settle()
    assert waiter.cancelled()


async def test_wait_for_raises_what_the_work_raised() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await wait_for(VirtualClock(), fails(), 1.0)
