"""A whole simulated call: the real service on a loopback port, a scripted caller, one record.

Real time plays the call at the pace Plivo would (latencies include compute). Virtual time
(``fast``) runs caller and server in lockstep on the call's own clock: the caller sends its next
20 ms frame only when the service has processed everything and its replies have arrived, so the
call is reproducible and takes only as long as the computing does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicebridge.call.context import HistoryEntry
from voicebridge.call.events import CallEvent
from voicebridge.clock import StreamClock
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.config.service_settings import ServiceSettings
from voicebridge.frames import PCM
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import running_service
from voicebridge.sim.answer import answer_call
from voicebridge.sim.caller import CallRecord, Keypress, PlivoCaller
from voicebridge.sim.lockstep import SessionWatch


@dataclass
class CallerLine:
    """One thing the caller says: the words (when known) and the audio at the stream rate; or,
    with ``keys``, digits pressed on the keypad (``pcm`` is then empty)."""

    text: str | None
    pcm: PCM
    keys: Keypress | None = None
    interrupt_after_s: float | None = None  # barge in this long into the agent's speech before


@dataclass
class SimulatedCall:
    """What the wire showed, plus what the service knew inside (transcripts, heard text)."""

    pipeline: str
    fmt: StreamFormat
    mode: str
    lines: list[CallerLine]
    record: CallRecord
    events: list[CallEvent] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    end_reason: str | None = None


async def simulate_call(
    spec: PipelineSpec,
    fmt: StreamFormat,
    lines: Sequence[CallerLine],
    *,
    fast: bool = True,
    settings: ServiceSettings | None = None,
    gap_s: float = 0.8,
    reply_timeout_s: float = 15.0,
    first_wait_s: float = 1.5,
    tail_s: float = 1.0,
    interrupt_after_s: float | None = None,
    more: Callable[[int, Sequence[HistoryEntry]], Awaitable[CallerLine | None]] | None = None,
) -> SimulatedCall:
    """Run ``lines`` as a conversation against ``spec`` served on a loopback port; then, with
    ``more``, the lines it returns, given the conversation as the service knows it so far.

    ``interrupt_after_s`` makes every line but the first barge into the reply before it (as
    ``voicebridge simulate --interrupt-after``); without it, each line's own
    ``interrupt_after_s`` says whether and when it barges in (lines from ``more`` never do)."""
    base = settings or ServiceSettings()
    # Loopback only: a configured public URL would send the simulated caller out to the world.
    settings = base.model_copy(update={"host": "127.0.0.1", "port": 0, "public_url": None})
    watch = SessionWatch()
    options: dict[str, Any] = {"record_events": True, "on_session": watch}
    if fast:
        options["clock_factory"] = StreamClock
    async with running_service(settings, spec, **options) as service:
        # As Plivo: ask /answer where to stream (the URL may carry the call's stream token).
        answered = await answer_call(f"{service.http_base}/answer")
        caller = PlivoCaller(
            answered.url,
            fmt,
            call_id=answered.call_uuid,
            speed=float("inf") if fast else 1.0,
            probe=watch.lockstep if fast else None,
        )
        spoken = list(lines)

        async def next_line(index: int) -> PCM | Keypress | None:
            session = watch.session
            history = list(session.ctx.history) if session and session.ctx else []
            line = await more(index, history) if more is not None else None
            if line is None:
                return None
            spoken.append(line)
            return line.keys or line.pcm

        record = await caller.run_turns(
            [line.keys or line.pcm for line in lines],
            first_wait_s=first_wait_s,
            gap_s=gap_s,
            reply_timeout_s=reply_timeout_s,
            tail_s=tail_s,
            interrupt_after_s=interrupt_after_s,
            more=next_line if more is not None else None,
            barge_in_s=None
            if interrupt_after_s is not None
            else [line.interrupt_after_s for line in lines],
        )
        session = watch.session
        if session is not None:
            await asyncio.wait_for(session.ended.wait(), 10)
    return SimulatedCall(
        pipeline=spec.name,
        fmt=fmt,
        mode="virtual" if fast else "realtime",
        lines=spoken,
        record=record,
        events=list(session.timeline.events) if session and session.timeline else [],
        history=list(session.ctx.history) if session and session.ctx else [],
        end_reason=session.end_reason if session else None,
    )


def speech_bounds(pcm: PCM, rate: int, threshold: int = 300) -> tuple[float, float]:
    """Where speech starts and ends inside a clip (synthesised speech has silent margins)."""
    if not len(pcm):
        return 0.0, 0.0
    window = max(1, rate // 100)
    usable = len(pcm) // window * window
    if usable == 0:
        return 0.0, len(pcm) / rate
    frames = np.abs(pcm[:usable].astype(np.int32)).reshape(-1, window).max(axis=1)
    loud = np.flatnonzero(frames > threshold)
    if not len(loud):
        return 0.0, 0.0
    return float(loud[0] * window / rate), float((loud[-1] + 1) * window / rate)
