"""Whole simulated calls through the OpenAI-family pipelines, against the fake OpenAI server.

A real ``Session`` is fed 20 ms caller frames by ``CallHarness`` (Plivo's playout modelled);
``ScriptedStt`` stands in for the transcriber, so these calls need no speech model, and the
``llm`` and ``openai_tts`` stages talk real HTTP to ``openai_fakes.FakeOpenAI``. The shipped
``pipelines/openai.yaml`` and ``pipelines/mixed.yaml`` are loaded as they are, with only the
transcriber swapped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from voicebridge.config import load_pipeline, load_pipeline_text
from voicebridge.config.pipeline_config import PipelineSpec, StageSpec
from voicebridge.runtime.registry import resolve_stage
from voicebridge.runtime.stage import Stage
from voicebridge.sim.signals import speech_like
from voicebridge.stages.dialogue.llm import Llm
from voicebridge.stages.tts.openai_tts import OpenAITts
from voicebridge.testing.harness import CallHarness, ScriptedStt

sys.path.insert(0, str(Path(__file__).parent))
from openai_fakes import ChatReply, FakeOpenAI

KEY = "sk-fake"
PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
GREETING = "Thanks for calling Harbor Street Bakery. How can I help you today?"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
async def fake() -> Any:
    async with FakeOpenAI(api_key=KEY) as server:
        yield server


def resolver(type_name: str) -> type[Stage]:
    """The registry, plus this family's short names (in case they are not registered yet)."""
    return {"llm": Llm, "openai_tts": OpenAITts}.get(type_name) or resolve_stage(type_name)


def shipped(name: str, environ: dict[str, str], lines: list[str]) -> PipelineSpec:
    """A pipeline file from pipelines/, with ScriptedStt in place of whisper."""
    spec = load_pipeline(PIPELINES / name, environ=environ, resolver=resolver)
    index = next(i for i, stage in enumerate(spec.stages) if stage.type == "whisper")
    spec.stages[index] = StageSpec(
        "scripted_stt", "stt", ScriptedStt, ScriptedStt.Params(lines=lines)
    )
    return spec


def messages(request: Any) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in request.body["messages"] if m["role"] != "system"]


async def caller_says(call: CallHarness, seconds: float) -> None:
    await call.speak(speech_like(seconds, call.rate))


def test_shipped_pipelines_validate() -> None:
    openai_spec = load_pipeline(PIPELINES / "openai.yaml", environ={}, resolver=resolver)
    llm: Any = next(s for s in openai_spec.stages if s.type == "llm").params
    assert llm.base_url is None and llm.api_key_env == "OPENAI_API_KEY"
    assert llm.transfer_targets == {"colleague": "+15550100"}
    tts: Any = next(s for s in openai_spec.stages if s.type == "openai_tts").params
    assert tts.model == "gpt-4o-mini-tts" and tts.voice == "coral"
    mixed = load_pipeline(
        PIPELINES / "mixed.yaml", environ={"LLM_MODEL": "qwen3:8b"}, resolver=resolver
    )
    llm = next(s for s in mixed.stages if s.type == "llm").params
    assert llm.base_url == "http://127.0.0.1:11434/v1" and llm.model == "qwen3:8b"
    assert llm.api_key_env == "LLM_API_KEY" and llm.max_tokens_field == "max_tokens"
    assert [s.type for s in mixed.stages][-2:] == ["hibari", "encode"]


async def test_openai_pipeline_whole_call(fake: FakeOpenAI) -> None:
    fake.reply(
        ChatReply(text="We open at seven tomorrow. See you then!"),
        ChatReply(tool_calls=[("hang_up", {"goodbye": "Thanks for calling, goodbye!"})]),
    )
    spec = shipped(
        "openai.yaml",
        {"OPENAI_BASE_URL": fake.base_url},
        ["when do you open tomorrow", "thanks bye"],
    )
    async with CallHarness(spec) as call:
        await call.until(lambda: len(call.acks_sent) >= 2, limit_s=8)  # the greeting played
        await caller_says(call, 1.0)
        await call.until(lambda: len(call.acks_sent) >= 4, limit_s=10)
        await caller_says(call, 0.8)
        await call.until(lambda: call.wire.closed is not None, limit_s=10)
        assert call.session.end_reason == "hangup:llm"
    first, second = fake.chat_requests
    assert first.body["model"] == "gpt-4.1-mini" and first.body["temperature"] == 0.4
    assert first.body["messages"][0]["content"].startswith("You are Bea")
    assert messages(first) == [("assistant", GREETING), ("user", "when do you open tomorrow")]
    assert messages(second) == [
        ("assistant", GREETING),
        ("user", "when do you open tomorrow"),
        ("assistant", "We open at seven tomorrow. See you then!"),
        ("user", "thanks bye"),
    ]
    spoken = [r.body["input"] for r in fake.speech_requests]
    assert spoken == [
        "Thanks for calling Harbor Street Bakery.",
        "How can I help you today?",
        "We open at seven tomorrow.",
        "See you then!",
        "Thanks for calling, goodbye!",
    ]
    assert {r.body["voice"] for r in fake.speech_requests} == {"coral"}
    played = [e["text"] for e in call.timeline("played")]
    assert played == spoken  # every sentence reached the caller, then the call ended
    assert call.events("playAudio")


