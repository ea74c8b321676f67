"""The once-per-process cache the local voices and the AWS clients share: one build per key, even
when callers race, and nothing kept from a build that failed."""

from __future__ import annotations

import threading
from types import TracebackType

import pytest

from voicebridge.runtime.process_cache import ProcessCache


class WatchedLock:
    """A lock that says when a second caller is waiting at it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals = 0
        self.second_waits = threading.Event()

    def __enter__(self) -> None:
        self.arrivals += 1  # from the caller's thread, before it blocks
        if self.arrivals == 2:
            self.second_waits.set()
        self.lock.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.lock.release()


def test_racing_callers_build_once_and_share_the_result() -> None:
    building, release = threading.Event(), threading.Event()
    builds: list[str] = []

    def build(key: str) -> object:
        builds.append(key)
        building.set()
        assert release.wait(10)
        return object()

    lock = WatchedLock()
    cache: ProcessCache[str, object] = ProcessCache(build, lock=lock)
    got: list[object] = []
    first = threading.Thread(target=lambda: got.append(cache.get("voice")))
    second = threading.Thread(target=lambda: got.append(cache.get("voice")))
    first.start()
    assert building.wait(10)  # the first caller is building, holding the lock
    second.start()
    assert lock.second_waits.wait(10)  # the second missed too and waits for the build
    release.set()
    first.join(10)
    second.join(10)
    assert builds == ["voice"]
    assert len(got) == 2 and got[0] is got[1]
    assert cache.get("voice") is got[0] and builds == ["voice"]  # later: no lock, no build


def test_each_key_is_built_once_and_clear_forgets() -> None:
    builds: list[int] = []

    def build(threads: int) -> list[int]:
        builds.append(threads)
        return [threads]

    cache: ProcessCache[int, list[int]] = ProcessCache(build)
    one, two = cache.get(1), cache.get(2)
    assert (one, two) == ([1], [2])
    assert cache.get(1) is one and cache.get(2) is two
    assert builds == [1, 2]
    cache.clear()
    assert cache.get(1) is not one and builds == [1, 2, 1]


def test_a_build_that_fails_keeps_nothing_and_the_next_caller_tries_again() -> None:
    attempts: list[str] = []

    def build(key: str) -> str:
        attempts.append(key)
        if len(attempts) == 1:
            raise OSError("model file busy")
        return f"{key} loaded"

    cache: ProcessCache[str, str] = ProcessCache(build)
    with pytest.raises(OSError, match="busy"):
        cache.get("voice")
    assert cache.get("voice") == "voice loaded"
    assert cache.get("voice") == "voice loaded" and len(attempts) == 2
