"""Where call snapshots are kept between a dropped socket and its reconnect.

``MemoryStore`` serves one process (the default). ``RedisStore`` lets any worker on any host
resume a call another one held. The store is a resilience aid, never on the media path: every
operation is bounded by a timeout and fails with ``StoreError``, which callers log and count
while the live call goes on. A claim (SET NX with expiry) makes sure exactly one party acts on a
suspended call: the worker that resumes it, or the one that finalises it when nobody came back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import structlog

from voicebridge.call.snapshot import CallSnapshot, SnapshotError

log = structlog.get_logger("voicebridge.state")

T = TypeVar("T")


class StoreError(RuntimeError):
    """The store could not be reached or answered in time."""


class StateStore(Protocol):
    """Snapshots by call id, with expiry, and one-winner claims."""

    name: str

    async def save(self, call_id: str, snapshot: CallSnapshot, ttl_s: float) -> None: ...

    async def load(self, call_id: str) -> CallSnapshot | None: ...

    async def delete(self, call_id: str) -> None: ...

    async def claim(self, key: str, owner: str, ttl_s: float) -> bool:
        """True for the first caller with ``key`` until it expires; False for everyone else."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """A dict with expiries: the default for a single process."""

    name = "memory"

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._snapshots: dict[str, tuple[float, str]] = {}
        self._claims: dict[str, tuple[float, str]] = {}

    def _live(self, table: dict[str, tuple[float, str]], key: str) -> str | None:
        item = table.get(key)
        if item is None:
            return None
        if item[0] <= self._now():
            del table[key]
            return None
        return item[1]

    async def save(self, call_id: str, snapshot: CallSnapshot, ttl_s: float) -> None:
        # Stored as JSON, like Redis does, so both stores prove the same round trip.
        self._snapshots[call_id] = (self._now() + ttl_s, snapshot.to_json())

    async def load(self, call_id: str) -> CallSnapshot | None:
        text = self._live(self._snapshots, call_id)
        return None if text is None else CallSnapshot.from_json(text)

    async def delete(self, call_id: str) -> None:
        self._snapshots.pop(call_id, None)

    async def claim(self, key: str, owner: str, ttl_s: float) -> bool:
        if self._live(self._claims, key) is not None:
            return False
        self._claims[key] = (self._now() + ttl_s, owner)
        return True

    async def close(self) -> None:
        self._snapshots.clear()
        self._claims.clear()


class RedisStore:
    """Snapshots in Redis (``redis.asyncio``), shared by every worker and host.

    Each operation has ``timeout_s``; after a failure the store answers ``StoreError`` at once
    for ``backoff_s`` (a Redis that went away costs calls nothing), then tries again: saving
    resumes by itself when Redis comes back.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.5,
        backoff_s: float = 1.0,
        prefix: str = "voicebridge",
    ) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - the extra is part of "all"
            raise StoreError(
                "state: redis://… needs the redis package: pip install 'voicebridge[redis]'"
            ) from exc
        self.url = url
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.prefix = prefix
        self.failures = 0
        self._down_until = 0.0
        self._down = False
        self._client: Any = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
            health_check_interval=0,
        )

    def _key(self, kind: str, key: str) -> str:
        return f"{self.prefix}:{kind}:{key}"

    async def _run(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        if now < self._down_until:
            raise StoreError(f"redis unavailable (backing off after a failure): {what}")
        try:
            result = await asyncio.wait_for(op(), self.timeout_s)
        except (OSError, TimeoutError) as exc:
            self._failed(what, exc)
            raise StoreError(f"redis {what} failed: {exc!r}"[:300]) from None
        except Exception as exc:  # redis.exceptions.RedisError and friends
            if type(exc).__module__.startswith("redis"):
                self._failed(what, exc)
                raise StoreError(f"redis {what} failed: {exc!r}"[:300]) from None
            raise
        if self._down:
            self._down = False
            log.info("state_store_recovered", store="redis", failures=self.failures)
        return result

    def _failed(self, what: str, exc: BaseException) -> None:
        self.failures += 1
        self._down_until = time.monotonic() + self.backoff_s
        if not self._down:
            self._down = True
            log.warning("state_store_unavailable", store="redis", op=what, error=repr(exc)[:200])

    async def save(self, call_id: str, snapshot: CallSnapshot, ttl_s: float) -> None:
        ms = max(1, int(ttl_s * 1000))
        key, text = self._key("snap", call_id), snapshot.to_json()
        await self._run("save", lambda: self._client.set(key, text, px=ms))

    async def load(self, call_id: str) -> CallSnapshot | None:
        key = self._key("snap", call_id)
        raw = await self._run("load", lambda: self._client.get(key))
        if raw is None:
            return None
        try:
            return CallSnapshot.from_json(raw)
        except SnapshotError as exc:
            log.warning("snapshot_unreadable", call_id=call_id[:64], error=str(exc)[:200])
            return None

    async def delete(self, call_id: str) -> None:
        key = self._key("snap", call_id)
        await self._run("delete", lambda: self._client.delete(key))

    async def claim(self, key: str, owner: str, ttl_s: float) -> bool:
        ms = max(1, int(ttl_s * 1000))
        name = self._key("claim", key)
        won = await self._run("claim", lambda: self._client.set(name, owner, nx=True, px=ms))
        return bool(won)

    async def ping(self) -> bool:
        try:
            return bool(await self._run("ping", lambda: self._client.ping()))
        except StoreError:
            return False

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception as exc:  # closing a broken connection must not fail shutdown
            log.debug("state_store_close_failed", error=repr(exc)[:200])


def open_store(url: str, *, timeout_s: float = 0.5, backoff_s: float = 1.0) -> StateStore:
    """``memory`` or ``redis://host:port/db`` (also ``rediss://`` and ``unix://``)."""
    if url == "memory":
        return MemoryStore()
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss", "unix"):
        return RedisStore(url, timeout_s=timeout_s, backoff_s=backoff_s)
    raise ValueError(f"state: expected 'memory' or a redis:// URL, got {url!r}")