async def test_mixed_pipeline_whole_call_with_offline_speech(fake: FakeOpenAI) -> None:
    fake.api_key = None  # a local server: no key
    fake.reply(ChatReply(text="Hello! We are open until six today."))
    spec = shipped(
        "mixed.yaml",
        {"LLM_BASE_URL": fake.base_url, "LLM_MODEL": "llama3.2"},
        ["are you open today"],
    )
    async with CallHarness(spec) as call:
        await call.until(lambda: len(call.acks_sent) >= 2, limit_s=10)
        await caller_says(call, 1.0)
        await call.until(lambda: len(call.acks_sent) >= 4, limit_s=10)
    (request,) = fake.chat_requests
    assert request.auth == "Bearer not-needed"
    assert request.body["model"] == "llama3.2" and request.body["max_tokens"] == 300
    played = [e["text"] for e in call.timeline("played")]
    assert played[-2:] == ["Hello!", "We are open until six today."]


TONE_PIPELINE = """
name: openai-llm-tones
session:
  chunk_ms: 100
  max_lead_ms: 600
  barge_in: {{guard_ms: 200, false_interruption_ms: 500}}
  fallback_text: Sorry, something went wrong.
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: {lines!r}}}
  - type: voicebridge.stages.dialogue.llm:Llm
    name: llm
    params:
      base_url: {base_url}
      max_retries: 0
      resilience: {{retries: 0}}
      greeting: {greeting!r}
      dtmf_wait_s: 0.5
      transfer_targets: {{sales: "+15550101"}}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""


def tone_spec(fake: FakeOpenAI, lines: list[str], greeting: str = "") -> PipelineSpec:
    text = TONE_PIPELINE.format(lines=lines, base_url=fake.base_url, greeting=greeting)
    return load_pipeline_text(text)


async def test_provider_failure_speaks_the_fallback_and_the_call_goes_on(
    fake: FakeOpenAI,
) -> None:
    fake.reply(
        ChatReply(status=500, error_message="The server had an error"),
        ChatReply(text="Yes, I'm here."),
    )
    async with CallHarness(tone_spec(fake, ["hello", "are you there"])) as call:
        await caller_says(call, 0.5)
        await call.idle(3.0)
        await caller_says(call, 0.5)
        await call.idle(3.0)
        (error,) = call.timeline("provider_error")
        assert error["stage"] == "llm" and error["error_kind"] == "unavailable"
        assert error["provider"].startswith("openai-compatible")
        said = [e["text"] for e in call.timeline("agent_text")]
        assert said == ["Sorry, something went wrong.", "Yes, I'm here."]
        assert call.wire.closed is None
    # The failed turn left no trace; the fallback the caller heard is in the history.
    assert messages(fake.chat_requests[1]) == [
        ("user", "hello"),
        ("assistant", "Sorry, something went wrong."),
        ("user", "are you there"),
    ]


async def test_the_model_is_told_where_the_caller_interrupted(fake: FakeOpenAI) -> None:
    greeting = "Hello and welcome to the test line. We are glad you called today."
    fake.reply(ChatReply(text="Sure, go ahead."))
    async with CallHarness(tone_spec(fake, ["wait a moment"], greeting)) as call:
        await call.idle(0.92)
        await caller_says(call, 1.0)
        await call.idle(3.0)
        assert len(call.events("clearAudio")) == 1
    (request,) = fake.chat_requests
    assert messages(request) == [
        ("assistant", "Hello and welcome to [interrupted]"),
        ("user", "wait a moment"),
    ]


async def test_keypad_digits_are_gathered_into_one_request(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(text="Thanks, order one two three is on its way."))
    async with CallHarness(tone_spec(fake, [])) as call:
        for digit in "123":
            await call.send({"event": "dtmf", "dtmf": {"digit": digit}})
            await call.idle(0.2)  # within dtmf_wait_s of the previous digit
        await call.idle(3.0)
        assert call.timeline("played")[-1]["text"] == "Thanks, order one two three is on its way."
    (request,) = fake.chat_requests
    assert messages(request) == [("user", "[keypad: 123]")]


async def test_transfer_requested_by_the_model_reaches_the_session(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(tool_calls=[("transfer_call", {"to": "sales", "message": "One moment."})]))
    async with CallHarness(tone_spec(fake, ["sales please"])) as call:
        await caller_says(call, 0.5)
        await call.idle(3.0)
        assert call.timeline("played")[-1]["text"] == "One moment."
        # No Plivo credentials in this harness: the session says so and keeps the call.
        assert call.timeline("transfer_unavailable")[0]["to"] == "+15550101"
