"""Whole calls through the ``openai_realtime`` stage, against the loopback Realtime API fake.

A real ``Session`` on a stream clock (``CallHarness``: Plivo's playout and acks modelled), the
official SDK's WebSocket client, and ``openai_realtime_fake.FakeRealtime``. ``Live``
(``s2s_live.LiveCall``) waits after each 20 ms frame until the network is quiet, so each event
lands at an exact stream time and the numbers below are exact.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from voicebridge.config import load_pipeline_text
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.runtime import resilience
from voicebridge.runtime.resilience import BreakerState
from voicebridge.runtime.stage import StageError
from voicebridge.sim.signals import speech_like
from voicebridge.stages.realtime.openai_realtime import OpenAIRealtime
from voicebridge.testing.harness import CallHarness

sys.path.insert(0, str(Path(__file__).parent))
from openai_realtime_fake import FakeRealtime, Reply
from s2s_live import (
    COOLDOWN_S,
    LiveCall,
    breaker_template,
    call_metrics,
    pipeline_spec,
    played,
)

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
    return pipeline_spec(PIPELINE, fake.base_url, extra, "realtime-test.yaml")


class Live(LiveCall[OpenAIRealtime]):
    stage_type = OpenAIRealtime


async def live_call(fake: FakeRealtime, extra: str = "", **kwargs: Any) -> Live:
    call = CallHarness(spec(fake, extra), encoding="audio/x-mulaw", rate=8000, **kwargs)
    return await Live.start(call, fake)


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


LONG = "Our bakery opens at seven in the morning and closes at six in the evening, every day."


class LateAcks(CallHarness):
    """Plivo's acknowledgements arrive ``delay_s`` after the audio played (network latency)."""

    def __init__(self, *args: Any, delay_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delay_s = delay_s
        self.late: list[tuple[float, str]] = []

    async def _ack(self, name: str) -> None:
        self.late.append((self.t + self.delay_s, name))

    async def frame(self, pcm: Any = None) -> None:
        await super().frame(pcm)
        due = [name for at, name in self.late if at <= self.t + 1e-9]
        self.late = [(at, name) for at, name in self.late if at > self.t + 1e-9]
        for name in due:
            await super()._ack(name)


def heard_by_caller(call: CallHarness, turn: int) -> float:
    """Milliseconds of ``turn``'s audio the modelled caller really heard (the playout model)."""
    pieces = call.playout.pieces
    first = next(i for i, p in enumerate(pieces) if p.name and p.name.startswith(f"turn-{turn}/"))
    return (
        sum(
            p.heard_samples
            for p in pieces[first:]
            if p.name is None or p.name.startswith(f"turn-{turn}/")
        )
        / 8.0
    )


async def interrupted_call(
    fake: FakeRealtime, after_s: float, harness: type[CallHarness] = CallHarness, **kwargs: Any
) -> tuple[Live, int]:
    """The caller asks, the model answers with LONG; ``after_s`` into its playout the caller
    talks over it. Returns the call and the interrupted turn."""
    fake.caller_says("when are you open", "wait a second")
    fake.reply(Reply(text=LONG, chunk_ms=400), Reply(text="Sure, go ahead."))
    call = harness(spec(fake), encoding="audio/x-mulaw", rate=8000, **kwargs)
    live = await Live.start(call, fake)
    await live.speak(1.0)
    await live.until(lambda: bool(call.events("playAudio")))
    turn = call.timeline("agent_text")[0]["turn"]
    await live.idle(after_s)
    await live.speak(0.6)
    await live.until(lambda: bool(call.timeline("barge_in")), limit_s=2)
    await live.idle(0.6)
    return live, turn


def truncation(fake: FakeRealtime) -> dict[str, Any]:
    (truncate,) = fake.session.truncates
    return truncate


@pytest.mark.parametrize(
    ("case", "after_s", "harness", "options"),
    [
        ("some pieces acknowledged", 1.1, CallHarness, {}),
        ("nothing acknowledged yet", 0.0, CallHarness, {}),
        ("acknowledgements lost", 1.1, CallHarness, {"ack": False}),
    ],
)
async def test_barge_in_truncates_the_model_at_exactly_what_the_caller_heard(
    fake: FakeRealtime, case: str, after_s: float, harness: type[CallHarness], options: Any
) -> None:
    live, turn = await interrupted_call(fake, after_s, harness, **options)
    call = live.call
    try:
        truncate = truncation(fake)
        ctx = call.session.ctx
        assert ctx is not None
        (barge_in,) = call.timeline("barge_in")
        heard = heard_by_caller(call, turn)
        # The model is cut where the ledger says, and that is where the caller stopped hearing.
        assert truncate["audio_end_ms"] == round(ctx.heard_audio.ms(turn))
        assert truncate["audio_end_ms"] == round(heard)
        assert 0 < heard < len(LONG) * 60
        item = next(i for i in fake.session.items if i.id == truncate["item_id"])
        assert item.truncated_at == truncate["audio_end_ms"] and item.heard == ""
        assert truncate["content_index"] == 0
        if case == "nothing acknowledged yet":
            assert not [a for a in call.acks_sent if a.message["name"].startswith(f"turn-{turn}/")]
            assert heard < 400  # still inside the first piece
        # The history holds the words that time covers, marked as interrupted.
        agent = [h for h in ctx.history if h.role == "agent" and h.turn == turn]
        assert agent and agent[0].interrupted
        assert LONG.startswith(agent[0].text)
        assert barge_in["heard"] is not None
    finally:
        await call.session.end("test over")


async def test_late_acknowledgements_truncate_where_the_ledger_puts_the_playhead(
    fake: FakeRealtime,
) -> None:
    """Acks 240 ms late: the ledger re-anchors on each, so its playhead (and the cut) trail
    the real one by at most that much; the model and the history still agree to the ms."""
    live, turn = await interrupted_call(fake, 1.1, LateAcks, delay_s=0.24)
    call = live.call
    try:
        truncate = truncation(fake)
        ctx = call.session.ctx
        assert ctx is not None
        assert truncate["audio_end_ms"] == round(ctx.heard_audio.ms(turn))
        heard = heard_by_caller(call, turn)
        assert heard - 240 <= truncate["audio_end_ms"] <= heard
    finally:
        await call.session.end("test over")


async def test_a_reply_heard_to_its_end_is_not_truncated(fake: FakeRealtime) -> None:
    fake.caller_says("hello", "and another thing")
    fake.reply(Reply(text="Hello there."), Reply(text="Go on."))
    live = await live_call(fake)
    call = live.call
    try:
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 1)
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 2)
    finally:
        await call.session.end("test over")
    assert fake.session.truncates == [] and fake.session.cancels == []
    assert live.history() == [
        ("caller", "hello", False),
        ("agent", "Hello there.", False),
        ("caller", "and another thing", False),
        ("agent", "Go on.", False),
    ]
    assert fake.session.conversation() == [
        ("user", "hello"),
        ("assistant", "Hello there."),
        ("user", "and another thing"),
        ("assistant", "Go on."),
    ]


