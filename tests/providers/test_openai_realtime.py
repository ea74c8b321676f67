"""Whole calls through the ``openai_realtime`` stage, against the loopback Realtime API fake.

A real ``Session`` on a stream clock (``CallHarness``: Plivo's playout and acks modelled), the
official SDK's WebSocket client, and ``openai_realtime_fake.FakeRealtime``. ``Live`` keeps the
call's time and the network in step: after each 20 ms caller frame it waits (real time) until
the fake has handled everything the stage sent and the stage everything the fake sent, so each
event lands at an exact stream time and the numbers below are exact.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicebridge.config import load_pipeline_text
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.sim.signals import speech_like
from voicebridge.stages.realtime.openai_realtime import OpenAIRealtime
from voicebridge.testing.harness import CallHarness

sys.path.insert(0, str(Path(__file__).parent))
from openai_realtime_fake import FakeRealtime, Reply

KEY = "sk-fake"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtime]:
    async with FakeRealtime(api_key=KEY) as server:
        yield server


PIPELINE = """
name: realtime-test
session:
  chunk_ms: 100
  max_lead_ms: 600
  barge_in: {{guard_ms: 200}}
  fallback_text: Sorry, say that again?
stages:
  - type: decode
  - type: openai_realtime
    params:
      base_url: {base_url}
      verify_at_start: false
      piece_ms: 300
      resilience: {{retries: 1, backoff_s: 0.05, backoff_max_s: 0.05}}
{extra}
  - type: encode
"""


def spec(fake: FakeRealtime, extra: str = "") -> PipelineSpec:
    lines = "".join(f"      {line}\n" for line in extra.strip().splitlines())
    text = PIPELINE.format(base_url=fake.base_url, extra=lines.rstrip("\n"))
    return load_pipeline_text(text, "realtime-test.yaml", environ={})


class Live:
    """A ``CallHarness`` whose every frame waits for the network to be quiet."""

    def __init__(self, call: CallHarness, fake: FakeRealtime) -> None:
        self.call = call
        self.fake = fake

    @property
    def stage(self) -> OpenAIRealtime:
        pipeline = self.call.session.pipeline
        assert pipeline is not None
        return next(s for s in pipeline.stages if isinstance(s, OpenAIRealtime))

    def quiet(self) -> bool:
        stage, fake = self.stage, self.fake
        link = stage.link
        if link is None or not fake.sessions:
            return False
        session = fake.session
        return (
            link.idle
            and link.sent == session.received
            and not fake.generating
            and stage.handled == session.sent
        )

    async def settle(self) -> None:
        await self.fake.wait_for(self.quiet)
        pipeline = self.call.session.pipeline
        if pipeline is not None and not self.call.session.ended.is_set():
            await pipeline.wait_idle()

    async def frame(self, pcm: Any = None) -> None:
        await self.call.frame(pcm)
        if not self.call.session.ended.is_set():
            await self.settle()

    async def speak(self, seconds: float) -> None:
        pcm = speech_like(seconds, self.call.rate)
        step = self.call.rate // 50
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            if len(chunk) < step:
                chunk = np.pad(chunk, (0, step - len(chunk)))
            await self.frame(chunk)

    async def idle(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.02)):
            await self.frame()

    async def until(self, predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
        for _ in range(round(limit_s / 0.02)):
            if predicate() or self.call.session.ended.is_set():
                return
            await self.frame()
        raise AssertionError("the call never got there")

    def history(self) -> list[tuple[str, str, bool]]:
        ctx = self.call.session.ctx
        assert ctx is not None
        return [(h.role, h.text, h.interrupted) for h in ctx.history]


async def live_call(fake: FakeRealtime, extra: str = "", **kwargs: Any) -> Live:
    call = CallHarness(spec(fake, extra), encoding="audio/x-mulaw", rate=8000, **kwargs)
    await call.start()
    live = Live(call, fake)
    await live.settle()
    return live


async def test_a_whole_call_speaks_the_models_reply_and_keeps_both_sides(
    fake: FakeRealtime,
) -> None:
    fake.caller_says("when do you open tomorrow")
    fake.reply(Reply(text="We open at seven tomorrow."))
    live = await live_call(fake)
    try:
        await live.speak(1.0)
        await live.until(lambda: len(live.call.timeline("turn_played")) >= 1)
    finally:
        await live.call.session.end("test over")
    assert live.history() == [
        ("caller", "when do you open tomorrow", False),
        ("agent", "We open at seven tomorrow.", False),
    ]
    session = fake.session
    audio = session.config["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcmu"}  # the stream's own μ-law
    assert audio["output"]["format"] == {"type": "audio/pcmu"}
    assert audio["input"]["turn_detection"]["interrupt_response"] is False
    assert session.model == "gpt-realtime"
    assert live.call.events("clearAudio") == []
