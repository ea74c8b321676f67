"""OpenTelemetry traces of calls, read back from the SDK's in-memory exporter.

A real ``Session`` runs a call on its own stream clock (``CallHarness``) and ``CallTracer``
subscribes to it; the call's timeline is pinned to a fixed wall clock, so every span's start and
end is the stream time of a milestone, exactly. One test runs a whole call through the service
(sockets on loopback) with tracing on, one checks that with tracing off nothing of OpenTelemetry
is even imported.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from voicebridge.clock import StreamClock
from voicebridge.config import load_pipeline_text
from voicebridge.config.service_settings import TracingSettings
from voicebridge.observe.trace_context import trace_headers
from voicebridge.observe.tracing_setup import CallTracing, tracing_from_settings
from voicebridge.server.run import running_service
from voicebridge.sim.signals import speech_like, utterances
from voicebridge.testing.harness import CallHarness

from .conftest import Sessions, fast_caller, scripted_spec, settings

ROOT = Path(__file__).resolve().parents[2]
ORIGIN_NS = 1_800_000_000 * 10**9  # the wall clock when each test call is answered
GREETING = "Hello and welcome to the test line. We are glad you called today."
PIPELINE = """
name: traced
session:
  chunk_ms: 100
  max_lead_ms: 600
  barge_in: {{guard_ms: 200, false_interruption_ms: 500}}
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: {lines!r}}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: {greeting!r}, reply: "Sure, go ahead."}}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""


def spec(lines: list[str]) -> Any:
    return load_pipeline_text(PIPELINE.format(lines=lines, greeting=GREETING))


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    yield memory
    memory.shutdown()


def tracing_into(exporter: InMemorySpanExporter, pipeline: Any) -> CallTracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return CallTracing.for_pipeline(provider, pipeline)


def at(span_ns: int | None) -> float:
    """A span time back as the call's stream seconds."""
    assert span_ns is not None
    return round((span_ns - ORIGIN_NS) / 1e9, 3)


class Trace:
    """The finished spans of one call, by name and parent."""

    def __init__(self, spans: tuple[ReadableSpan, ...]) -> None:
        self.spans = list(spans)
        (self.root,) = [s for s in spans if s.parent is None]

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name]

    def kids(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.spans if s.parent and s.parent.span_id == span.context.span_id]

    def children(self, span: ReadableSpan) -> dict[str, ReadableSpan]:
        found = self.kids(span)
        assert len({s.name for s in found}) == len(found), "one span of each name per parent"
        return {s.name: s for s in found}

    def turn(self, number: int) -> ReadableSpan:
        (span,) = [s for s in self.named("turn") if s.attributes["voicebridge.turn"] == number]
        return span


def events(span: ReadableSpan) -> list[tuple[str, float, dict[str, Any]]]:
    return [(e.name, at(e.timestamp), dict(e.attributes or {})) for e in span.events]


async def traced_call(exporter: InMemorySpanExporter, lines: list[str], script: Any) -> Any:
    pipeline = spec(lines)
    tracer = tracing_into(exporter, pipeline).call_tracer(wall_ns=lambda: ORIGIN_NS)
    call = CallHarness(pipeline)
    call.session.subscribe(tracer)
    async with call:
        await script(call)
    return call