async def test_the_model_transfers_the_call_after_saying_its_line(fake: FakeRealtime) -> None:
    fake.caller_says("sales please")
    fake.reply(
        Reply(text="", tool_calls=[("transfer_call", {"to": "sales", "message": "One moment."})])
    )
    live = await live_call(fake, 'transfer_targets: {sales: "+15550101"}')
    call = live.call
    try:
        await live.speak(0.8)
        await live.until(lambda: bool(call.timeline("transfer_unavailable")))
        # No Plivo credentials in this harness: the session says so and keeps the call.
        assert call.timeline("transfer_unavailable")[0]["to"] == "+15550101"
    finally:
        await call.session.end("test over")
    tools = fake.session.config["tools"]
    transfer = next(t for t in tools if t["name"] == "transfer_call")
    assert transfer["type"] == "function"
    assert transfer["parameters"]["properties"]["to"]["enum"] == ["sales"]
    assert played(call) == "One moment."
    said = fake.session.of("response.create")[-1]["response"]
    assert said["instructions"].endswith("\nOne moment.") and said["tool_choice"] == "none"
    assert live.history() == [("caller", "sales please", False), ("agent", "One moment.", False)]


async def test_the_model_hangs_up_once_its_goodbye_has_played(fake: FakeRealtime) -> None:
    fake.caller_says("that's all, bye")
    fake.reply(Reply(text="Thanks for calling, goodbye!", tool_calls=[("hang_up", {})]))
    live = await live_call(fake)
    call = live.call
    await live.speak(0.8)
    await live.until(lambda: call.session.ended.is_set())
    assert call.session.end_reason == "hangup:openai_realtime"
    assert played(call) == "Thanks for calling, goodbye!"  # all of it, then the hang-up
    assert live.history()[-1] == ("agent", "Thanks for calling, goodbye!", False)


