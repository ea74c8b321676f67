"""Provider faults injected at the wire, survived by whole calls.

A real ``Session`` is driven by ``CallHarness`` on its stream clock (virtual time, Plivo's
playout modelled); the ``llm`` and ``openai_tts`` stages talk real HTTP to the fake OpenAI server
of ``tests/providers/openai_fakes.py``, which answers errors, 429 with ``retry-after-ms``, stalls
(a stream held open until the test releases it) and cut connections. What is asserted is what
went out on the wire (``checkpoint`` texts after their ``playAudio``), what the caller heard, and
the dialogue history.

A held stream is a stall the test controls: ``call.stall_when`` tells the harness that the only
thing a stage waits for is the held request, so call time may run on.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from voicebridge.clock import VirtualClock
from voicebridge.config import load_pipeline_text
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.runtime import resilience
from voicebridge.sim.signals import speech_like
from voicebridge.telephony.call_control import PlivoCallControl
from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest
from voicebridge.testing.harness import CallHarness
from voicebridge.testing.plivo_rest_fake import FakePlivoRest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "providers"))
from openai_fakes import ChatReply, FakeOpenAI, SpeechReply

KEY = "sk-fake"
FALLBACK = "Sorry, something went wrong."
GOODBYE = "We have a problem, goodbye for now."

PIPELINE = """
name: faults
session:
  chunk_ms: 100
  max_lead_ms: 600
  fallback_text: {fallback}
  replies:
    filler_after_ms: 1500
    filler_texts: ["One moment.", "Still working on it."]
    max_fillers: 2
    reply_timeout_ms: {reply_timeout_ms}
    give_up_after: {give_up_after}
    give_up_when_circuit_open: {give_up_open}
    goodbye_text: {goodbye}
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
      dtmf_wait_s: 0
      resilience:
        retries: {retries}
        backoff_s: 0.2
        first_byte_timeout_s: {first_byte}
        breaker: {{failures: {failures}, cooldown_s: 30}}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""


def call_control(plivo: FakePlivoRest) -> PlivoCallControl:
    rest = PlivoRest(
        PlivoCredentials("MAFAKE", "token"), base_url=plivo.base_url, backoff_s=0.01, timeout_s=2
    )
    return PlivoCallControl(rest, lambda to: f"https://agent.example/transfer?to={to}")


def spec(
    fake: FakeOpenAI,
    lines: list[str],
    *,
    retries: int = 1,
    first_byte: float | None = 4.0,
    reply_timeout_ms: int | None = 6000,
    failures: int = 5,
    give_up_after: int = 3,
    give_up_open: bool = True,
) -> PipelineSpec:
    text = PIPELINE.format(
        fallback=FALLBACK,
        goodbye=GOODBYE,
        lines=lines,
        base_url=fake.base_url,
        retries=retries,
        first_byte="null" if first_byte is None else first_byte,
        reply_timeout_ms="null" if reply_timeout_ms is None else reply_timeout_ms,
        failures=failures,
        give_up_after=give_up_after,
        give_up_open=str(give_up_open).lower(),
    )
    return load_pipeline_text(text)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    resilience.breakers.reset()
    yield
    resilience.breakers.reset(clock=resilience.MonotonicClock())


@pytest.fixture
async def fake() -> Any:
    async with FakeOpenAI(api_key=KEY) as server:
        yield server


async def caller_says(call: CallHarness, seconds: float = 0.5) -> None:
    await call.speak(speech_like(seconds, call.rate))


def sent_texts(call: CallHarness) -> list[str]:
    """The text of every piece whose checkpoint went out on the wire, in order."""
    names = [m.message["name"] for m in call.events("checkpoint")]
    noted = {e["name"]: e["text"] for e in call.timeline("checkpoint")}
    assert call.events("playAudio") or not names
    return [noted[name] for name in names]


def played(call: CallHarness) -> list[str]:
    return [e["text"] for e in call.timeline("played")]


def history(call: CallHarness) -> list[tuple[str, str, bool]]:
    ctx = call.session.ctx
    assert ctx is not None
    return [(h.role, h.text, h.interrupted) for h in ctx.history]


def shown(request: Any) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in request.body["messages"] if m["role"] != "system"]


def at(call: CallHarness, kind: str, **match: Any) -> float:
    """Stream time of the first timeline event of ``kind`` matching ``match``."""
    for event in call.timeline(kind):
        if all(event.get(k) == v for k, v in match.items()):
            return float(event["t"])
    raise AssertionError(f"no {kind} {match} in the timeline")


