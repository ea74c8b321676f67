import asyncio

from voicebridge.clock import VirtualClock


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