async def test_a_user_tool_is_answered_and_the_model_goes_on(fake: FakeRealtime) -> None:
    fake.caller_says("where is order 5512")
    fake.reply(
        Reply(text="", tool_calls=[("lookup_order", {"order_number": "5512"})]),
        Reply(text="Order 5512 is out for delivery."),
    )
    tool = """
tools:
  - name: lookup_order
    description: Where an order is.
    parameters: {properties: {order_number: {type: string}}}
    function: openai_fakes:lookup_order
"""
    live = await live_call(fake, tool)
    call = live.call
    try:
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 2)
    finally:
        await call.session.end("test over")
    output = next(i for i in fake.session.items if i.type == "function_call_output")
    assert '"status": "out for delivery"' in output.text
    assert (
        output.call_id == next(i for i in fake.session.items if i.type == "function_call").call_id
    )
    assert live.history() == [
        ("caller", "where is order 5512", False),
        ("agent", "Order 5512 is out for delivery.", False),
    ]


async def test_a_model_error_mid_reply_speaks_the_fallback(fake: FakeRealtime) -> None:
    fake.caller_says("when are you open")
    fake.reply(Reply(text=LONG, chunk_ms=400, fail="The server had an error", fail_after_chunks=2))
    live = await live_call(fake)
    call = live.call
    try:
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 2)
        (error,) = call.timeline("provider_error")
        assert error["stage"] == "openai_realtime" and error["error_kind"] == "unavailable"
        assert call.wire.closed is None  # the call goes on
    finally:
        await call.session.end("test over")
    history = live.history()
    assert history[0] == ("caller", "when are you open", False)
    assert LONG.startswith(history[1][1]) and history[1][1]  # the 800 ms that were said
    assert history[2] == ("agent", "Sorry, say that again?", False)
    assert fake.session.conversation()[-1] == ("assistant", "Sorry, say that again?")


async def test_a_dropped_socket_is_reestablished_with_the_heard_history(
    fake: FakeRealtime,
) -> None:
    fake.caller_says("when are you open", "thanks")
    fake.reply(
        Reply(text="We open at seven."),
        Reply(text=LONG, chunk_ms=400, drop_after_chunks=2),
    )
    live = await live_call(fake)
    call = live.call
    try:
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 1)
        await live.speak(0.8)
        await live.until(lambda: len(fake.sessions) == 2 and live.stage.link is not None)
        await live.until(lambda: len(call.timeline("turn_played")) >= 3)
        (error,) = call.timeline("provider_error")
        assert error["error_kind"] == "unavailable" and "1011" in error["error"]
    finally:
        await call.session.end("test over")
    first, second = fake.sessions
    assert first.closed and second.config == first.config  # the same session set-up
    replayed = [(i.role, i.text) for i in second.items][:3]
    assert replayed == [
        ("user", "when are you open"),
        ("assistant", "We open at seven."),
        ("user", "thanks"),
    ]
    assert live.history()[-1] == ("agent", "Sorry, say that again?", False)
    assert second.conversation()[-1] == ("assistant", "Sorry, say that again?")


async def test_a_bad_key_fails_the_call_start_with_a_clear_error(fake: FakeRealtime) -> None:
    fake.api_key = "sk-other"
    call = CallHarness(spec(fake), encoding="audio/x-mulaw", rate=8000)
    await call.start()
    assert call.wire.closed is not None and call.wire.closed[0] == 1011
    (failed,) = call.timeline("pipeline_start_failed")
    assert "session did not open: auth: Incorrect API key provided." in failed["error"]
    assert fake.refused == 1  # an auth failure is not retried