async def test_a_barge_in_call_is_one_trace_of_turns_and_stage_spans(
    exporter: InMemorySpanExporter,
) -> None:
    async def script(call: CallHarness) -> None:
        await call.idle(0.92)  # the greeting's first sentence is playing
        await call.speak(speech_like(1.0, call.rate))
        await call.idle(3.0)

    call = await traced_call(exporter, ["wait a moment"], script)
    trace = Trace(exporter.get_finished_spans())
    per_turn = ["turn", "dialogue", "tts", "playout"]
    assert sorted(s.name for s in trace.spans) == sorted(
        ["call", *per_turn, *per_turn, "end_of_turn", "stt"]
    )
    assert len({s.context.trace_id for s in trace.spans}) == 1

    root = trace.root
    assert root.kind is SpanKind.SERVER
    assert {k: root.attributes[k] for k in ("voicebridge.call_id", "voicebridge.stream_id")} == {
        "voicebridge.call_id": "harness-call",
        "voicebridge.stream_id": "harness-stream",
    }
    assert root.attributes["voicebridge.codec"] == "audio/x-l16"
    assert root.attributes["voicebridge.pipeline"] == "traced"
    assert root.attributes["voicebridge.outcome"] == "other"  # the harness ends it: "test over"
    assert root.attributes["voicebridge.barge_ins"] == 1
    assert root.attributes["voicebridge.turns"] == 2
    assert at(root.start_time) == 0.0
    assert at(root.end_time) == call.session.timeline.dicts()[-1]["t"]  # call_ended
    assert sorted(s.name for s in trace.kids(root)) == ["turn", "turn"]

    (barge,) = call.timeline("barge_in")
    (ended,) = call.timeline("speech_ended")
    (played,) = call.timeline("turn_played")
    # The greeting (turn 1), cut by the caller: it ends at the clear, with what was heard.
    greeting = trace.turn(1)
    assert greeting.attributes["voicebridge.interrupted"] is True
    assert greeting.attributes["voicebridge.heard"] == barge["heard"] == "Hello and welcome to"
    assert at(greeting.end_time) == barge["at_s"]
    cut = (
        "barge_in",
        barge["at_s"],
        {
            "voicebridge.cause": "speech",
            "voicebridge.cleared": 1,
            "voicebridge.reaction_s": pytest.approx(barge["reaction_s"], abs=0.001),
            "voicebridge.heard": "Hello and welcome to",
        },
    )
    assert events(greeting) == [cut]
    assert events(root) == [cut]
    stages = trace.children(greeting)
    assert stages.keys() == {"dialogue", "tts", "playout"}  # a greeting answers no speech
    assert events(stages["playout"]) == [cut]
    assert at(stages["playout"].end_time) == barge["at_s"]

    # The answer (turn 2): from the caller's end of speech to its last audio played.
    answer = trace.turn(2)
    assert answer.attributes["voicebridge.interrupted"] is False
    assert answer.attributes["voicebridge.latency_s"] == played["latency_s"]
    assert answer.attributes["voicebridge.heard"] == "Sure, go ahead."
    assert at(answer.start_time) == ended["at"]
    assert at(answer.end_time) == played["t"]
    stages = trace.children(answer)
    assert stages.keys() == {"end_of_turn", "stt", "dialogue", "tts", "playout"}
    assert (at(stages["end_of_turn"].start_time), at(stages["end_of_turn"].end_time)) == (
        ended["at"],
        ended["t"],
    )
    stt = stages["stt"]
    assert stt.attributes["voicebridge.transcript"] == "wait a moment"
    assert stt.attributes["voicebridge.ttfb_s"] == played["stt_s"]
    assert at(stt.end_time) == round(ended["at"] + played["stt_s"], 3)
    dialogue = stages["dialogue"]
    assert dialogue.kind is SpanKind.CLIENT
    assert dialogue.attributes["voicebridge.stage"] == "voicebridge.testing:ScriptedDialogue"
    assert "gen_ai.operation.name" not in dialogue.attributes  # scripted, not a model
    assert at(dialogue.start_time) == at(stt.end_time)
    playout = stages["playout"]
    assert playout.attributes["voicebridge.duration_s"] == played["duration_s"]
    assert at(playout.end_time) == played["t"]
    for span in trace.spans:
        assert span.start_time is not None and span.end_time is not None
        assert span.start_time <= span.end_time
        assert span.status.status_code is StatusCode.UNSET


