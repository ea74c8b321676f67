"""Process-wide worker pools for blocking inference (speech models), shared by every call.

Transcription and synthesis are CPU-bound calls into native code (CTranslate2, onnxruntime) that
release the GIL. Running them on the event loop would stall every other call's 20 ms audio, so
they run here, in one bounded thread pool per name (``"whisper"``, ``"hibari"``, ``"piper"``),
created on first use. The bound is the point: when the server is overloaded a job is refused with
:class:`WorkerPoolFull` instead of queueing without limit and answering callers seconds late.

Cancelling the awaiting task (barge-in, call end) discards the job's result; a job still waiting
for a thread is withdrawn and never runs, one already running finishes in its thread and its slot
is freed then (the CPU really is busy until it does).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "PoolStats",
    "WorkerPoolFull",
    "pool_stats",
    "run_blocking",
    "shutdown_pools",
]


class WorkerPoolFull(RuntimeError):
    """A pool already holds as many jobs as it may; the job was refused, not queued."""

    def __init__(self, pool_name: str, max_workers: int, max_queue: int) -> None:
        super().__init__(
            f"worker pool {pool_name!r} is full: {max_workers} job(s) running and {max_queue} "
            "waiting; the server is overloaded (add workers/CPU or take fewer calls)"
        )
        self.pool_name = pool_name
        self.max_workers = max_workers
        self.max_queue = max_queue


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of one pool, for logs and metrics."""

    max_workers: int
    max_queue: int
    outstanding: int  # jobs admitted and not yet finished (running + waiting)


class _Pool:
    """One named executor plus a non-blocking admission bound.

    The bound is a plain counter under a thread lock rather than an ``asyncio.Semaphore``: pools
    outlive event loops (tests run one loop per test; a server may run several), and admission
    never waits, it either takes a slot or refuses.
    """

    def __init__(self, name: str, max_workers: int, max_queue: int) -> None:
        self.name = name
        self.max_workers = max_workers
        self.max_queue = max_queue
        self.capacity = max_workers + max_queue
        self.executor = ThreadPoolExecutor(max_workers, thread_name_prefix=f"vb-{name}")
        self._lock = threading.Lock()
        self.outstanding = 0

    def acquire(self) -> None:
        with self._lock:
            if self.outstanding >= self.capacity:
                raise WorkerPoolFull(self.name, self.max_workers, self.max_queue)
            self.outstanding += 1

    def release(self, _future: Future[Any] | None = None) -> None:
        with self._lock:
            self.outstanding -= 1


_pools: dict[str, _Pool] = {}
_pools_lock = threading.Lock()


def _get_pool(name: str, max_workers: int, max_queue: int) -> _Pool:
    pool = _pools.get(name)
    if pool is not None:
        return pool
    if max_workers < 1:
        raise ValueError(f"worker pool {name!r}: max_workers must be >= 1, got {max_workers}")
    if max_queue < 0:
        raise ValueError(f"worker pool {name!r}: max_queue must be >= 0, got {max_queue}")
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None:
            pool = _pools[name] = _Pool(name, max_workers, max_queue)
        return pool


async def run_blocking(
    pool_name: str,
    fn: Callable[..., T],
    *args: Any,
    max_workers: int = 2,
    max_queue: int = 64,
) -> T:
    """Run ``fn(*args)`` in the named process-wide pool and await its result.

    The pool is created by the first call that names it; its ``max_workers``/``max_queue`` win
    (later values are ignored), so every call of a service shares one bound per model. At most
    ``max_queue`` jobs may wait for a thread beyond the ``max_workers`` running; past that the job
    is refused with :class:`WorkerPoolFull`.
    """
    pool = _get_pool(pool_name, max_workers, max_queue)
    pool.acquire()
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    try:
        future = pool.executor.submit(call)
    except BaseException:
        pool.release()
        raise
    # Fires when the job finishes, fails, or is withdrawn before it started.
    future.add_done_callback(pool.release)
    # Cancelling the asyncio side cancels the concurrent future: a job that has not started is
    # withdrawn (ThreadPoolExecutor skips cancelled work items); a running one is left to finish.
    return await asyncio.wrap_future(future)


def pool_stats() -> dict[str, PoolStats]:
    """Every pool created so far, by name."""
    with _pools_lock:
        pools = list(_pools.values())
    return {p.name: PoolStats(p.max_workers, p.max_queue, p.outstanding) for p in pools}


def shutdown_pools(*, wait: bool = False) -> None:
    """Forget every pool (service shutdown, tests); jobs not started yet are cancelled."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.executor.shutdown(wait=wait, cancel_futures=True)