async def test_start_up_retries_and_its_connect_deadline_run_on_the_wall_clock(
    fake: FakeRealtime,
) -> None:
    """The call's clock stands still until its pipeline has started (a stream clock, moved by
    the caller's audio): the wait between two tries at start-up, and the connect deadline, run
    on the wall clock, so a start that cannot open a session ends with a clear error instead of
    waiting forever."""
    fake.unavailable = True
    call = CallHarness(spec(fake), encoding="audio/x-mulaw", rate=8000)
    await call.start()
    (failed,) = call.timeline("pipeline_start_failed")
    assert "did not open: unavailable: The server is overloaded" in failed["error"]
    assert fake.refused == 2  # retries: 1, after a 0.05 s backoff
    fake.unavailable = False
    fake.hold_setup = True  # OpenAI never answers the session.update
    call = CallHarness(spec(fake, "connect_timeout_s: 0.2"), encoding="audio/x-mulaw", rate=8000)
    await call.start()
    (failed,) = call.timeline("pipeline_start_failed")
    assert "did not open: timeout: no answer in time" in failed["error"]
    await fake.wait_for(lambda: fake.holding == 0)  # the client gave up on both and left
    assert len(fake.sessions) == 2 and all(s.closed for s in fake.sessions)


async def test_a_reconnect_that_hangs_times_out_on_call_time_and_is_tried_again(
    fake: FakeRealtime,
) -> None:
    """The socket drops and OpenAI then leaves the new sessions unanswered: each try gives up
    after ``connect_timeout_s`` of call time, and once OpenAI answers again the session is back
    with the heard history and the fallback is said."""
    fake.caller_says("when are you open")
    fake.reply(Reply(text=LONG, chunk_ms=400, drop_after_chunks=2))
    live = await live_call(fake, "connect_timeout_s: 1")
    call = live.call
    try:
        fake.hold_setup = True
        await live.speak(0.8)
        await live.until(lambda: fake.holding == 1 and len(fake.sessions) == 2)
        tried_at = call.t
        await live.until(lambda: len(fake.sessions) == 3)  # the retry, after the timeout
        # 1 s of call time, then the backoff (0.05 s, jittered by up to 25 %), to the frame.
        assert tried_at + 1.0 + 0.0375 <= call.t <= tried_at + 1.0 + 0.0625 + 0.02
        assert fake.sessions[1].closed  # the client left the hanging one
        await live.until(lambda: any(e["error_kind"] == "timeout" for e in errors(call)))
        timeout = next(e for e in errors(call) if e["error_kind"] == "timeout")
        assert timeout["error"] == "no answer in time"
        fake.hold_setup = False
        fake.release.set()
        await live.until(lambda: "Sorry, say that again?" in played(call))
    finally:
        await call.session.end("test over")
    restored = fake.sessions[-1]
    assert next((i.role, i.text) for i in restored.items) == ("user", "when are you open")
    assert live.history()[-1] == ("agent", "Sorry, say that again?", False)


def errors(call: CallHarness) -> list[dict[str, Any]]:
    return call.timeline("provider_error")


async def test_service_start_refuses_a_bad_key_and_a_bad_model(fake: FakeRealtime) -> None:
    params = OpenAIRealtime.Params(base_url=fake.base_url, model="gpt-realtime")
    await OpenAIRealtime.preload(params)  # a good set-up passes
    assert fake.session.of("response.create")[0]["response"]["max_output_tokens"] == 1
    fake.api_key = "sk-other"
    with pytest.raises(StageError, match=r"refused .*\(auth\): Incorrect API key.*OPENAI_API_KEY"):
        await OpenAIRealtime.preload(params)
    fake.api_key = KEY
    fake.models = ("gpt-realtime",)
    wrong = OpenAIRealtime.Params(base_url=fake.base_url, model="gpt-realtim")
    with pytest.raises(StageError, match=r"model 'gpt-realtim' \(invalid\): The model"):
        await OpenAIRealtime.preload(wrong)
    bad_voice = OpenAIRealtime.Params(base_url=fake.base_url, voice="nobody")
    with pytest.raises(StageError, match=r"\(invalid\): Invalid voice nobody; check model, voice"):
        await OpenAIRealtime.preload(bad_voice)