def turn_end(call: CallHarness, index: int = 0) -> float:
    return float(call.timeline("caller_said")[index]["t"])


# --- retried where safe ---------------------------------------------------------------------------


async def test_a_500_then_success_is_retried_and_said_once(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(status=500), ChatReply(text="We open at seven tomorrow."))
    async with CallHarness(spec(fake, ["when do you open"])) as call:
        await caller_says(call)
        await call.until(lambda: "We open at seven tomorrow." in played(call), limit_s=6)
        assert sent_texts(call) == ["We open at seven tomorrow."]
        assert call.timeline("provider_error") == []
        assert history(call) == [
            ("caller", "when do you open", False),
            ("agent", "We open at seven tomorrow.", False),
        ]
    first, second = fake.chat_requests
    assert (first.status, second.status) == (500, 200)
    assert shown(first) == shown(second) == [("user", "when do you open")]


async def test_a_429_waits_for_retry_after(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(status=429, retry_after_ms=1200), ChatReply(text="Yes, we deliver."))
    async with CallHarness(spec(fake, ["do you deliver"])) as call:
        await caller_says(call)
        await call.until(lambda: "Yes, we deliver." in played(call), limit_s=6)
        assert sent_texts(call) == ["Yes, we deliver."]
        waited = at(call, "agent_text", text="Yes, we deliver.") - turn_end(call)
        assert (
            1.2 - 0.04 <= waited < 1.5
        )  # (frame-grained times) the provider's hint, not the 0.2 s backoff; before a filler
    assert [r.status for r in fake.chat_requests] == [429, 200]


async def test_a_rate_limit_asking_too_long_a_wait_is_not_retried(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(status=429, retry_after_ms=20_000), ChatReply(text="Too late."))
    async with CallHarness(spec(fake, ["hello"])) as call:
        await caller_says(call)
        await call.until(lambda: FALLBACK in played(call), limit_s=4)
        assert sent_texts(call) == [FALLBACK]
    assert len(fake.chat_requests) == 1


async def test_a_stalled_request_times_out_on_call_time_and_is_retried(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(text="Never sent.", hold_after=0), ChatReply(text="Here you are."))
    async with CallHarness(spec(fake, ["hello"], first_byte=1.0)) as call:
        call.stall_when(lambda: fake.holding > 0, fake.changed)
        await caller_says(call)
        await call.until(lambda: "Here you are." in played(call), limit_s=6)
        assert sent_texts(call) == ["Here you are."]  # 1 s + backoff: no filler needed
        waited = at(call, "agent_text", text="Here you are.") - turn_end(call)
        assert 1.0 - 0.04 <= waited < 1.5
    first, second = fake.chat_requests
    assert first.disconnected and not first.completed and second.completed


# --- late replies: filler, then the reply or the fallback -----------------------------------------


async def test_slow_first_byte_gets_a_filler_then_the_reply(fake: FakeOpenAI) -> None:
    fake.reply(ChatReply(text="Your order ships today.", hold_after=0))
    async with CallHarness(spec(fake, ["where is my order"])) as call:
        call.stall_when(lambda: fake.holding > 0, fake.changed)
        await caller_says(call)
        await call.until(lambda: "One moment." in played(call), limit_s=4)
        filler_at = at(call, "filler")
        assert 1.5 <= filler_at - turn_end(call) <= 1.5 + 0.2  # housekeeping tick + a frame
        fake.release.set()
        await call.until(lambda: "Your order ships today." in played(call), limit_s=6)
        assert sent_texts(call) == ["One moment.", "Your order ships today."]
        # The filler is not part of the conversation the model sees.
        assert history(call) == [
            ("caller", "where is my order", False),
            ("agent", "Your order ships today.", False),
        ]
        metrics = [m for m in call.timeline("turn_played") if m["latency_s"] is not None]
        assert len(metrics) == 1  # the latency belongs to the reply, not to the filler
    assert len(fake.chat_requests) == 1 and fake.chat_requests[0].completed


