"""Things that are slow to build and safe to share (a voice, a model, an SDK client), built once
per process for each key and then shared by every call.

They are asked for from many threads at once (the worker pools, ``asyncio.to_thread``), and two
callers must not both build the same thing: a voice costs a second and tens of megabytes. A
lookup of something already built takes no lock, so a call never waits behind another key's load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

__all__ = ["ProcessCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ProcessCache(Generic[K, V]):
    """``build(key)`` run at most once per key, its result kept for the life of the process.

    ``lock`` is the lock builds run under; pass one when a build must also exclude other code
    (boto3 sessions, say, that are not safe to use from two threads at once).
    """

    def __init__(
        self, build: Callable[[K], V], *, lock: AbstractContextManager[Any] | None = None
    ) -> None:
        self._build = build
        self._lock: AbstractContextManager[Any] = lock if lock is not None else threading.Lock()
        self._built: dict[K, V] = {}

    def get(self, key: K) -> V:
        """The thing for ``key``, built (blocking) by the first caller; the rest wait for it.
        A build that raises keeps nothing, so the next caller tries again."""
        try:
            return self._built[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._built:
                self._built[key] = self._build(key)
            return self._built[key]

    def clear(self) -> None:
        """Forget everything built (tests; settings that changed under a running process)."""
        with self._lock:
            self._built.clear()
