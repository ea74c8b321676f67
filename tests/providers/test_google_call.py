"""Whole calls through ``pipelines/google.yaml`` (decode -> vad -> google_stt -> dialogflow CX ->
google_tts -> encode), every Google service played by the fake gRPC server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from voicebridge.config import load_pipeline
from voicebridge.runtime.registry import resolve_stage
from voicebridge.runtime.stage import Stage
from voicebridge.sim.signals import speech_like
from voicebridge.stages.dialogue.dialogflow import Dialogflow
from voicebridge.stages.stt.google_stt import GoogleStt
from voicebridge.stages.tts.google_tts import GoogleTts
from voicebridge.testing.harness import CallHarness

sys.path.insert(0, str(Path(__file__).parent))
from google_fakes import CX, STT_V2, TTS, FakeGoogle, until

PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "google.yaml"
OURS: dict[str, type[Stage]] = {
    "google_stt": GoogleStt,
    "dialogflow": Dialogflow,
    "google_tts": GoogleTts,
}


def resolver(name: str) -> type[Stage]:
    """Our stages by their built-in names (works before and after they are registered)."""
    return OURS.get(name) or resolve_stage(name)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGoogle]:
    async with FakeGoogle() as server:
        yield server


def spec(fake: FakeGoogle, **env: str) -> Any:
    environ = {
        "GOOGLE_CLOUD_PROJECT": "proj-1",
        "DIALOGFLOW_AGENT_ID": "agent-1",
        "GOOGLE_STT_ENDPOINT": fake.endpoint,
        "DIALOGFLOW_ENDPOINT": fake.endpoint,
        "GOOGLE_TTS_ENDPOINT": fake.endpoint,
        "GOOGLE_INSECURE": "true",
        **env,
    }
    return load_pipeline(PIPELINE, environ=environ, resolver=resolver)


async def speak_live(call: CallHarness, pcm: Any, fake: FakeGoogle) -> None:
    """Caller speech, each 100 ms only once the fake recogniser has the audio before it and
    its answers are back: words arrive at the stream time they belong to, as in a live call
    (the harness otherwise runs far ahead of the network)."""
    step = call.rate // 50
    bytes_per_frame = step * (1 if call.encoding == "audio/x-mulaw" else 2)
    for offset in range(0, len(pcm), step):
        await call.frame(pcm[offset : offset + step])
        frames = round(call.t / 0.02)
        if frames % 5 == 0:
            sent = frames * bytes_per_frame
            await until(lambda: sum(len(s.audio) for s in fake.stt_streams) >= sent)  # noqa: B023
            await asyncio.sleep(0.005)


def agent_lines(call: CallHarness) -> list[tuple[str, str, bool]]:
    assert call.session.ctx is not None
    return [(h.role, h.text, h.interrupted) for h in call.session.ctx.history]


async def test_a_whole_call(fake: FakeGoogle) -> None:
    fake.stt_lines = ["what are your hours", "ok bye"]
    async with CallHarness(spec(fake), encoding="audio/x-mulaw", rate=8000) as call:
        await call.until(lambda: len(call.acks_sent) >= 2, limit_s=10)  # the greeting played
        await call.speak(speech_like(1.0, 8000))
        await call.until(lambda: len(fake.requests[CX]) == 2, limit_s=5)
        await call.until(lambda: len(agent_lines(call)) >= 3 and not call.playout.idle, limit_s=5)
        await call.until(lambda: call.playout.idle, limit_s=10)
        await call.idle(0.5)
        await call.speak(speech_like(0.8, 8000))
        await call.until(lambda: call.session.ended.is_set(), limit_s=15)

    assert call.session.end_reason == "hangup:dialogflow"
    assert agent_lines(call) == [
        ("agent", "Welcome to the test agent. How can I help?", False),
        ("caller", "what are your hours", False),
        ("agent", "You said what are your hours. Anything else?", False),
        ("caller", "ok bye", False),
        ("agent", "Goodbye.", False),
    ]
    # The services were asked the right things.
    stream = fake.stt_streams[0]
    decoding = stream.config.streaming_config.config.explicit_decoding_config
    assert (decoding.encoding.name, decoding.sample_rate_hertz) == ("MULAW", 8000)
    assert stream.config.recognizer == "projects/proj-1/locations/global/recognizers/_"
    sessions = {r.session for r in fake.requests[CX]}
    assert sessions == {"projects/proj-1/locations/global/agents/agent-1/sessions/harness-call"}
    tts = fake.requests[TTS]
    assert tts[0].voice.name == "en-US-Neural2-F"
    assert {r.audio_config.audio_encoding.name for r in tts} == {"MULAW"}
    assert [r.input.text for r in tts] == [
        "Welcome to the test agent.",
        "How can I help?",
        "You said what are your hours.",
        "Anything else?",
        "Goodbye.",
    ]
    # Every piece the agent sent was played and acknowledged; nothing was cut off.
    assert call.events("clearAudio") == []
    await fake.all_streams_ended()  # every recognition stream was closed by the stage


async def test_dialogflow_down_speaks_the_fallback_line(fake: FakeGoogle) -> None:
    fake.stt_lines = ["hello"]
    async with CallHarness(spec(fake), encoding="audio/x-l16", rate=16000) as call:
        await call.until(lambda: len(call.acks_sent) >= 2, limit_s=10)
        fake.fail(CX, grpc.StatusCode.UNAVAILABLE, "backend error", times=5)
        await call.speak(speech_like(0.8, 16000))
        fallback = "Sorry, I'm having trouble right now."
        await call.until(
            lambda: any(r.input.text == fallback for r in fake.requests[TTS]), limit_s=5
        )
        await call.until(lambda: call.playout.idle, limit_s=10)
    assert not call.session.ended.is_set() or call.session.end_reason == "test over"
    assert len(fake.requests[CX]) == 3  # welcome, then one try and one retry
    assert call.session.core.stats.provider_errors == 1
    assert ("agent", "Sorry, I'm having trouble right now. Could you say that again?", False) in (
        agent_lines(call)
    )


async def test_the_caller_cuts_the_agent_off(fake: FakeGoogle) -> None:
    fake.tts_ms_per_char = 80  # a long greeting: about 3.5 s of audio
    fake.stt_lines = ["wait a second"]
    async with CallHarness(spec(fake), encoding="audio/x-mulaw", rate=8000) as call:
        await call.until(lambda: bool(call.events("playAudio")), limit_s=10)
        await call.idle(0.5)  # the greeting is playing
        await speak_live(call, speech_like(1.0, 8000), fake)
        await call.idle(1.0)
    assert call.events("clearAudio"), "the agent kept talking over the caller"
    history = agent_lines(call)
    greeting = history[0]
    assert greeting[0] == "agent" and greeting[2] is True  # marked interrupted
    assert ("caller", "wait a second", False) in history
    # google_stt's interim words (min_words: 1 in the pipeline) allowed the barge-in.
    assert fake.started[STT_V2] >= 1