async def test_stalled_forever_gets_fillers_then_the_fallback_and_the_call_goes_on(
    fake: FakeOpenAI,
) -> None:
    fake.reply(ChatReply(text="Far too late.", hold_after=0), ChatReply(text="I'm here."))
    lines = ["where is my order", "hello"]
    async with CallHarness(spec(fake, lines, first_byte=None)) as call:
        call.stall_when(lambda: fake.holding > 0, fake.changed)
        await caller_says(call)
        await call.until(lambda: FALLBACK in played(call), limit_s=9)
        assert sent_texts(call) == ["One moment.", "Still working on it.", FALLBACK]
        end = turn_end(call)
        assert at(call, "reply_timeout") - end == pytest.approx(6.0, abs=0.15)
        # Never a silence longer than the filler delay (plus a tick) before the fallback: from
        # the end of the caller's turn, or of the last filler played, to the next words.
        quiet_from = [end, at(call, "played", text="One moment.")]
        quiet_from.append(at(call, "played", text="Still working on it."))
        spoken_at = [at(call, "filler", text="One moment.")]
        spoken_at.append(at(call, "filler", text="Still working on it."))
        spoken_at.append(at(call, "agent_text", text=FALLBACK))
        gaps = [b - a for a, b in zip(quiet_from, spoken_at, strict=True)]
        assert max(gaps) <= 1.5 + 0.2 and min(gaps) >= 0
        await fake.wait_for(lambda: fake.chat_requests[0].disconnected)  # the late work is gone
        await call.idle(0.5)
        await caller_says(call)
        await call.until(lambda: "I'm here." in played(call), limit_s=5)
        assert call.wire.closed is None
    assert history(call) == [
        ("caller", "where is my order", False),
        ("agent", FALLBACK, False),
        ("caller", "hello", False),
        ("agent", "I'm here.", False),
    ]
    assert shown(fake.chat_requests[1]) == [
        ("user", "where is my order"),
        ("assistant", FALLBACK),
        ("user", "hello"),
    ]


async def test_a_reply_cut_mid_stream_keeps_what_was_said_and_is_not_repeated(
    fake: FakeOpenAI,
) -> None:
    fake.reply(
        ChatReply(text="Your order left the bakery. It arrives at noon. Enjoy it!", cut_after=7)
    )
    async with CallHarness(spec(fake, ["where is my order"], retries=3)) as call:
        await caller_says(call)
        await call.until(lambda: FALLBACK in played(call), limit_s=6)
        assert sent_texts(call) == ["Your order left the bakery.", FALLBACK]
        (error,) = call.timeline("provider_error")
        assert error["error_kind"] == "unavailable"
        assert history(call) == [
            ("caller", "where is my order", False),
            ("agent", "Your order left the bakery.", False),
            ("agent", FALLBACK, False),
        ]
    assert len(fake.chat_requests) == 1  # unsafe to retry once words went out


# --- a provider that stays down -------------------------------------------------------------------


async def test_consecutive_failed_turns_end_the_call_with_a_goodbye(fake: FakeOpenAI) -> None:
    fake.default_chat = ChatReply(status=503)
    lines = ["hello", "hello again"]
    call_spec = spec(fake, lines, retries=0, give_up_after=2)
    async with (
        FakePlivoRest("MAFAKE", "token", live_calls={"harness-call"}) as plivo,
        CallHarness(call_spec, call_control=call_control(plivo)) as call,
    ):
        await caller_says(call)
        await call.until(lambda: FALLBACK in played(call), limit_s=4)
        await caller_says(call)
        await call.until(lambda: call.wire.closed is not None, limit_s=8)
        assert sent_texts(call) == [FALLBACK, GOODBYE]
        assert played(call) == [FALLBACK, GOODBYE]  # the goodbye played before the hang-up
        assert call.session.end_reason == "hangup:provider_down"
        assert call.wire.closed == (1000, "agent hung up")
        (down,) = call.timeline("provider_down")
        assert down["why"] == "failed_turns"
        # Hung up through Plivo's REST API once the goodbye had played.
        (hangup,) = call.timeline("rest_hangup")
        assert hangup["outcome"] == "hung_up" and "harness-call" in plivo.ended_calls
        assert at(call, "played", text=GOODBYE) <= hangup["t"]


