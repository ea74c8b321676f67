"""CPU cost of per-call housekeeping timers: a task per call against the shared ticker.

    PYTHONPATH=. python bench/tick_cost.py 100 tasks     # 100 calls, a sleeping task each
    PYTHONPATH=. python bench/tick_cost.py 100 ticker    # 100 calls on voicebridge.runtime.ticker

Each of N calls does nothing every 0.1 s (what is measured is the timer, not the work), the calls
started spread over one period as real calls are, while a busy task makes the loop turn over
every fraction of a millisecond as socket traffic would. Prints the CPU time of 10 s; compare
with N = 0 for the loop's own share.
"""

from __future__ import annotations

import asyncio
import sys
import time

from voicebridge.clock import MonotonicClock
from voicebridge.runtime.ticker import Periodic

count = 0
spins = 0


def work() -> None:
    global count
    count += 1


async def own() -> None:
    while True:
        await asyncio.sleep(0.1)
        work()


async def busy() -> None:
    """Stands in for socket traffic: the loop runs an iteration every fraction of a ms."""
    global spins
    while True:
        await asyncio.sleep(0.0002)
        spins += 1


async def main(n: int, mode: str, duration: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(busy())]
    await asyncio.sleep(0.5)
    for _ in range(n):
        if mode == "tasks":
            tasks.append(loop.create_task(own()))
        else:
            Periodic(MonotonicClock(), 0.1, work, name="tick").start()
        await asyncio.sleep(0.1 / n)
    cpu0, ticks0, spins0 = time.process_time(), count, spins
    await asyncio.sleep(duration)
    cpu = time.process_time() - cpu0
    turns = spins - spins0
    print(f"{mode} {n}: ticks {count - ticks0}, loop turns {turns}, CPU {cpu * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
