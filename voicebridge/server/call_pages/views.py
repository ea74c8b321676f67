"""The call pages' routes: the list, a call's page, its events as JSON, its recording.

``GET /calls`` is the list (``POST /calls`` places an outbound call: another route). A call's
page is ``/calls/{key}/page``, drawn by the simulator's renderer (``render_html``) from what the
call recorded: its events (in memory, or its event log) and its recording, when there is one.
Pages are drawn in a worker thread, at most ``_RENDERS`` at a time: a page of a long recorded
call takes real CPU, and the event loop is busy carrying calls.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import structlog
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from voicebridge.config.service_settings import CallPageSettings
from voicebridge.server.call_pages import live
from voicebridge.server.call_pages.auth import SECURITY_HEADERS, refuse
from voicebridge.server.call_pages.disk import (
    EventLogs,
    read_events,
    read_recording,
    recording_path,
    valid_key,
)
from voicebridge.server.call_pages.listing import Row, list_page
from voicebridge.server.call_pages.report import report_from_events
from voicebridge.server.call_pages.store import CallEntry, CallStore
from voicebridge.sim.callpage.audio import Audio, embed_audio
from voicebridge.sim.callpage.timeline import call_duration
from voicebridge.sim.html_report import PageExtras, render_html

log = structlog.get_logger("voicebridge.server.call_pages")

_RENDERS: Final = 2
MAX_EVENTS_PER_POLL: Final = 500
_MIB: Final = 1 << 20


@dataclass
class _Source:
    """Where one call's page comes from."""

    key: str
    pipeline: str
    live: bool
    count: int
    events: list[dict[str, Any]] | None  # None: read from log
    log: Path | None
    wav: Path | None