async def test_the_breaker_opens_fails_fast_and_a_probe_closes_it(fake: FakeOpenAI) -> None:
    breaker_clock = VirtualClock()
    resilience.breakers.reset(clock=breaker_clock)
    fake.default_chat = ChatReply(status=503)
    options: dict[str, Any] = {"retries": 0, "failures": 2, "give_up_open": False}
    async with CallHarness(spec(fake, ["one", "two"], **options)) as first_call:
        for _ in range(2):
            await caller_says(first_call)
            await first_call.until(lambda: first_call.timeline("provider_error"), limit_s=4)
            await first_call.idle(1.0)
    assert len(fake.chat_requests) == 2
    (breaker,) = list(resilience.breakers)
    assert breaker.state is resilience.BreakerState.OPEN

    # Another call while it is open: a request would stall (4 s first-byte deadline), but none
    # is sent; the fallback comes at once.
    fake.default_chat = ChatReply(text="Unreachable.", hold_after=0)
    lines = ["three", "four"]
    async with CallHarness(spec(fake, lines, **options)) as second_call:
        second_call.stall_when(lambda: fake.holding > 0, fake.changed)
        await caller_says(second_call)
        await second_call.until(lambda: FALLBACK in played(second_call), limit_s=3)
        assert len(fake.chat_requests) == 2
        waited = at(second_call, "agent_text", text=FALLBACK) - turn_end(second_call)
        assert waited < 0.1
        # The provider recovers; after the cool-down one probe goes out and closes it.
        fake.default_chat = ChatReply(text="Back in business.")
        await breaker_clock.advance(30.0)
        await caller_says(second_call)
        await second_call.until(lambda: "Back in business." in played(second_call), limit_s=4)
        assert sent_texts(second_call) == [FALLBACK, "Back in business."]
    assert len(fake.chat_requests) == 3
    assert breaker.state is resilience.BreakerState.CLOSED and breaker.opened == 1


async def test_an_open_breaker_ends_a_new_call_with_a_goodbye(fake: FakeOpenAI) -> None:
    resilience.breakers.reset(clock=VirtualClock())
    fake.default_chat = ChatReply(status=500)
    async with CallHarness(spec(fake, ["one"], retries=0, failures=1)) as first_call:
        await caller_says(first_call)
        await first_call.until(lambda: first_call.timeline("provider_error"), limit_s=4)
    async with CallHarness(spec(fake, ["two"], retries=0, failures=1)) as call:
        await caller_says(call)
        await call.until(lambda: call.wire.closed is not None, limit_s=6)
        assert sent_texts(call) == [GOODBYE]
        assert call.session.end_reason == "hangup:provider_down"
        (down,) = call.timeline("provider_down")
        assert down["why"] == "circuit_open"
    assert len(fake.chat_requests) == 1


async def test_a_bad_request_never_opens_the_breaker(fake: FakeOpenAI) -> None:
    fake.default_chat = ChatReply(status=400, error_message="context too long")
    lines = ["a", "b", "c"]
    async with CallHarness(spec(fake, lines, failures=1, give_up_after=5)) as call:
        for count in range(1, len(lines) + 1):
            await caller_says(call)
            await call.until(lambda n=count: played(call) == [FALLBACK] * n, limit_s=4)
        assert sent_texts(call) == [FALLBACK] * 3
    assert len(fake.chat_requests) == 3  # never retried, never refused
    (breaker,) = list(resilience.breakers)
    assert breaker.state is resilience.BreakerState.CLOSED


# --- isolation ------------------------------------------------------------------------------------


async def test_one_calls_failing_provider_leaves_another_call_untouched() -> None:
    async with FakeOpenAI(api_key=KEY) as down, FakeOpenAI(api_key=KEY) as up:
        down.default_chat = ChatReply(status=503)
        up.reply(ChatReply(text="Good morning. How can I help?"), ChatReply(text="Sure thing."))
        lines = ["hello", "book a table"]

        async def converse(call: CallHarness) -> None:
            for _ in lines:
                await caller_says(call)
                await call.idle(2.0)

        failing = CallHarness(spec(down, lines, retries=1, give_up_after=5))
        healthy = CallHarness(spec(up, lines))
        async with failing, healthy:
            await asyncio.gather(converse(failing), converse(healthy))
            assert sent_texts(failing) == [FALLBACK, FALLBACK]
            assert sent_texts(healthy) == ["Good morning.", "How can I help?", "Sure thing."]
            assert healthy.timeline("provider_error") == []
            assert healthy.wire.closed is None and failing.wire.closed is None
            assert history(healthy) == [
                ("caller", "hello", False),
                ("agent", "Good morning. How can I help?", False),
                ("caller", "book a table", False),
                ("agent", "Sure thing.", False),
            ]
        assert [r.status for r in down.chat_requests] == [503] * 4
        assert len(up.chat_requests) == 2