async def test_a_false_interruption_is_an_event_and_the_continuation_its_own_turn(
    exporter: InMemorySpanExporter,
) -> None:
    async def script(call: CallHarness) -> None:
        await call.idle(0.92)
        await call.speak(speech_like(0.35, call.rate))  # a cough: no words
        await call.idle(6.0)

    call = await traced_call(exporter, [""], script)
    trace = Trace(exporter.get_finished_spans())
    (continued,) = call.timeline("continued")
    assert [e[0] for e in events(trace.root)] == ["barge_in", "false_interruption"]
    name, t, attributes = events(trace.root)[1]
    assert t == continued["t"]
    assert attributes == {
        "voicebridge.turn": continued["turn"],
        "voicebridge.text": "the test line. We are glad you called today.",
    }
    assert trace.turn(1).attributes["voicebridge.interrupted"] is True
    resumed = trace.turn(continued["turn"])
    assert [e[0] for e in events(resumed)] == ["continued"]
    assert resumed.attributes["voicebridge.interrupted"] is False
    assert resumed.attributes["voicebridge.heard"] == continued["text"]


async def test_a_call_through_the_service_traces_a_provider_error_on_its_turn(
    exporter: InMemorySpanExporter,
) -> None:
    pipeline = scripted_spec(["hello there", "fail now"])
    sessions = Sessions()
    async with running_service(
        settings(),
        pipeline,
        clock_factory=StreamClock,
        on_session=sessions,
        record_events=True,
        tracing=tracing_into(exporter, pipeline),
    ) as service:
        audio = utterances(
            [("silence", 0.3), ("speech", 0.8), ("silence", 3.0), ("speech", 0.6),
             ("silence", 3.0)],
            8000,
        )  # fmt: skip
        await fast_caller(service.ws_url, sessions).run(audio, tail_s=1.0)
        await sessions.all[0].ended.wait()
    trace = Trace(exporter.get_finished_spans())
    assert trace.root.attributes["voicebridge.outcome"] == "caller_hangup"
    assert trace.root.attributes["voicebridge.call_id"] == sessions.all[0].ctx.info.call_id
    assert [e[0] for e in events(trace.root)] == ["provider_error"]
    # "hello there" is answered; "fail now" fails the dialogue and the fallback answers it.
    answered, fallback = sorted(trace.named("turn"), key=lambda s: s.start_time or 0)
    assert trace.children(answered)["dialogue"].status.status_code is StatusCode.UNSET
    failed = trace.children(fallback)["dialogue"]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "fake-llm: unavailable"
    ((name, _, attributes),) = events(failed)
    assert name == "provider_error"
    assert attributes["error.type"] == "unavailable"
    assert attributes["voicebridge.provider"] == "fake-llm"
    assert trace.children(fallback)["stt"].attributes["voicebridge.transcript"] == "fail now"


