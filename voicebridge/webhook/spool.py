"""Undelivered webhook documents on disk: one file each, so delivery survives a restart.

A document is written atomically (a temporary file, flushed, then renamed into place) before
its first attempt and deleted once the receiver took it. The number of attempts so far is part
of the file's name (``<created ns>-<key>.<attempts>.json``) and moves with a rename, so the
retry limit holds across restarts too. Past the limit, or when the spool is full, a document is
moved to ``dead/`` (itself bounded: the oldest dead letters are deleted) and logged.

Several processes may share one spool folder (``serve --workers N``): each works in a shard of
its own (``shard-<n>``) that it holds an exclusive ``flock`` on while it runs. A process
starting up takes the first free shard and adopts the files of every other shard nobody holds
(a process that stopped and did not come back), so no document is orphaned and none is sent by
two processes at once. Every method here does file I/O: the worker calls them in a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

log = structlog.get_logger("voicebridge.webhook")

MAX_SHARDS: Final = 256
_ENTRY = re.compile(r"(?P<created>\d{1,20})-(?P<key>[0-9a-f]{1,64})\.(?P<attempts>\d{1,4})\.json")
_LOCK: Final = ".lock"


@dataclass(slots=True)
class SpoolEntry:
    """One document waiting for delivery."""

    key: str
    created_ns: int
    attempts: int
    size: int
    path: Path

    @property
    def name(self) -> str:
        return f"{self.created_ns:020d}-{self.key}.{self.attempts}.json"


class Spool:
    """This process's shard of the spool folder, and the shared dead-letter folder."""

    def __init__(self, root: Path, *, max_files: int, max_bytes: int, max_dead: int) -> None:
        self.root = root
        self.dead_dir = root / "dead"
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.max_dead = max_dead
        self.shard: Path | None = None
        self._lock_fd: int | None = None
        self.entries: dict[str, SpoolEntry] = {}
        self.bytes = 0

    # --- claiming a shard -------------------------------------------------------------------
    def open(self) -> list[SpoolEntry]:
        """Take a free shard, adopt the files of unheld ones; the documents waiting, oldest
        first."""
        self.root.mkdir(parents=True, exist_ok=True)
        for n in range(MAX_SHARDS):
            shard = self.root / f"shard-{n}"
            fd = _try_lock(shard)
            if fd is not None:
                self.shard, self._lock_fd = shard, fd
                break
        else:
            raise RuntimeError(f"{self.root}: all {MAX_SHARDS} spool shards are in use")
        for other in sorted(self.root.glob("shard-*")):
            if other == self.shard or not other.is_dir():
                continue
            fd = _try_lock(other)
            if fd is None:
                continue  # a live process holds it
            try:
                for path in other.glob("*.json"):
                    os.replace(path, self.shard / path.name)
            finally:
                os.close(fd)
        for stale in self.shard.glob(".tmp-*"):
            stale.unlink(missing_ok=True)  # a write cut short by a crash: never renamed in
        for path in self.shard.glob("*.json"):
            match = _ENTRY.fullmatch(path.name)
            if match is None:
                continue
            entry = SpoolEntry(
                match["key"],
                int(match["created"]),
                int(match["attempts"]),
                path.stat().st_size,
                path,
            )
            self._add(entry)
        self._enforce_bounds(keep=None)
        return sorted(self.entries.values(), key=lambda e: e.created_ns)

    def close(self) -> None:
        """Release the shard (its files stay for the next process)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- documents --------------------------------------------------------------------------
    def write(self, key: str, body: bytes, created_ns: int) -> SpoolEntry:
        """Keep ``body`` on disk (atomically); evicts the oldest to ``dead/`` when full."""
        shard = self._shard()
        old = self.entries.get(key)
        if old is not None:
            self._remove(old)
            old.path.unlink(missing_ok=True)
        entry = SpoolEntry(key, created_ns, 0, len(body), shard)
        entry.path = shard / entry.name
        tmp = shard / f".tmp-{entry.name}"
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, entry.path)
        self._add(entry)
        self._enforce_bounds(keep=entry)
        return entry

    def read(self, entry: SpoolEntry) -> bytes:
        return entry.path.read_bytes()

    def delivered(self, entry: SpoolEntry) -> None:
        self._remove(entry)
        entry.path.unlink(missing_ok=True)

    def failed(self, entry: SpoolEntry) -> None:
        """One more failed attempt, recorded in the file's name."""
        entry.attempts += 1
        new = entry.path.with_name(entry.name)
        with contextlib.suppress(FileNotFoundError):
            os.replace(entry.path, new)
        entry.path = new

    def dead(self, entry: SpoolEntry, why: str) -> Path | None:
        """Give up on ``entry``: move it to ``dead/`` (or delete it with ``max_dead: 0``)."""
        self._remove(entry)
        if self.max_dead <= 0:
            entry.path.unlink(missing_ok=True)
            return None
        self.dead_dir.mkdir(parents=True, exist_ok=True)
        target = self.dead_dir / entry.name
        try:
            os.replace(entry.path, target)
        except FileNotFoundError:
            return None
        log.error(
            "webhook_dead_letter",
            key=entry.key,
            attempts=entry.attempts,
            why=why[:200],
            path=str(target),
        )
        dead = sorted(self.dead_dir.glob("*.json"))
        for old in dead[: max(0, len(dead) - self.max_dead)]:
            old.unlink(missing_ok=True)  # names sort by creation: the oldest go first
        return target

    # --- bookkeeping ------------------------------------------------------------------------
    def _shard(self) -> Path:
        if self.shard is None:
            raise RuntimeError("the spool is not open")
        return self.shard

    def _add(self, entry: SpoolEntry) -> None:
        self.entries[entry.key] = entry
        self.bytes += entry.size

    def _remove(self, entry: SpoolEntry) -> None:
        if self.entries.pop(entry.key, None) is not None:
            self.bytes -= entry.size

    def _enforce_bounds(self, keep: SpoolEntry | None) -> None:
        while len(self.entries) > self.max_files or self.bytes > self.max_bytes:
            oldest = min(
                (e for e in self.entries.values() if e is not keep),
                key=lambda e: e.created_ns,
                default=None,
            )
            if oldest is None:
                break
            self.dead(oldest, "spool_full")


def _try_lock(shard: Path) -> int | None:
    """An open descriptor holding ``shard``'s exclusive lock, or None when another holds it."""
    shard.mkdir(parents=True, exist_ok=True)
    fd = os.open(shard / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
