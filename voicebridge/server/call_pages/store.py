"""The service-wide ring of recent calls the call pages read, fed by one subscriber per call.

Memory stays bounded: at most ``keep_calls`` calls (the oldest finished one leaves first), each
with at most ``max_events`` events (past that they are counted, not kept). A finished call whose
event log was written to ``events.dir`` lets go of its events: its page reads the file.
Everything here runs on the event loop; the page renderer gets copies.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebridge.call.events import CallAnswered, CallEvent
from voicebridge.observe.recording import CallRecorder, EventLogWriter, call_file_stem
from voicebridge.server.call_pages.summary import CallSummary


@dataclass
class CallEntry:
    """One call as the pages see it. ``key`` names it in URLs (letters, digits, ``_ . - ~``)."""

    key: str
    call_id: str
    stream_id: str
    pipeline: str
    started_at: float  # wall clock, seconds since the epoch
    max_events: int
    events: list[dict[str, Any]] | None = field(default_factory=list)  # None: read log_path
    count: int = 0  # events seen, kept or not: a live page reloads when it grows
    dropped: int = 0
    live: bool = True
    summary: CallSummary = field(default_factory=CallSummary)
    log_path: Path | None = None
    recording_path: Path | None = None

    def add(self, event: dict[str, Any]) -> None:
        self.count += 1
        self.summary.on_event(event)
        if self.events is None:
            return
        if len(self.events) >= self.max_events and event.get("kind") != "call_ended":
            self.dropped += 1
            return
        self.events.append(event)

    def finish(self, log_path: Path | None, recording_path: Path | None) -> None:
        """The call's files are written: keep their paths, and let go of events on disk."""
        self.live = False
        self.log_path = log_path
        self.recording_path = recording_path
        if log_path is not None and log_path.is_file():
            self.events = None


class CallStore:
    """Recent and live calls of this process, newest last."""

    def __init__(self, keep_calls: int = 50, max_events: int = 2000) -> None:
        self.keep_calls = keep_calls
        self.max_events = max_events
        self._calls: OrderedDict[str, CallEntry] = OrderedDict()

    def open(self, answered: CallAnswered, pipeline: str) -> CallEntry:
        stem = call_file_stem(answered.call_id, answered.stream_id, answered.epoch)
        key, n = stem, 1
        while key in self._calls:
            n += 1
            key = f"{stem}~{n}"
        entry = CallEntry(
            key=key,
            call_id=answered.call_id[:128],
            stream_id=answered.stream_id[:128],
            pipeline=pipeline,
            started_at=time.time(),
            max_events=self.max_events,
        )
        self._calls[key] = entry
        self._evict()
        return entry

    def _evict(self) -> None:
        while len(self._calls) > self.keep_calls:
            oldest = next((k for k, e in self._calls.items() if not e.live), None)
            self._calls.pop(oldest if oldest is not None else next(iter(self._calls)))

    def get(self, key: str) -> CallEntry | None:
        return self._calls.get(key)

    def entries(self) -> list[CallEntry]:
        """Newest first."""
        return list(reversed(self._calls.values()))

    def watcher(
        self,
        pipeline: str,
        recorder: CallRecorder | None = None,
        event_log: EventLogWriter | None = None,
    ) -> CallWatcher:
        """The subscriber for one call. Put it after ``recorder`` and ``event_log`` in the
        call's subscribers: it closes after them, when their files are written."""
        return CallWatcher(self, pipeline, recorder, event_log)


class CallWatcher:
    """Per-call subscriber: copies the call's timeline events (as JSON data) into its entry."""

    def __init__(
        self,
        store: CallStore,
        pipeline: str,
        recorder: CallRecorder | None,
        event_log: EventLogWriter | None,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.recorder = recorder
        self.event_log = event_log
        self.entry: CallEntry | None = None

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, CallAnswered) and self.entry is None:
            self.entry = self.store.open(event, self.pipeline)
        if self.entry is not None:
            # Through JSON, as the event log writes it: the page reads both the same way.
            self.entry.add(json.loads(json.dumps(event.as_dict(), default=str)))

    async def close(self) -> None:
        if self.entry is None:
            return
        recording = self.recorder.path if self.recorder is not None else None
        self.entry.finish(
            self.event_log.path if self.event_log is not None else None,
            recording if recording is not None and recording.is_file() else None,
        )