# --- the speaker's provider -----------------------------------------------------------------------

TTS_PIPELINE = """
name: tts-faults
session: {{chunk_ms: 100, max_lead_ms: 600, fallback_text: "{fallback}"}}
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: [hello]}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{reply: "Sure thing. Anything else?"}}
  - type: voicebridge.stages.tts.openai_tts:OpenAITts
    name: openai_tts
    params: {{base_url: {base_url}, resilience: {{retries: 1, backoff_s: 0.1}}}}
  - type: encode
"""


@pytest.mark.parametrize(
    "fault",
    [SpeechReply(status=500), SpeechReply(status=429), SpeechReply(cut_after=1)],
    ids=["500", "429", "cut"],
)
async def test_a_speech_request_that_fails_is_retried_and_heard_once(
    fake: FakeOpenAI, fault: SpeechReply
) -> None:
    fake.speak(fault)
    text = TTS_PIPELINE.format(fallback=FALLBACK, base_url=fake.base_url)
    async with CallHarness(load_pipeline_text(text)) as call:
        await caller_says(call)
        await call.until(lambda: "Anything else?" in played(call), limit_s=8)
        assert sent_texts(call) == ["Sure thing.", "Anything else?"]
        assert call.timeline("provider_error") == []
    inputs = [r.body["input"] for r in fake.speech_requests]
    assert inputs == ["Sure thing.", "Sure thing.", "Anything else?"]


STALLING_TTS_PIPELINE = """
name: tts-stall
session:
  chunk_ms: 100
  max_lead_ms: 600
  fallback_text: "{fallback}"
  replies: {{filler_after_ms: 1500, reply_timeout_ms: {reply_timeout_ms}}}
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: [hello]}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{reply: "We open at nine. We close at five."}}
  - type: voicebridge.stages.tts.openai_tts:OpenAITts
    name: openai_tts
    params:
      base_url: {base_url}
      resilience: {{retries: 1, backoff_s: 0.1, first_byte_timeout_s: {first_byte}}}
  - type: encode
"""


async def test_a_stalled_speaker_is_retried_and_a_filler_never_follows_the_answer(
    fake: FakeOpenAI,
) -> None:
    fake.speak(SpeechReply(hold_after=0))  # the reply's first sentence stalls
    text = STALLING_TTS_PIPELINE.format(
        fallback=FALLBACK, base_url=fake.base_url, reply_timeout_ms=6000, first_byte=2.5
    )
    async with CallHarness(load_pipeline_text(text)) as call:
        call.stall_when(lambda: fake.holding > 0, fake.changed)
        await caller_says(call)
        await call.until(lambda: "We close at five." in played(call), limit_s=8)
        await call.idle(1.0)
        # The filler was due at 1.5 s but queued behind the stalled sentence: once the answer
        # began it was dropped, not said after it.
        assert [e["text"] for e in call.timeline("filler")] == ["One moment."]
        assert sent_texts(call) == ["We open at nine.", "We close at five."]
        assert history(call) == [
            ("caller", "hello", False),
            ("agent", "We open at nine. We close at five.", False),
        ]
    inputs = [r.body["input"] for r in fake.speech_requests]
    assert inputs[:3] == ["We open at nine.", "We open at nine.", "We close at five."]
    assert fake.speech_requests[0].disconnected


async def test_a_speaker_stalled_past_the_reply_timeout_gives_way_to_the_fallback(
    fake: FakeOpenAI,
) -> None:
    fake.speak(SpeechReply(hold_after=0))
    text = STALLING_TTS_PIPELINE.format(
        fallback=FALLBACK, base_url=fake.base_url, reply_timeout_ms=4000, first_byte="null"
    )
    async with CallHarness(load_pipeline_text(text)) as call:
        call.stall_when(lambda: fake.holding > 0, fake.changed)
        await caller_says(call)
        await call.until(lambda: FALLBACK in played(call), limit_s=8)
        await call.idle(1.0)
        assert sent_texts(call) == [FALLBACK]  # the stalled reply and its filler were dropped
        assert at(call, "reply_timeout") - turn_end(call) == pytest.approx(4.0, abs=0.15)
        assert history(call) == [("caller", "hello", False), ("agent", FALLBACK, False)]
    assert fake.speech_requests[0].disconnected