VAD_PIPELINE = """
name: realtime-vad
session: {{chunk_ms: 100, max_lead_ms: 600}}
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: true}}
  - type: openai_realtime
    params:
      base_url: {base_url}
      verify_at_start: false
      turn_detection: voicebridge
      greeting: Hello, Harbor Bakery.
  - type: encode
"""


async def test_voicebridge_ends_the_turn_and_the_greeting_is_read_out(fake: FakeRealtime) -> None:
    fake.caller_says("do you have bread")
    fake.reply(Reply(text="Yes, fresh every morning."))
    text = VAD_PIPELINE.format(base_url=fake.base_url)
    call = CallHarness(load_pipeline_text(text, environ={}), encoding="audio/x-mulaw", rate=8000)
    await call.start()
    live = Live(call, fake)
    try:
        await live.settle()
        await live.until(lambda: len(call.timeline("turn_played")) >= 1)
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 2)
    finally:
        await call.session.end("test over")
    session = fake.session
    assert session.config["audio"]["input"]["turn_detection"] is None
    greeting, answer = session.of("response.create")
    assert greeting["response"]["instructions"].endswith("\nHello, Harbor Bakery.")
    assert "instructions" not in answer["response"]  # the model's own answer
    assert [e["type"] for e in session.events[-3:]] == [
        "response.create",
        "input_audio_buffer.commit",
        "response.create",
    ]
    assert live.history() == [
        ("agent", "Hello, Harbor Bakery.", False),
        ("caller", "do you have bread", False),
        ("agent", "Yes, fresh every morning.", False),
    ]