class CallPages:
    """The pages of one service process."""

    def __init__(
        self,
        settings: CallPageSettings,
        store: CallStore,
        *,
        key: str | None,
        events_dir: str | None,
        recording_dir: str | None,
        max_call_seconds: float,
    ) -> None:
        self.settings = settings
        self.store = store
        self.key = key
        self.logs = EventLogs(events_dir, int(settings.max_file_mb * _MIB)) if events_dir else None
        self.recording_dir = recording_dir
        self.max_polls = math.ceil(max_call_seconds / settings.poll_s) + 60
        self._renders = asyncio.Semaphore(_RENDERS)

    def routes(self) -> list[Route]:
        return [
            Route("/calls", self._guard(self.list_calls), methods=["GET"]),
            Route("/calls/{key}/page", self._guard(self.call_page), methods=["GET"]),
            Route("/calls/{key}/events", self._guard(self.call_events), methods=["GET"]),
            Route("/calls/{key}/recording.wav", self._guard(self.recording), methods=["GET"]),
        ]

    def _guard(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def guarded(request: Request) -> Response:
            refused = refuse(request, self.key, self.settings.enabled)
            if refused is not None:
                return refused
            response: Response = await handler(request)
            response.headers.update(SECURITY_HEADERS)
            return response

        return guarded

    # --- the list ---------------------------------------------------------------------------------
    async def list_calls(self, request: Request) -> Response:
        rows = [
            Row(e.key, e.call_id, e.pipeline, e.started_at, e.live, e.summary)
            for e in self.store.entries()
        ]
        note = "This worker's recent calls"
        if self.logs is not None:
            logs = self.logs
            logged = await asyncio.to_thread(logs.recent, self.settings.keep_calls)
            shown = {e.log_path.name for e in self.store.entries() if e.log_path is not None}
            rows += [
                Row(
                    c.key,
                    c.call_id,
                    c.pipeline,
                    c.ended_at - c.summary.duration_s,
                    False,
                    c.summary,
                )
                for c in logged
                if c.path.name not in shown
            ]
            rows.sort(key=lambda r: (r.live, r.started_at or 0.0), reverse=True)
            note += ", and the finished calls of every worker (events.dir)"
        return HTMLResponse(list_page(rows, note + ", newest first."))

    # --- one call ---------------------------------------------------------------------------------
    def _source(self, key: str) -> _Source | None:
        if not valid_key(key):
            return None
        entry: CallEntry | None = self.store.get(key)
        if entry is not None:
            return _Source(
                key,
                entry.pipeline,
                entry.live,
                entry.count,
                None if entry.events is None else list(entry.events),
                entry.log_path,
                entry.recording_path,
            )
        path = self.logs.path(key) if self.logs is not None else None
        if path is None:
            return None
        return _Source(key, "", False, 0, None, path, recording_path(self.recording_dir, key))

    async def call_page(self, request: Request) -> Response:
        source = self._source(request.path_params["key"])
        if source is None:
            return _not_here()
        async with self._renders:
            try:
                page = await asyncio.to_thread(self._render, source)
            except (OSError, ValueError) as exc:
                log.warning("call_page_failed", key=source.key, error=str(exc)[:200])
                return HTMLResponse(f"this call's page cannot be drawn: {exc}"[:300], 500)
        return HTMLResponse(page)

    def _render(self, source: _Source) -> str:
        events, pipeline = source.events, source.pipeline
        if events is None:
            if source.log is None:
                raise ValueError("its events are neither in memory nor on disk")
            header, events = read_events(source.log, int(self.settings.max_file_mb * _MIB))
            pipeline = pipeline or str(header.get("pipeline", ""))[:128]
        report = report_from_events(events, pipeline=pipeline, live=source.live)
        empty = np.zeros(0, np.int16)
        caller, agent, rate = empty, empty, report.sample_rate
        note = "This call was not recorded (recording.dir is off)."
        if source.live:
            note = "The call's audio is on this page once the call has ended, if it is recorded."
        elif source.wav is not None:
            try:
                recorded = read_recording(source.wav, int(self.settings.max_file_mb * _MIB))
            except ValueError as exc:  # too large to draw (or not ours): the link still serves
                note = f"The recording is not drawn: {exc}; the link above gives its WAV."
            else:
                caller, agent, rate = recorded.caller, recorded.agent, recorded.rate
                note = ""
        audio = Audio([], note)
        if caller.size:
            n = math.ceil(call_duration(report, caller, agent, rate) * rate)
            budget = int(self.settings.audio_budget_mb * _MIB)
            audio = embed_audio(caller, agent, rate, n, budget)
            if audio.note:
                audio = Audio(
                    audio.tracks,
                    "Long recording: the players are left out of the "
                    "page; the link above gives its WAV.",
                )
        extras = PageExtras(
            top=live.nav(
                source.key,
                live=source.live,
                after=source.count,
                poll_s=self.settings.poll_s,
                max_polls=self.max_polls,
                wav=source.wav is not None and not source.live,
            ),
            script=live.SCRIPT if source.live else "",
            connect_src="'self'",
        )
        return render_html(report, caller, agent, rate, audio=audio, extras=extras)

    async def call_events(self, request: Request) -> Response:
        """``{"key", "live", "next", "dropped", "events"}``: the call's events from ``after``
        on (at most ``MAX_EVENTS_PER_POLL``), and ``next``, the ``after`` of the next ask."""
        key = request.path_params["key"]
        try:
            after = max(0, int(request.query_params.get("after", "0")))
        except ValueError:
            return JSONResponse({"error": "after: expected a whole number"}, 400)
        entry = self.store.get(key) if valid_key(key) else None
        if entry is not None and entry.events is not None:
            events, live_now, count, dropped = entry.events, entry.live, entry.count, entry.dropped
        else:
            source = self._source(key)
            if source is None or source.log is None:
                return _not_here(json=True)
            logfile = source.log
            _, events = await asyncio.to_thread(
                read_events, logfile, int(self.settings.max_file_mb * _MIB)
            )
            live_now, count, dropped = False, len(events), 0
        chunk = events[after : after + MAX_EVENTS_PER_POLL]
        return JSONResponse(
            {
                "key": key,
                "live": live_now,
                "next": after + len(chunk) if chunk else max(count, after),
                "dropped": dropped,
                "events": chunk,
            }
        )

    async def recording(self, request: Request) -> Response:
        source = self._source(request.path_params["key"])
        if source is None or source.wav is None or source.live:
            return _not_here()
        return FileResponse(source.wav, media_type="audio/wav", filename=source.wav.name)


def _not_here(json: bool = False) -> Response:
    message = (
        "no such call here: it is older than the calls kept, or another worker has it "
        "(set events.dir to see every worker's finished calls)"
    )
    if json:
        return JSONResponse({"error": message}, 404)
    return HTMLResponse(message, 404)
