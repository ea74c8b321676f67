"""The blocking-inference worker pools: bounded, shared, cancellable, truly parallel."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from voicebridge.runtime.workers import WorkerPoolFull, pool_stats, run_blocking


def fresh_pool() -> str:
    """A pool name no other test uses: the first call sizes a pool for the whole process."""
    return f"test-{uuid.uuid4().hex[:8]}"


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)


def blocker(started: threading.Event, gate: threading.Event, result: str) -> str:
    started.set()
    if not gate.wait(5):
        raise TimeoutError("gate never opened")
    return result


async def test_bound_refuses_jobs_beyond_workers_plus_queue() -> None:
    name = fresh_pool()
    started, gate = threading.Event(), threading.Event()
    first = asyncio.create_task(
        run_blocking(name, blocker, started, gate, "a", max_workers=1, max_queue=1)
    )
    await wait_until(started.is_set)
    second = asyncio.create_task(run_blocking(name, lambda: "b", max_workers=1, max_queue=1))
    await asyncio.sleep(0)
    assert pool_stats()[name].outstanding == 2
    with pytest.raises(WorkerPoolFull, match=name):
        await run_blocking(name, lambda: "c", max_workers=1, max_queue=1)
    gate.set()
    assert await first == "a"
    assert await second == "b"
    # Slots are freed once jobs finish: the pool takes work again.
    assert await run_blocking(name, lambda: "d") == "d"
    await wait_until(lambda: pool_stats()[name].outstanding == 0)


async def test_cancelled_job_that_has_not_started_never_runs() -> None:
    name = fresh_pool()
    started, gate = threading.Event(), threading.Event()
    ran = threading.Event()
    running = asyncio.create_task(run_blocking(name, blocker, started, gate, "a", max_workers=1))
    await wait_until(started.is_set)
    queued = asyncio.create_task(run_blocking(name, ran.set, max_workers=1))
    await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert pool_stats()[name].outstanding == 1  # the withdrawn job gave its slot back at once
    gate.set()
    assert await running == "a"
    assert await run_blocking(name, lambda: "after") == "after"  # the worker moved past it
    assert not ran.is_set()


async def test_cancelled_running_job_is_discarded_and_frees_its_slot_when_done() -> None:
    name = fresh_pool()
    started, gate = threading.Event(), threading.Event()
    task = asyncio.create_task(run_blocking(name, blocker, started, gate, "x", max_workers=1))
    await wait_until(started.is_set)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool_stats()[name].outstanding == 1  # the thread is still busy with it
    gate.set()
    await wait_until(lambda: pool_stats()[name].outstanding == 0)


async def test_two_workers_run_two_jobs_at_the_same_time() -> None:
    name = fresh_pool()
    barrier = threading.Barrier(2, timeout=5)  # passes only if both jobs are inside at once
    spans: list[tuple[float, float]] = []

    def job() -> None:
        begin = time.perf_counter()
        barrier.wait()
        time.sleep(0.05)
        spans.append((begin, time.perf_counter()))

    await asyncio.gather(
        run_blocking(name, job, max_workers=2), run_blocking(name, job, max_workers=2)
    )
    (a0, a1), (b0, b1) = spans
    assert max(a0, b0) < min(a1, b1)  # the intervals overlap


async def test_event_loop_keeps_running_while_a_job_blocks() -> None:
    name = fresh_pool()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    await run_blocking(name, time.sleep, 0.2)
    tick_task.cancel()
    assert ticks >= 10


async def test_errors_propagate_and_free_the_slot() -> None:
    name = fresh_pool()

    def boom() -> None:
        raise ValueError("model exploded")

    with pytest.raises(ValueError, match="model exploded"):
        await run_blocking(name, boom, max_workers=1, max_queue=0)
    assert await run_blocking(name, lambda: 7) == 7


async def test_pool_is_created_once_per_name_and_first_size_wins() -> None:
    name = fresh_pool()
    await run_blocking(name, lambda: None, max_workers=3, max_queue=5)
    await run_blocking(name, lambda: None, max_workers=1, max_queue=1)
    stats = pool_stats()[name]
    assert (stats.max_workers, stats.max_queue) == (3, 5)


async def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_workers"):
        await run_blocking(fresh_pool(), lambda: None, max_workers=0)
    with pytest.raises(ValueError, match="max_queue"):
        await run_blocking(fresh_pool(), lambda: None, max_queue=-1)
