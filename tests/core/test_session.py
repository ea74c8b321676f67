"""The session without sockets: Plivo events in, wire messages out, on the call's own clock."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from voicebridge.config import load_pipeline_text
from voicebridge.frames import AgentAudio, AgentText, Frame, Transcript
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.testing.harness import CallHarness


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
    """A test speaker whose timing is exact: each character of a word is ``ms_per_char`` of
    tone, and each space as long in silence, so which words played is known to the sample."""

    type_name = "beeper"
    role = "tts"

    class Params(StageParams):
        ms_per_char: int = 50

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AgentText):
            rate = self.ctx.info.sample_rate
            per_char = rate * self.params.ms_per_char // 1000
            parts = []
            for word in frame.text.split():
                parts.append(np.full(per_char * len(word), 3000, np.int16))
                parts.append(np.zeros(per_char, np.int16))
            pcm = np.concatenate(parts) if parts else np.zeros(per_char, np.int16)
            await self.emit(AgentAudio(pcm, turn=frame.turn, text=frame.text, last=frame.last))
            return
        await self.emit(frame)


class Crasher(Stage):
    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, Transcript) and frame.text == "crash":
            raise RuntimeError("dialogue provider failed")


def resolver(name: str) -> type[Stage]:
    from voicebridge.runtime.registry import resolve_stage

    return {"beeper": Beeper, "crasher": Crasher}.get(name) or resolve_stage(name)


PIPELINE = """
name: test
session:
  chunk_ms: 100
  max_lead_ms: 500
stages:
  - type: decode
  - type: crasher
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


def spec(text: str = PIPELINE) -> Any:
    return load_pipeline_text(text, resolver=resolver)


async def test_greeting_is_paced_and_each_piece_followed_by_its_checkpoint() -> None:
    async with CallHarness(spec()) as call:
        # Only the lead (500 ms) goes out at once: 5 chunks of 100 ms.
        assert [m.message["event"] for m in call.log] == ["playAudio"] * 5
        play = call.log[0].message
        assert play["media"]["contentType"] == "audio/x-l16"
        assert play["media"]["sampleRate"] == 8000 and play["streamId"] == "harness-stream"
        await call.until(lambda: len(call.events("checkpoint")) == 2)
        names = [m.message["name"] for m in call.events("checkpoint")]
        assert names == ["turn-1/piece-1", "turn-1/piece-2"]
        # Piece 1: "One two three four." is 16 characters + 4 gaps = 20 x 50 ms = 1 s of audio.
        first_ck = call.events("checkpoint")[0]
        audio_before = sum(
            m.message["media"]["samples"] for m in call.log[: call.log.index(first_ck)]
            if m.message["event"] == "playAudio"
        )  # fmt: skip
        assert audio_before == 8000
        # Never more than the lead (plus one chunk) is buffered at Plivo.
        await call.idle(3.0)
        assert [a.message["name"] for a in call.acks_sent] == names


async def test_history_keeps_what_was_acknowledged() -> None:
    async with CallHarness(spec()) as call:
        ctx = call.session.ctx
        assert ctx is not None
        await call.until(lambda: len(call.acks_sent) == 1)
        assert [(e.role, e.text) for e in ctx.history] == [("agent", "One two three four.")]
        await call.until(lambda: len(call.acks_sent) == 2)
        assert ctx.history[0].text == "One two three four. Five six seven eight."
        timing = call.timeline("turn_played")
        assert timing and timing[0]["turn"] == 1 and not timing[0]["interrupted"]


async def test_stage_failure_ends_only_this_call_with_1011() -> None:
    async with CallHarness(spec()) as call:
        assert call.session.pipeline is not None
        await call.session.pipeline.push(Transcript("crash"))
        await call.idle(0.1)
        assert call.wire.closed is not None and call.wire.closed[0] == 1011
        assert "crasher" in call.wire.closed[1]


async def test_max_call_duration_ends_the_call() -> None:
    text = PIPELINE.replace("  max_lead_ms: 500", "  max_lead_ms: 500\n  max_call_s: 2")
    async with CallHarness(spec(text)) as call:
        await call.idle(2.5)
        assert call.wire.closed == (1000, "maximum call duration reached")


async def test_media_advances_the_stream_clock() -> None:
    async with CallHarness(spec()) as call:
        await call.idle(0.2)
        assert call.session.core.stats.media == 10
        assert abs(call.session.core.stream_time - 0.2) < 1e-9
