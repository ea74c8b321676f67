"""Sockets that drop at random points of a call, against the real service (issue 7).

A caller talks to an agent that greets it at length, speaks over it (a barge-in) and gets
a reply, and its connection dies at a seeded random frame: the TCP connection aborted (no
WebSocket close, as when a proxy or a network drops), closed without a close frame, or closed
normally with 1001. Resuming is off here (``resume.grace_s: 0``): the call simply ends. Each
time the session must end, the service must release the call (registry empty, no task left),
``/health`` must stay ok, and a clean call running beside it must hear exactly what it hears
alone.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from voicebridge.clock import StreamClock
from voicebridge.config import ServiceSettings, load_pipeline_text
from voicebridge.server.run import RunningService, running_service
from voicebridge.sim.caller import PlivoCaller
from voicebridge.sim.signals import utterances

from .loopback import FMT, Sessions, assert_released, clean_call, summary

PIPELINE = """
name: drops
session: {chunk_ms: 100, max_lead_ms: 400, barge_in: {guard_ms: 200}}
stages:
  - type: decode
  - type: vad
    params: {min_speech_ms: 120, min_silence_ms: 500, pre_roll_ms: 240, forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: ["hello there", "tell me more"]}
  - type: voicebridge.testing:ScriptedDialogue
    params:
      greeting: "Hello and welcome to the test line. We are glad you called today."
      reply: "Sure. Here is a longer answer for you. It goes on for a while."
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""
# The greeting plays from 0 to about 3.3 s; the caller speaks over it at 1.0-2.0 s, then
# listens to the reply, and says more at 6.0-7.0 s: every phase of a call in 8 s (400 frames).
TRACK = utterances(
    [("silence", 1.0), ("speech", 1.0), ("silence", 4.0), ("speech", 1.0), ("silence", 1.0)],
    8000,
)
FRAMES = len(TRACK) // 160
KINDS = ["abort", "no_close_frame", "going_away"]


class DroppingCaller(PlivoCaller):
    """A Plivo caller whose connection dies before frame ``drop_at`` (0: right after start)."""

    def __init__(self, *args: Any, drop_at: int, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drop_at = drop_at
        self.kind = kind
        self.dropped = False

    async def _frame(self, ws: ClientConnection, pcm: Any) -> None:
        if self.frames_sent == self.drop_at and not self.dropped:
            if self._probe is not None:
                await self._probe(self)  # the service is in the state this frame would meet
            self.dropped = True
            if self.kind == "abort":
                ws.transport.abort()  # no close frame, no FIN handshake: the socket is gone
            elif self.kind == "no_close_frame":
                ws.transport.close()
            else:
                await ws.close(1001, "going away")
        await super()._frame(ws, pcm)


@pytest.fixture
async def service() -> AsyncIterator[tuple[RunningService, Sessions]]:
    sessions = Sessions()
    # Resuming off (grace 0): the drop ends the call; tests/e2e/test_resume.py covers resuming.
    settings = ServiceSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": 0,
            "resume": {"grace_s": 0},
            "security": {"stream_token": "off"},
        }
    )
    spec = load_pipeline_text(PIPELINE)
    async with running_service(
        settings, spec, clock_factory=StreamClock, on_session=sessions
    ) as svc:
        yield svc, sessions


def drop_points() -> list[tuple[str, int]]:
    """Seeded random frames for each kind of drop, plus the edges (right after start, last)."""
    rng = random.Random(7)
    points = [(kind, frame) for kind in KINDS for frame in (0, FRAMES - 1)]
    points += [(kind, rng.randrange(1, FRAMES - 1)) for kind in KINDS for _ in range(4)]
    return points


@pytest.mark.parametrize(("kind", "drop_at"), drop_points())
async def test_a_dropped_socket_ends_its_call_cleanly(
    service: tuple[RunningService, Sessions], kind: str, drop_at: int
) -> None:
    svc, sessions = service
    tasks_before = len(asyncio.all_tasks())
    alone = summary(await clean_call(svc, sessions))
    dropping = DroppingCaller(
        svc.ws_url, FMT, speed=float("inf"), probe=sessions.lockstep, drop_at=drop_at, kind=kind
    )
    dropped_call = asyncio.create_task(dropping.run(TRACK, tail_s=0.5))
    beside = summary(await clean_call(svc, sessions))
    record = await dropped_call
    assert dropping.dropped
    assert beside == alone  # the other call never noticed
    assert record.protocol_errors == []
    session = sessions.of(record.stream_id)
    assert session is not None
    await assert_released(svc, sessions, tasks_before)
    assert session.end_reason == "socket_closed"
    async with httpx.AsyncClient(base_url=svc.http_base) as client:
        health = (await client.get("/health")).json()
    assert health["status"] == "ok" and health["active_calls"] == 0


async def test_the_drops_cover_every_phase_of_a_call(
    service: tuple[RunningService, Sessions],
) -> None:
    """The track does what the drop points assume: greeting, barge-in, reply, second line."""
    svc, sessions = service
    caller = PlivoCaller(svc.ws_url, FMT, speed=float("inf"), probe=sessions.lockstep)
    record = await caller.run(TRACK, tail_s=0.5)
    assert len(record.sent_by_agent("clearAudio")) >= 1  # the caller spoke over the greeting
    turns = {e.message["name"].split("/")[0] for e in record.sent_by_agent("checkpoint")}
    assert len(turns) >= 2
    assert np.abs(record.heard_audio).max() > 0


async def test_a_socket_dropped_before_start_leaves_nothing(
    service: tuple[RunningService, Sessions],
) -> None:
    svc, sessions = service
    tasks_before = len(asyncio.all_tasks())
    for kind in KINDS:
        ws = await connect(svc.ws_url)
        if kind == "abort":
            ws.transport.abort()
        elif kind == "no_close_frame":
            ws.transport.close()
        else:
            await ws.close(1001)
    await assert_released(svc, sessions, tasks_before)
    assert all(s.ctx is None for s in sessions.all)  # no call ever started