async def test_a_16_khz_l16_stream_is_resampled_and_still_truncated_to_the_ms(
    fake: FakeRealtime,
) -> None:
    fake.caller_says("when are you open", "wait")
    fake.reply(Reply(text=LONG, chunk_ms=400), Reply(text="Yes?"))
    call = CallHarness(spec(fake), encoding="audio/x-l16", rate=16000)
    await call.start()
    live = Live(call, fake)
    try:
        await live.settle()
        await live.speak(1.0)
        await live.until(lambda: bool(call.events("playAudio")))
        turn = call.timeline("agent_text")[0]["turn"]
        await live.idle(0.9)
        await live.speak(0.6)
        await live.until(lambda: bool(call.timeline("barge_in")), limit_s=2)
        await live.idle(0.3)
        truncate = truncation(fake)
        ctx = call.session.ctx
        assert ctx is not None
        assert truncate["audio_end_ms"] == round(ctx.heard_audio.ms(turn))
        # The resampler's delay makes the first piece 0.75 ms short of 400, and an ack lands
        # on the 20 ms frame after its piece ended: the ledger's playhead (and the cut) trails
        # what the caller heard by that 0.75 ms.
        heard = heard_by_caller(call, turn) / 2  # 16 samples a millisecond, not 8
        assert abs(truncate["audio_end_ms"] - heard) <= 1
    finally:
        await call.session.end("test over")
    audio = fake.session.config["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio["output"]["format"] == {"type": "audio/pcm", "rate": 24000}


PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


async def test_the_shipped_pipeline_simulates_a_call_into_a_call_page(
    fake: FakeRealtime, tmp_path: Path
) -> None:
    """``voicebridge simulate pipelines/realtime.yaml`` against the fake, as its CLI does it:
    preload (the start-up check), a simulated Plivo call over a real socket, the call page."""
    from voicebridge.config import load_pipeline
    from voicebridge.plivo.formats import StreamFormat
    from voicebridge.sim.analysis import build_report
    from voicebridge.sim.html_report import write_html
    from voicebridge.sim.simulate import CallerLine, simulate_call

    fake.caller_says("when do you open tomorrow")
    fake.reply(Reply(text="We open at seven."))
    spec = load_pipeline(PIPELINES / "realtime.yaml", environ={"OPENAI_BASE_URL": fake.base_url})
    await spec.preload()
    fmt = StreamFormat("audio/x-mulaw", 8000)
    lines = [CallerLine("when do you open tomorrow", speech_like(1.2, 8000))]
    call = await simulate_call(spec, fmt, lines, fast=True, reply_timeout_s=20)
    report = build_report(call)
    page = tmp_path / "call.html"
    write_html(page, report, call.record.caller_audio, call.record.heard_audio, 8000)
    html = page.read_text()
    assert "We open at seven." in html and "Harbor Street Bakery" in html
    assert [(h.role, h.text) for h in call.history][:3] == [
        ("agent", "Thanks for calling Harbor Street Bakery. How can I help you today?"),
        ("caller", "when do you open tomorrow"),
        ("agent", "We open at seven."),
    ]
    assert fake.sessions[0].responses == 1  # the start-up probe


async def test_a_stalled_model_times_out_into_the_fallback(fake: FakeRealtime) -> None:
    fake.caller_says("hello")
    fake.reply(Reply(never=True))
    live = await live_call(fake, "timeout_s: 2")
    call = live.call
    try:
        await live.speak(0.6)
        await live.until(lambda: bool(call.timeline("provider_error")), limit_s=4)
        (error,) = call.timeline("provider_error")
        assert error["error_kind"] == "timeout" and "within 2 s" in error["error"]
        # 0.5 s of silence ends the caller's turn, then 2 s pass without a reply.
        assert 2.4 <= error["t"] - 0.6 <= 2.6
        await live.until(lambda: len(call.timeline("turn_played")) >= 1)
    finally:
        await call.session.end("test over")
    assert live.history() == [
        ("caller", "hello", False),
        ("agent", "Sorry, say that again?", False),
    ]


async def test_an_idle_caller_hears_the_goodbye_before_the_call_ends(fake: FakeRealtime) -> None:
    text = PIPELINE.format(base_url=fake.base_url, extra="").replace(
        "  fallback_text:", "  idle_reprompt_s: 1\n  idle_reprompts: 0\n  fallback_text:"
    )
    call = CallHarness(load_pipeline_text(text, environ={}), encoding="audio/x-mulaw", rate=8000)
    live = await Live.start(call, fake)
    await live.until(lambda: call.session.ended.is_set())
    goodbye = "I haven't heard from you, so I'll end the call now. Goodbye."
    assert call.session.end_reason == "hangup:idle"
    assert played(call) == goodbye  # every word of it played before the call ended
    assert live.history() == [("agent", goodbye, False)]


def test_voicebridge_turns_need_a_vad_that_passes_the_audio_on() -> None:
    from voicebridge.config import ConfigError

    def load(*stages: str) -> PipelineSpec:
        body = "".join(f"  - {stage}\n" for stage in stages)
        return load_pipeline_text(f"name: p\nstages:\n{body}", "p.yaml", environ={})

    s2s = "{type: openai_realtime, params: {turn_detection: voicebridge}}"
    assert load("type: decode", "type: openai_realtime", "type: encode").warnings == []
    loaded = load("type: decode", "{type: vad, params: {forward_audio: true}}", s2s, "type: encode")
    assert loaded.warnings == []
    with pytest.raises(ConfigError, match="needs end-of-speech events"):
        load("type: decode", s2s, "type: encode")
    with pytest.raises(ConfigError, match="set its `forward_audio: true`"):
        load("type: decode", "{type: vad, params: {forward_audio: false}}", s2s, "type: encode")


# --- the circuit breaker ------------------------------------------------------------------------


def breaker_call(fake: FakeRealtime, *, give_up: bool) -> CallHarness:
    text = breaker_template(PIPELINE, give_up=give_up)
    spec = pipeline_spec(text, fake.base_url, "", "realtime-breaker.yaml")
    return CallHarness(spec, encoding="audio/x-mulaw", rate=8000)


async def dropped_into_an_outage(fake: FakeRealtime, *, give_up: bool) -> Live:
    """The model drops the session mid-reply and OpenAI then refuses every new one (503); the
    breaker runs on this call's time."""
    fake.caller_says("when are you open")
    fake.reply(Reply(text=LONG, chunk_ms=400, drop_after_chunks=2))
    call = breaker_call(fake, give_up=give_up)
    resilience.breakers.reset(clock=call.clock)
    live = await Live.start(call, fake)
    fake.unavailable = True
    await live.speak(0.8)
    return live


async def test_an_outage_opens_the_breaker_and_the_call_hangs_up_at_once(
    fake: FakeRealtime, breakers: None
) -> None:
    """Two refused reconnects open the breaker: the stage stops trying, and as the model is
    the call's only voice, the call ends at once instead of waiting for a goodbye nobody can
    say. A new call while it is open is refused at its start, without a try; after the
    cool-down a new call's session is the probe, and closes it."""
    live = await dropped_into_an_outage(fake, give_up=True)
    call = live.call
    breaker = live.stage.guard.breaker
    await live.until(lambda: call.session.ended.is_set())
    assert breaker.state is BreakerState.OPEN and breaker.opened == 1
    assert fake.refused == 2  # the reconnect at the drop, one more 0.5 s later, then none
    assert call.session.end_reason == "hangup:provider_down"
    (down,) = call.timeline("provider_down")
    assert down["why"] == "circuit_open"
    # Reported with the frame after the breaker opened; no goodbye was asked for (nobody could
    # say it): the call hung up once the reply's audio already sent had played.
    assert down["t"] == pytest.approx(breaker.opened_at, abs=0.021)
    assert not [e for e in call.timeline("agent_text") if "Goodbye" in e["text"]]
    assert call.wire.closed == (1000, "agent hung up")
    assert call.timeline("played")[-1]["t"] <= call.t < down["t"] + 0.8
    errors = call.timeline("provider_error")
    assert [e["error_kind"] for e in errors] == ["unavailable"] * len(errors)
    assert "1011" in errors[0]["error"] and errors[-1]["status"] == 503
    metrics = call_metrics(call)
    labels = {"stage": "openai_realtime", "kind": "unavailable"}
    assert metrics.value("voicebridge_provider_errors_total", labels) == len(errors)
    assert metrics.value("voicebridge_calls_total", {"outcome": "agent_hangup"}) == 1

    handshakes = fake.handshakes
    refused = breaker_call(fake, give_up=True)
    await refused.start()
    (failed,) = refused.timeline("pipeline_start_failed")
    assert "session did not open: unavailable: circuit open" in failed["error"]
    assert fake.handshakes == handshakes  # refused by the breaker, not by OpenAI

    await call.clock.advance(COOLDOWN_S)  # the breaker's clock
    fake.unavailable = False
    fake.reply(Reply(text="We open at seven."))
    probe = await Live.start(breaker_call(fake, give_up=True), fake)
    try:
        assert breaker.state is BreakerState.CLOSED and fake.handshakes == handshakes + 1
    finally:
        await probe.call.session.end("test over")


async def test_the_breaker_waits_its_cooldown_then_the_session_comes_back(
    fake: FakeRealtime, breakers: None
) -> None:
    """With ``give_up_when_circuit_open: false`` the call waits: no try during the cool-down,
    then one probe, which opens a session with the heard history; the fallback owed for the
    cut reply is said on it, and the breaker is closed."""
    live = await dropped_into_an_outage(fake, give_up=False)
    call = live.call
    breaker = live.stage.guard.breaker
    try:
        await live.until(lambda: breaker.state is BreakerState.OPEN)
        opened_at = breaker.opened_at
        assert fake.refused == 2
        fake.unavailable = False  # any try from now on would open a session
        await live.until(lambda: len(fake.sessions) == 2, limit_s=COOLDOWN_S + 1)
        assert call.t == pytest.approx(opened_at + COOLDOWN_S)  # the first try since: the probe
        assert fake.refused == 2 and breaker.state is BreakerState.CLOSED
        await live.until(lambda: "Sorry, say that again?" in played(call))
        assert call.timeline("provider_down") == []
        assert call.wire.closed is None
    finally:
        await call.session.end("test over")
    history = live.history()
    assert history[0] == ("caller", "when are you open", False)
    assert LONG.startswith(history[1][1]) and history[1][1]
    assert history[2] == ("agent", "Sorry, say that again?", False)
    second = fake.sessions[1]
    assert [(i.role, i.text) for i in second.items][:2] == [
        ("user", "when are you open"),
        ("assistant", history[1][1]),
    ]
