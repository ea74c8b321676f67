"""Both stores, the same contract: save/load/delete with expiry, and claims with one winner.
Redis is a real redis-server on a loopback port, killed and restarted to show it going away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from voicebridge.call.snapshot import CallSnapshot, PendingReply
from voicebridge.state.store import (
    MemoryStore,
    RedisStore,
    StateStore,
    StoreError,
    open_store,
)
from voicebridge.testing.redis_server import RedisServer


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def snapshot(call_id: str = "call-1", turn: int = 3) -> CallSnapshot:
    return CallSnapshot(call_id=call_id, stream_id="s1", turn=turn, pending=[PendingReply(3, "x")])


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    redis = RedisStore(server.url, backoff_s=0.0)
    try:
        yield redis
    finally:
        await redis.close()


async def test_save_load_delete(store: StateStore) -> None:
    assert await store.load("call-1") is None
    await store.save("call-1", snapshot(), ttl_s=30)
    assert await store.load("call-1") == snapshot()
    await store.save("call-1", snapshot(turn=5), ttl_s=30)  # a newer save replaces it
    loaded = await store.load("call-1")
    assert loaded is not None and loaded.turn == 5
    assert await store.load("call-2") is None
    await store.delete("call-1")
    assert await store.load("call-1") is None
    await store.delete("call-1")  # deleting twice is fine


async def test_claims_have_one_winner(store: StateStore) -> None:
    results = await asyncio.gather(*(store.claim("call-1:1", f"w{i}", 30) for i in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    assert await store.claim("call-1:2", "w0", 30)  # another epoch is another claim


async def test_memory_store_expires_snapshots_and_claims() -> None:
    clock = FakeTime()
    store = MemoryStore(now=clock)
    await store.save("c", snapshot("c"), ttl_s=10)
    assert await store.claim("c:1", "a", ttl_s=10)
    clock.t += 9.9
    assert await store.load("c") is not None
    assert not await store.claim("c:1", "b", ttl_s=10)
    clock.t += 0.2
    assert await store.load("c") is None
    assert await store.claim("c:1", "b", ttl_s=10)


async def test_redis_expires_snapshots(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)
    try:
        await store.save("c", snapshot("c"), ttl_s=0.05)
        assert await store.load("c") is not None
        # Redis' own expiry, observed through PEXPIRETIME-free polling with a bound.
        for _ in range(200):
            if await store.load("c") is None:
                break
            await asyncio.sleep(0.01)
        assert await store.load("c") is None
    finally:
        await store.close()


async def test_redis_going_away_and_coming_back(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, timeout_s=0.5, backoff_s=0.0)
    try:
        await store.save("c", snapshot("c"), ttl_s=30)
        redis_server.stop()
        with pytest.raises(StoreError, match="redis save failed"):
            await store.save("c", snapshot("c", turn=7), ttl_s=30)
        with pytest.raises(StoreError):
            await store.load("c")
        assert store.failures == 2
        redis_server.start()  # same port, empty (nothing is persisted)
        await store.save("c", snapshot("c", turn=8), ttl_s=30)
        loaded = await store.load("c")
        assert loaded is not None and loaded.turn == 8
    finally:
        await store.close()


async def test_redis_backs_off_after_a_failure(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, timeout_s=0.5, backoff_s=60.0)
    try:
        redis_server.stop()
        with pytest.raises(StoreError, match="failed"):
            await store.load("c")
        redis_server.start()
        # Within the back-off nothing waits on the network: it fails at once.
        with pytest.raises(StoreError, match="backing off"):
            await store.load("c")
        assert store.failures == 1
    finally:
        await store.close()


async def test_unreadable_snapshot_in_redis_is_ignored(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)
    try:
        await store._client.set("voicebridge:snap:c", '{"version": 0}')
        assert await store.load("c") is None
    finally:
        await store.close()


def test_open_store() -> None:
    assert isinstance(open_store("memory"), MemoryStore)
    assert isinstance(open_store("redis://127.0.0.1:1/0"), RedisStore)
    with pytest.raises(ValueError, match="expected 'memory' or a redis:// URL"):
        open_store("postgres://x")
