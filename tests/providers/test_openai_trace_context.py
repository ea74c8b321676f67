"""A traced call through the shipped OpenAI pipeline: the call's W3C trace context reaches the
provider on every chat and speech request, and the dialogue spans follow the GenAI semantic
conventions. The ``llm`` and ``openai_tts`` stages talk real HTTP to ``openai_fakes.FakeOpenAI``,
``openai_realtime`` a real WebSocket to ``openai_realtime_fake.FakeRealtime``; both record each
request's headers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from voicebridge.config import load_pipeline, load_pipeline_text
from voicebridge.config.pipeline_config import StageSpec
from voicebridge.observe.genai import dialogue_span
from voicebridge.observe.tracing_setup import CallTracing
from voicebridge.sim.signals import speech_like
from voicebridge.testing.harness import CallHarness, ScriptedStt

sys.path.insert(0, str(Path(__file__).parent))
from openai_fakes import ChatReply, FakeOpenAI
from openai_realtime_fake import FakeRealtime

KEY = "sk-fake"
PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
async def fake() -> Any:
    async with FakeOpenAI(api_key=KEY) as server:
        yield server


def shipped_openai(base_url: str, lines: list[str]) -> Any:
    spec = load_pipeline(PIPELINES / "openai.yaml", environ={"OPENAI_BASE_URL": base_url})
    index = next(i for i, stage in enumerate(spec.stages) if stage.type == "whisper")
    spec.stages[index] = StageSpec(
        "scripted_stt", "stt", ScriptedStt, ScriptedStt.Params(lines=lines)
    )
    return spec


def test_an_llm_pipeline_names_its_model_calls_by_the_genai_conventions() -> None:
    spec = load_pipeline(PIPELINES / "openai.yaml", environ={})
    span = dialogue_span(spec)
    assert span.name == "chat gpt-4.1-mini"
    assert span.attributes == {
        "voicebridge.stage": "llm",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4.1-mini",
    }


async def test_every_provider_request_of_a_traced_call_carries_its_traceparent(
    fake: FakeOpenAI,
) -> None:
    fake.reply(ChatReply(text="We open at seven tomorrow."))
    spec = shipped_openai(fake.base_url, ["when do you open tomorrow"])
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = CallTracing.for_pipeline(provider, spec).call_tracer()  # before the call starts
    call = CallHarness(spec)
    call.session.subscribe(tracer)
    async with call:
        await call.until(lambda: len(call.acks_sent) >= 2, limit_s=8)  # the greeting played
        await call.speak(speech_like(1.0, call.rate))
        await call.until(lambda: len(call.acks_sent) >= 3, limit_s=10)
    root = tracer.span_context
    expected = f"00-{root.trace_id:032x}-{root.span_id:016x}-{root.trace_flags:02x}"
    requests = [*fake.chat_requests, *fake.speech_requests]
    assert len(fake.chat_requests) == 1 and len(fake.speech_requests) >= 3
    assert [r.headers.get("traceparent") for r in requests] == [expected] * len(requests)

    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans} == {root.trace_id}
    # The greeting is the stage's own line; the answer is the one model call.
    assert sorted(s.name for s in spans if s.name.startswith(("chat", "dialogue"))) == [
        "chat gpt-4.1-mini",
        "dialogue",
    ]
    (chat,) = [s for s in spans if s.name == "chat gpt-4.1-mini"]
    assert chat.kind is SpanKind.CLIENT
    assert chat.attributes["gen_ai.request.model"] == "gpt-4.1-mini"
    assert chat.attributes["server.address"] == "127.0.0.1"
    assert chat.attributes["server.port"] == fake.port
    provider.shutdown()


REALTIME = """
name: realtime-traced
stages:
  - type: decode
  - type: openai_realtime
    params: {{base_url: {base_url}, verify_at_start: false}}
  - type: encode
"""


async def test_the_realtime_handshake_of_a_traced_call_carries_its_traceparent() -> None:
    async with FakeRealtime(api_key=KEY) as fake:
        spec = load_pipeline_text(REALTIME.format(base_url=fake.base_url), environ={})
        provider = TracerProvider()
        tracer = CallTracing.for_pipeline(provider, spec).call_tracer()
        call = CallHarness(spec, encoding="audio/x-mulaw", rate=8000)
        call.session.subscribe(tracer)
        async with call:
            await call.until(lambda: bool(fake.sessions), limit_s=5)
        headers = {k.lower(): v for k, v in fake.sessions[0].headers.items()}
    root = tracer.span_context
    expected = f"00-{root.trace_id:032x}-{root.span_id:016x}-{root.trace_flags:02x}"
    assert headers["traceparent"] == expected
    provider.shutdown()
