"""Finished calls on disk: the event logs in ``events.dir`` and the WAVs in ``recording.dir``.

Every worker of ``serve --workers N`` writes there, so reading them shows every worker's
finished calls, not only this one's. A call's key is its file's stem; keys come from URLs, so
only names of the event log's own alphabet are looked up, never a path. Files past
``max_bytes`` are not read (a page is not worth a gigabyte of memory). These functions block:
the routes run them in a worker thread.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import wave
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from voicebridge.frames import PCM
from voicebridge.server.call_pages.summary import CallSummary, summarize

KEY: Final = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.~-]{0,119}")
_CACHE_SIZE: Final = 1024


def valid_key(key: str) -> bool:
    return KEY.fullmatch(key) is not None and ".." not in key


def _inside(directory: Path, key: str, suffix: str) -> Path | None:
    if not valid_key(key):
        return None
    path = directory / f"{key}{suffix}"
    return path if path.is_file() else None


@dataclass(frozen=True)
class LoggedCall:
    """A finished call's event log: its header line and its figures."""

    key: str
    path: Path
    ended_at: float  # the file's mtime, seconds since the epoch
    call_id: str
    pipeline: str
    summary: CallSummary


def read_events(path: Path, max_bytes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header line and the events of an event log; lines that are not JSON objects are
    skipped (a file cut short by a crash still shows what it has)."""
    if path.stat().st_size > max_bytes:
        raise ValueError(f"{path.name} is larger than {max_bytes // 2**20} MiB")
    header: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if not isinstance(item, dict):
                continue
            if item.get("kind") == "call" and not header:
                header = item
            elif item.get("kind") != "events_dropped":
                events.append(item)
    return header, events


class EventLogs:
    """The event logs of one directory, newest first; each file's figures are read once (the
    writer never rewrites a file) and remembered for the last ``_CACHE_SIZE`` files."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._cache: OrderedDict[str, LoggedCall] = OrderedDict()

    def path(self, key: str) -> Path | None:
        return _inside(self.directory, key, ".jsonl")

    def recent(self, n: int) -> list[LoggedCall]:
        try:
            with os.scandir(self.directory) as it:
                files = [
                    (entry.stat().st_mtime, entry.name)
                    for entry in it
                    if entry.name.endswith(".jsonl") and entry.is_file()
                ]
        except FileNotFoundError:
            return []
        out = []
        for mtime, name in heapq.nlargest(n, files):
            logged = self._logged(name[: -len(".jsonl")], mtime)
            if logged is not None:
                out.append(logged)
        return out

    def _logged(self, key: str, mtime: float) -> LoggedCall | None:
        cached = self._cache.get(key)
        if cached is not None and cached.ended_at == mtime:
            self._cache.move_to_end(key)
            return cached
        path = self.path(key)
        if path is None:
            return None
        try:
            header, events = read_events(path, self.max_bytes)
        except (OSError, ValueError):
            return None
        logged = LoggedCall(
            key=key,
            path=path,
            ended_at=mtime,
            call_id=str(header.get("call_id", ""))[:128],
            pipeline=str(header.get("pipeline", ""))[:128],
            summary=summarize(events),
        )
        self._cache[key] = logged
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return logged


@dataclass(frozen=True)
class Recording:
    caller: PCM
    agent: PCM
    rate: int


def read_recording(path: Path, max_bytes: int) -> Recording:
    """Both channels of a call's WAV (caller left, agent right, as ``CallRecorder`` writes)."""
    if path.stat().st_size > max_bytes:
        raise ValueError(f"the recording is larger than {max_bytes // 2**20} MiB")
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() not in (1, 2):
            raise ValueError("not a 16-bit mono or stereo WAV")
        channels, rate = w.getnchannels(), w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    frames = data.reshape(-1, channels)
    agent = frames[:, 1] if channels == 2 else np.zeros(0, np.int16)
    return Recording(frames[:, 0].astype(np.int16), agent.astype(np.int16), rate)


def recording_path(directory: str | os.PathLike[str] | None, key: str) -> Path | None:
    return _inside(Path(directory), key, ".wav") if directory else None
