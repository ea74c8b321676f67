"""The session without sockets: Plivo events in, wire messages out, on a virtual clock."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from voicebridge.clock import VirtualClock
from voicebridge.config import load_pipeline_text
from voicebridge.frames import AgentAudio, AgentText, Frame, Transcript
from voicebridge.session import Session, SessionLimits
from voicebridge.stage import Stage, StageParams


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["event"] == name]


class Beeper(Stage):
    """A test speaker: each AgentText becomes a tone of ``ms_per_word`` per word."""

    type_name = "beeper"
    role = "tts"

    class Params(StageParams):
        ms_per_word: int = 250

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AgentText):
            rate = self.ctx.info.sample_rate
            n = rate * self.params.ms_per_word * len(frame.text.split()) // 1000
            pcm = np.full(n, 1000, np.int16)
            await self.emit(AgentAudio(pcm, turn=frame.turn, text=frame.text, last=frame.last))
            return
        await self.emit(frame)


class SaysOnTranscript(Stage):
    """Replies to the magic words ``crash`` (raises) and anything else (echoes)."""

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, Transcript) and frame.text == "crash":
            raise RuntimeError("dialogue provider failed")


def resolver(name: str) -> type[Stage]:
    from voicebridge.registry import resolve_stage

    return {"beeper": Beeper, "says": SaysOnTranscript}.get(name) or resolve_stage(name)


PIPELINE = """
name: test
session:
  chunk_ms: 100
stages:
  - type: decode
  - type: says
  - type: rules
    params:
      greeting: One two three four. Five six seven eight.
      rules:
        - keywords: [bye]
          reply: Goodbye now.
          action: hangup
  - type: beeper
  - type: encode
"""


def start(rate: int = 8000) -> str:
    return json.dumps(
        {
            "event": "start",
            "start": {
                "callId": "c1",
                "streamId": "s1",
                "accountId": "a",
                "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": rate},
            },
        }
    )


def played(name: str) -> str:
    return json.dumps({"event": "playedStream", "streamId": "s1", "name": name})


def media(ms: int = 20, rate: int = 8000) -> str:
    payload = base64.b64encode(b"\0\0" * (rate * ms // 1000)).decode()
    return json.dumps({"event": "media", "media": {"payload": payload}})


async def open_session(**limits: Any) -> tuple[Session, FakeTransport, VirtualClock]:
    clock = VirtualClock()
    transport = FakeTransport()
    spec = load_pipeline_text(PIPELINE, resolver=resolver)
    session = Session(spec, transport, clock=clock, limits=SessionLimits(**limits))
    await session.handle_message(start())
    await clock.settle()
    return session, transport, clock


async def test_greeting_is_sent_in_chunks_each_piece_followed_by_its_checkpoint() -> None:
    session, transport, clock = await open_session()
    names = [m["name"] for m in transport.events("checkpoint")]
    assert names == ["turn-1/piece-1", "turn-1/piece-2"]
    events = [m["event"] for m in transport.sent]
    # 4 words * 250 ms = 1 s of audio in 100 ms chunks, then its checkpoint.
    assert events[:11] == ["playAudio"] * 10 + ["checkpoint"]
    play = transport.events("playAudio")[0]
    assert play["media"]["contentType"] == "audio/x-l16" and play["media"]["sampleRate"] == 8000
    assert play["streamId"] == "s1"
    await session.end("test")


async def test_history_keeps_what_was_acknowledged() -> None:
    session, transport, clock = await open_session()
    await session.handle_message(played("turn-1/piece-1"))
    assert session.ctx is not None
    assert [(e.role, e.text) for e in session.ctx.history] == [("agent", "One two three four.")]
    await session.handle_message(played("turn-1/piece-2"))
    assert session.ctx.history[0].text == "One two three four. Five six seven eight."
    await session.end("test")


async def test_hangup_waits_for_the_goodbye_to_play_then_closes() -> None:
    session, transport, clock = await open_session()
    for name in ("turn-1/piece-1", "turn-1/piece-2"):
        await session.handle_message(played(name))
    assert session.pipeline is not None
    await session.pipeline.push(Transcript("ok bye"))
    await clock.advance(0.5, step=0.05)
    assert transport.closed is None  # goodbye sent but not yet played
    assert transport.events("checkpoint")[-1]["name"] == "turn-2/piece-1"
    await session.handle_message(played("turn-2/piece-1"))
    await clock.advance(0.1)
    assert transport.closed == (1000, "agent hung up")
    assert session.end_reason == "hangup:rules"


async def test_lost_ack_is_settled_by_timeout_so_hangup_still_happens() -> None:
    session, transport, clock = await open_session()
    assert session.pipeline is not None
    await session.pipeline.push(Transcript("bye"))
    await clock.settle()
    # No acks ever come: 3 s of audio queued, then the ack grace (3 s) passes.
    await clock.advance(5.0, step=0.25)
    assert transport.closed is None
    await clock.advance(3.0, step=0.25)
    assert transport.closed == (1000, "agent hung up")


async def test_stage_failure_ends_only_this_call_with_1011() -> None:
    session, transport, clock = await open_session()
    assert session.pipeline is not None
    await session.pipeline.push(Transcript("crash"))
    await clock.advance(0.1)
    assert transport.closed is not None and transport.closed[0] == 1011
    assert "says" in transport.closed[1]


async def test_max_call_duration_ends_the_call() -> None:
    session, transport, clock = await open_session(max_call_seconds=2.0)
    await clock.advance(2.5, step=0.25)
    assert transport.closed == (1000, "maximum call duration reached")


async def test_dtmf_while_agent_speaks_clears_audio() -> None:
    session, transport, clock = await open_session()
    await clock.advance(0.5)
    await session.handle_message(json.dumps({"event": "dtmf", "dtmf": {"digit": "5"}}))
    assert transport.events("clearAudio") == [{"event": "clearAudio", "streamId": "s1"}]
    assert session.ctx is not None and session.ctx.history[0].interrupted
    # Acks for the cleared pieces are ignored.
    await session.handle_message(played("turn-1/piece-1"))
    assert session.stats["ignored_acks"] == 1
    await session.end("test")


async def test_media_timestamps_follow_audio_received() -> None:
    session, transport, clock = await open_session()
    for _ in range(5):
        await session.handle_message(media())
    assert session.stats["media"] == 5
    await session.end("test")