def test_settings_and_the_standard_environment_turn_tracing_on_and_off() -> None:
    off, on = TracingSettings(), TracingSettings(enabled=True)
    assert not off.active({}) and on.active({})
    assert off.active({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not off.active({"OTEL_TRACES_EXPORTER": "none"})
    assert not on.active({"OTEL_SDK_DISABLED": "true"})


def test_the_environment_wins_over_the_tracing_section(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = spec([])
    section = TracingSettings(enabled=True, service_name="agent-a", exporter="console")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    own = tracing_from_settings(section, pipeline, {}, make_global=False)
    assert own.provider.resource.attributes["service.name"] == "agent-a"
    environ = {"OTEL_SERVICE_NAME": "from-env", "OTEL_TRACES_EXPORTER": "none"}
    for name, value in environ.items():  # Resource.create reads the process environment itself
        monkeypatch.setenv(name, value)
    theirs = tracing_from_settings(section, pipeline, environ, make_global=False)
    assert theirs.provider.resource.attributes["service.name"] == "from-env"
    with pytest.raises(ValueError, match="gRPC"):
        tracing_from_settings(
            section.model_copy(update={"exporter": "otlp"}),
            pipeline,
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            make_global=False,
        )
    own.shutdown()
    theirs.shutdown()


OFF_PROBE = """
import asyncio, sys
from voicebridge.config import load_pipeline
from voicebridge.config.service_settings import ServiceSettings
from voicebridge.observe.trace_context import trace_headers
from voicebridge.server.app import create_app, tracing_for
from voicebridge.stages.dialogue.llm import Llm
from voicebridge.stages.tts.openai_tts import OpenAITts
settings = ServiceSettings.model_validate({"security": {"stream_token": "off"}})
spec = load_pipeline("pipelines/echo.yaml")
assert tracing_for(settings, spec) is None
create_app(settings, spec)
assert trace_headers() is None
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry") or "tracing" in m)
print(loaded)
"""


def test_with_tracing_off_nothing_of_opentelemetry_is_imported() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environ["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", OFF_PROBE],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


async def test_trace_headers_are_the_calls_own_and_none_without_tracing(
    exporter: InMemorySpanExporter,
) -> None:
    async def outside() -> dict[str, str] | None:
        return trace_headers()

    assert await asyncio.create_task(outside()) is None
    tracer = tracing_into(exporter, spec([])).call_tracer()
    headers = trace_headers()
    assert headers is not None
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    root = tracer.span_context  # the call is still open
    assert (int(trace_id, 16), int(span_id, 16)) == (root.trace_id, root.span_id)
    assert await asyncio.create_task(outside()) == headers  # tasks made from now on inherit it


def test_serve_with_tracing_on_and_no_sdk_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from voicebridge.cli import main

    monkeypatch.chdir(tmp_path)  # no configs/service.yaml here: the defaults
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.delitem(sys.modules, "voicebridge.observe.tracing_setup", raising=False)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.resources", None)  # as if not installed
    assert main(["serve", "--port", "0"]) == 7  # ExitCode.MISSING_EXTRA, before any port
    assert "pip install 'voicebridge[otel]'" in capsys.readouterr().err


def test_milestones_follow_the_known_gaps_from_one_anchor_either_way() -> None:
    from voicebridge.call.turns import TurnTiming
    from voicebridge.observe.turn_milestones import milestones

    timing = TurnTiming(7, 1.0, 1.4, 2.0, 2.25, 2.3, 2.5, 4.0).as_dict()
    expected = {
        "caller_end_s": 1.0,
        "transcript_s": 1.4,
        "first_text_s": 2.0,
        "first_audio_s": 2.25,
        "first_sent_s": 2.3,
        "first_played_s": 2.5,
        "completed_s": 4.0,
    }
    assert milestones(timing, "completed_s", 4.0) == expected
    assert milestones(timing, "first_text_s", 2.0) == expected
    # A greeting: nothing before its first text; a cut turn: nothing after its first played.
    greeting = TurnTiming(1, first_text_s=0.1, first_audio_s=0.2, first_sent_s=0.2).as_dict()
    assert milestones(greeting, "first_text_s", 0.1) == {
        "first_text_s": 0.1,
        "first_audio_s": 0.2,
        "first_sent_s": 0.2,
    }
    # Without the transcript, the latency still joins the end of speech to the first played.
    unheard = TurnTiming(3, caller_end_s=5.0, first_played_s=5.6, completed_s=6.0).as_dict()
    assert milestones(unheard, "completed_s", 6.0) == {
        "completed_s": 6.0,
        "first_played_s": 5.6,
        "caller_end_s": 5.0,
    }


async def test_include_text_false_keeps_every_word_out_of_the_trace(
    exporter: InMemorySpanExporter,
) -> None:
    pipeline = spec(["wait a moment"])
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = CallTracing.for_pipeline(provider, pipeline, include_text=False)
    call = CallHarness(pipeline)
    call.session.subscribe(tracing.call_tracer(wall_ns=lambda: ORIGIN_NS))
    async with call:
        await call.idle(0.92)
        await call.speak(speech_like(1.0, call.rate))
        await call.idle(3.0)
    spans = exporter.get_finished_spans()
    assert len(spans) == 11 and any(s.events for s in spans)  # the barge-in is still there
    words = ("voicebridge.heard", "voicebridge.transcript", "voicebridge.text")
    for span in spans:
        keys = set(span.attributes or {}) | {k for e in span.events for k in (e.attributes or {})}
        assert not keys & set(words), span.name
