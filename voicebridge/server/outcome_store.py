"""Where the outcomes of placed calls are kept, so that every worker of the service sees them.

Plivo's ``/hangup`` and ``/machine`` callbacks and a campaign's ``GET /calls/{request_uuid}`` may
each reach a different worker of ``serve --workers N``, so an outcome kept in one process's
memory would be lost to the others. A record is a set of named parts (``placed``, ``machine``,
``hangup``, ``report``...), each written whole by one callback: workers never read, change and
write back the same value, so two callbacks at once cannot undo each other.

- ``MemoryOutcomes``: one process (the default).
- ``DirectoryOutcomes``: several workers on one host without Redis. A folder the supervisor made
  before forking (beside the shared metrics), one sub-folder per record, one file per part,
  written atomically (a temporary file renamed into place).
- ``RedisOutcomes``: the service's ``state:`` is Redis; one hash per record, with an expiry.

All keep at most ``max_records`` records for at most ``ttl_s`` seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Final, Protocol

import structlog

log = structlog.get_logger("voicebridge.server.outcomes")

MAX_RECORDS: Final = 50_000
TTL_S: Final = 3 * 24 * 3600.0  # a campaign that resumes the next day still finds its calls
MAX_PART_BYTES: Final = 4096
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")

Parts = dict[str, dict[str, Any]]


class OutcomeStore(Protocol):
    """Records of named parts by key."""

    name: str

    async def put(self, key: str, part: str, value: dict[str, Any], *, first: bool = False) -> None:
        """Write ``part`` of ``key``'s record; with ``first``, only if it has none yet."""
        ...

    async def get(self, key: str) -> Parts:
        """Every part of ``key``'s record ({} when there is none)."""
        ...

    async def close(self) -> None: ...


class MemoryOutcomes:
    """The newest ``max_records`` records of one process."""

    name = "memory"

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self.max_records = max_records
        self._records: OrderedDict[str, Parts] = OrderedDict()

    async def put(self, key: str, part: str, value: dict[str, Any], *, first: bool = False) -> None:
        record = self._records.setdefault(key, {})
        if first and part in record:
            return
        record[part] = dict(value)
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)

    async def get(self, key: str) -> Parts:
        return {part: dict(value) for part, value in self._records.get(key, {}).items()}

    async def close(self) -> None:
        self._records.clear()


def _folder_name(key: str) -> str:
    """A file name for ``key``: itself when it is plain, else its hash (no path tricks)."""
    if _SAFE.match(key) and key not in (".", ".."):
        return key
    return "h-" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:40]


class DirectoryOutcomes:
    """Records as folders of JSON files in a directory every worker of the host shares.

    Old records are pruned now and then (every ``prune_every`` writes): those older than
    ``ttl_s``, then the oldest beyond ``max_records``. File work is small and local; it runs
    inline like the event log's directory listing does."""

    name = "directory"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_records: int = MAX_RECORDS,
        ttl_s: float = TTL_S,
        prune_every: int = 200,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_records = max_records
        self.ttl_s = ttl_s
        self.prune_every = prune_every
        self._writes = 0

    async def put(self, key: str, part: str, value: dict[str, Any], *, first: bool = False) -> None:
        folder = self.directory / _folder_name(key)
        folder.mkdir(exist_ok=True)
        target = folder / f"{_folder_name(part)}.json"
        text = json.dumps(value)[:MAX_PART_BYTES]
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            if first:
                with contextlib.suppress(FileExistsError):  # the first one stays
                    os.link(tmp, target)
            else:
                os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._writes += 1
        if self._writes % self.prune_every == 0:
            self.prune()

    async def get(self, key: str) -> Parts:
        folder = self.directory / _folder_name(key)
        parts: Parts = {}
        try:
            files = list(folder.glob("*.json"))
        except OSError:
            return parts
        for path in files:
            try:
                value = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # pruned meanwhile, or not ours
            if isinstance(value, dict):
                parts[path.stem] = value
        return parts

    def prune(self, now: float | None = None) -> int:
        """Remove records older than ``ttl_s``, then the oldest beyond ``max_records``."""
        now = time.time() if now is None else now
        aged: list[tuple[float, Path]] = []
        for folder in self.directory.iterdir():
            try:
                aged.append((folder.stat().st_mtime, folder))
            except OSError:
                continue
        aged.sort()
        stale = [f for mtime, f in aged if now - mtime > self.ttl_s]
        kept = len(aged) - len(stale)
        stale += [f for _, f in aged[len(stale) : len(stale) + max(0, kept - self.max_records)]]
        for folder in stale:
            shutil.rmtree(folder, ignore_errors=True)
        if stale:
            log.debug("outcomes_pruned", count=len(stale))
        return len(stale)

    async def close(self) -> None:
        return None  # the supervisor removes the directory when the service stops


class RedisOutcomes:
    """One Redis hash per record (``<prefix>:outcome:<key>``), each part a JSON field, expiring
    ``ttl_s`` after its last write. Each operation is bounded by ``timeout_s``."""

    name = "redis"

    def __init__(
        self, url: str, *, ttl_s: float = TTL_S, timeout_s: float = 0.5, prefix: str = "voicebridge"
    ) -> None:
        import redis.asyncio as aioredis

        self.ttl_s = ttl_s
        self.prefix = prefix
        self._client: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}:outcome:{key[:200]}"

    async def put(self, key: str, part: str, value: dict[str, Any], *, first: bool = False) -> None:
        name, text = self._key(key), json.dumps(value)[:MAX_PART_BYTES]
        async with self._client.pipeline(transaction=True) as pipe:
            if first:
                pipe.hsetnx(name, part, text)
            else:
                pipe.hset(name, part, text)
            pipe.expire(name, max(1, int(self.ttl_s)))
            await pipe.execute()

    async def get(self, key: str) -> Parts:
        raw = await self._client.hgetall(self._key(key))
        parts: Parts = {}
        for part, text in raw.items():
            try:
                value = json.loads(text)
            except ValueError:
                continue
            if isinstance(value, dict):
                parts[part.decode() if isinstance(part, bytes) else str(part)] = value
        return parts

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception as exc:  # closing a broken connection must not fail shutdown
            log.debug("outcome_store_close_failed", error=repr(exc)[:200])


def outcome_store(state_url: str, shared_dir: str | None) -> OutcomeStore:
    """Redis when the service's ``state:`` is; else the workers' shared directory when there
    is one (``serve --workers N``); else this process's memory."""
    if state_url.split(":", 1)[0] in ("redis", "rediss", "unix"):
        return RedisOutcomes(state_url)
    if shared_dir:
        return DirectoryOutcomes(shared_dir)
    return MemoryOutcomes()
