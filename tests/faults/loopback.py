"""Helpers for fault tests against the real service on loopback: find each call's session, run
a clean call in lockstep with it, and check that everything a call held was released."""

from __future__ import annotations

import asyncio
from typing import Any

from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import RunningService
from voicebridge.session import Session
from voicebridge.sim.caller import CallRecord, PlivoCaller
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.signals import utterances

FMT = StreamFormat("audio/x-l16", 8000)
CLEAN_AUDIO = utterances([("silence", 0.3), ("speech", 0.8), ("silence", 1.5)], 8000)


class Sessions(SessionWatch):
    """``on_session`` hook that keeps every session the service made, for lockstep callers
    (by stream id) and for checking how each call ended."""

    def of(self, stream_id: str) -> Session | None:
        for session in self.all:
            if session.ctx is not None and session.ctx.info.stream_id == stream_id:
                return session
        return None

    async def lockstep(  # type: ignore[override]
        self, caller: PlivoCaller, find: Any = None, *, timeout_s: float = 60.0
    ) -> None:
        finder = find or (lambda: self.of(caller.record.stream_id))
        await super().lockstep(caller, finder, timeout_s=timeout_s)


async def clean_call(service: RunningService, sessions: Sessions) -> CallRecord:
    caller = PlivoCaller(service.ws_url, FMT, speed=float("inf"), probe=sessions.lockstep)
    return await caller.run(CLEAN_AUDIO, tail_s=0.5)


def summary(record: CallRecord) -> tuple[Any, ...]:
    """What a call heard and acknowledged, and how it ended: equal for equal calls."""
    plays = record.sent_by_agent("playAudio")
    return (
        tuple(record.protocol_errors),
        tuple(e.message["name"] for e in record.sent_by_agent("checkpoint")),
        tuple(e.message["name"] for e in record.sent_by_caller("playedStream")),
        sum(p.message["media"]["payload_bytes"] for p in plays),
        record.closed_by,
        record.close_code,
    )


async def eventually(predicate: Any, limit_s: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``limit_s`` passes (for the server side of a close,
    which the client cannot await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return bool(predicate())


async def assert_released(service: RunningService, sessions: Sessions, tasks_before: int) -> None:
    """Every call gone from the registry, every session ended, no task left behind."""
    calls = service.app.state.calls
    assert await eventually(lambda: len(calls) == 0), f"{len(calls)} calls still registered"
    assert all(s.ended.is_set() for s in sessions.all)
    assert await eventually(lambda: len(asyncio.all_tasks()) <= tasks_before), [
        t.get_name() for t in asyncio.all_tasks()
    ]
