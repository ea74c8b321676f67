"""Whole calls through the ``gemini_live`` stage, against the loopback Gemini Live fake (TLS,
the official ``google-genai`` SDK). As in ``test_openai_realtime``, each 20 ms caller frame waits
until the fake and the stage have handled everything the other sent, so times are exact."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from voicebridge.config import load_pipeline
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.runtime import resilience
from voicebridge.runtime.resilience import BreakerState
from voicebridge.runtime.stage import StageError
from voicebridge.stages.realtime.gemini_live import GeminiLive
from voicebridge.testing.harness import CallHarness

sys.path.insert(0, str(Path(__file__).parent))
from gemini_live_fake import FakeGemini, Reply
from s2s_live import (
    COOLDOWN_S,
    LiveCall,
    breaker_template,
    call_metrics,
    pipeline_spec,
    played,
)

from voicebridge.sim.signals import speech_like

KEY = "gm-fake"
PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeGemini]:
    async with FakeGemini(api_key=KEY) as server:
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        monkeypatch.setenv("SSL_CERT_FILE", server.cafile)  # trust the fake's certificate
        yield server


PIPELINE = """
name: gemini-test
session:
  chunk_ms: 100
  max_lead_ms: 600
  barge_in: {{guard_ms: 200}}
  fallback_text: Sorry, say that again?
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: true}}
  - type: gemini_live
    params:
      base_url: {base_url}
      verify_at_start: false
      piece_ms: 300
      resilience: {{retries: 1, backoff_s: 0.05, backoff_max_s: 0.05}}
{extra}
  - type: encode
"""


def spec(fake: FakeGemini, extra: str = "") -> PipelineSpec:
    return pipeline_spec(PIPELINE, fake.base_url, extra, "gemini-test.yaml")


class Live(LiveCall[GeminiLive]):
    stage_type = GeminiLive


async def live_call(fake: FakeGemini, extra: str = "", **kwargs: Any) -> Live:
    call = CallHarness(spec(fake, extra), encoding="audio/x-l16", rate=16000, **kwargs)
    return await Live.start(call, fake)


async def test_a_whole_call_through_gemini(fake: FakeGemini) -> None:
    fake.caller_says("when do you open tomorrow")
    fake.reply(Reply(text="We open at seven tomorrow."))
    live = await live_call(fake, "temperature: 0.6\nvoice: Kore")
    try:
        await live.speak(1.0)
        await live.until(lambda: len(live.call.timeline("turn_played")) >= 1)
    finally:
        await live.call.session.end("test over")
    assert live.history() == [
        ("caller", "when do you open tomorrow", False),  # it came during the reply
        ("agent", "We open at seven tomorrow.", False),
    ]
    setup = fake.session.setup
    assert setup["model"] == "models/gemini-live-2.5-flash-preview"
    generation = setup["generationConfig"]
    assert generation["responseModalities"] == ["AUDIO"] and generation["temperature"] == 0.6
    # The SDK sends nested fields by their proto names; Google's JSON parser takes both forms.
    speech = generation["speechConfig"]
    assert speech["voice_config"]["prebuilt_voice_config"]["voice_name"] == "Kore"
    assert "inputAudioTranscription" in setup and "outputAudioTranscription" in setup
    assert fake.session.headers["x-goog-api-key"] == KEY
    assert fake.session.audio_ms > 0  # 16 kHz PCM went in


async def test_a_barge_in_tells_gemini_exactly_the_words_the_caller_heard(
    fake: FakeGemini,
) -> None:
    long = "Our bakery opens at seven in the morning and closes at six in the evening, every day."
    fake.caller_says("when are you open", "wait")
    fake.reply(Reply(text=long, chunk_ms=400), Reply(text="Yes?"))
    live = await live_call(fake)
    call = live.call
    try:
        await live.speak(1.0)
        await live.until(lambda: bool(call.events("playAudio")))
        turn = call.timeline("agent_text")[0]["turn"]
        await live.idle(1.1)
        await live.speak(0.6)
        await live.until(lambda: bool(call.timeline("barge_in")), limit_s=2)
        await live.idle(0.3)
        ctx = call.session.ctx
        assert ctx is not None
        heard = ctx.agent_entry(turn)
        assert heard.interrupted and heard.text and long.startswith(heard.text)
        (note,) = fake.sessions[0].notes
        assert f'They heard only this much of it: "{heard.text}".' in note
        # The note is context: it asks for no reply (turnComplete false).
        (message,) = [m for m in fake.sessions[0].messages if "(Note" in json.dumps(m)]
        content = message.get("clientContent") or message.get("client_content")
        assert content["turnComplete"] is False
    finally:
        await call.session.end("test over")


async def test_gemini_transfers_after_saying_so(fake: FakeGemini) -> None:
    fake.caller_says("sales please")
    fake.reply(
        Reply(text="", tool_calls=[("transfer_call", {"to": "sales", "message": "One moment."})])
    )
    live = await live_call(fake, 'transfer_targets: {sales: "+15550101"}')
    call = live.call
    try:
        await live.speak(0.8)
        await live.until(lambda: bool(call.timeline("transfer_unavailable")))
        assert call.timeline("transfer_unavailable")[0]["to"] == "+15550101"
    finally:
        await call.session.end("test over")
    assert played(call) == "One moment."
    declarations = fake.session.setup["tools"][0]["functionDeclarations"]
    assert {d["name"] for d in declarations} == {"hang_up", "transfer_call"}


async def test_a_dropped_gemini_session_comes_back_with_the_heard_history(
    fake: FakeGemini,
) -> None:
    fake.caller_says("when are you open", "thanks")
    fake.reply(
        Reply(text="We open at seven."),
        Reply(text="You're welcome, have a lovely day.", chunk_ms=400, drop_after_chunks=2),
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
        assert error["error_kind"] == "unavailable"
    finally:
        await call.session.end("test over")
    first, second = fake.sessions
    # Dropped mid-reply, when Gemini had said it could not be resumed: the heard history.
    assert second.setup["sessionResumption"] == {} and not second.resumed_from
    assert second.setup["historyConfig"] == {"initial_history_in_client_content": True}
    assert "historyConfig" not in first.setup  # a first session has no history to give
    assert second.history[:3] == [
        ("user", "when are you open"),
        ("model", "We open at seven."),
        ("user", "thanks"),
    ]
    assert live.history()[-1] == ("agent", "Sorry, say that again?", False)


async def test_a_bad_key_or_model_fails_at_start(fake: FakeGemini, monkeypatch: Any) -> None:
    params = GeminiLive.Params(base_url=fake.base_url)
    await GeminiLive.preload(params)
    monkeypatch.setenv("GEMINI_API_KEY", "wrong")
    with pytest.raises(StageError, match=r"\(auth\): API key not valid.*check GEMINI_API_KEY"):
        await GeminiLive.preload(params)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    fake.models = ("gemini-live-2.5-flash-preview",)
    with pytest.raises(StageError, match=r"'gemini-nope' \(invalid\): models/gemini-nope is not"):
        await GeminiLive.preload(GeminiLive.Params(base_url=fake.base_url, model="gemini-nope"))
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(StageError, match="set the environment variable GEMINI_API_KEY"):
        await GeminiLive.preload(params)


async def test_a_call_whose_session_cannot_open_is_refused_with_a_clear_error(
    fake: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the start-up check: a refused key fails the call's start (1011), not retried."""
    monkeypatch.setenv("GEMINI_API_KEY", "wrong")
    call = CallHarness(spec(fake), encoding="audio/x-l16", rate=16000)
    await call.start()
    assert call.wire.closed is not None and call.wire.closed[0] == 1011
    (failed,) = call.timeline("pipeline_start_failed")
    assert "the Gemini session did not open: auth: API key not valid." in failed["error"]
    assert len(fake.sessions) == 1  # an auth failure is not retried


async def test_start_up_retries_and_its_connect_deadline_run_on_the_wall_clock(
    fake: FakeGemini,
) -> None:
    """The call's clock stands still until its pipeline has started (here a stream clock,
    moved by the caller's audio): the wait between two tries at start-up, and the connect
    deadline, run on the wall clock, so a start that cannot open a session ends with a clear
    error instead of waiting forever."""
    fake.unavailable = True
    call = CallHarness(spec(fake), encoding="audio/x-l16", rate=16000)
    await call.start()
    (failed,) = call.timeline("pipeline_start_failed")
    assert "did not open: unavailable: The service is currently unavailable." in failed["error"]
    assert fake.refused == 2  # retries: 1, after a 0.05 s backoff
    fake.unavailable = False
    fake.hold_setup = True  # Gemini never answers the setup
    call = CallHarness(spec(fake, "connect_timeout_s: 0.2"), encoding="audio/x-l16", rate=16000)
    await call.start()
    (failed,) = call.timeline("pipeline_start_failed")
    assert "did not open: timeout: no answer in time" in failed["error"]
    await fake.wait_for(lambda: fake.holding == 0)  # the client gave up on both and left
    assert len(fake.sessions) == 4 and all(s.closed for s in fake.sessions)


async def test_a_reconnect_that_hangs_times_out_on_call_time_and_is_tried_again(
    fake: FakeGemini,
) -> None:
    """The session drops and Gemini then leaves the new sessions' setup unanswered: each try
    gives up after ``connect_timeout_s`` of call time (the call's clock, once it runs), the
    caller is told nothing it cannot hear, and once Gemini answers again the session is back
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
        await live.until(
            lambda: any(e["error_kind"] == "timeout" for e in call.timeline("provider_error"))
        )
        timeout = next(e for e in call.timeline("provider_error") if e["error_kind"] == "timeout")
        assert timeout["error"] == "no answer in time"
        fake.hold_setup = False
        fake.release.set()
        await live.until(lambda: "Sorry, say that again?" in played(call))
    finally:
        await call.session.end("test over")
    restored = next(s for s in fake.sessions if s.history)
    assert restored.history[0] == ("user", "when are you open")
    assert live.history()[-1] == ("agent", "Sorry, say that again?", False)


def test_the_shipped_gemini_pipeline_validates() -> None:
    loaded = load_pipeline(PIPELINES / "gemini.yaml", environ={})
    assert [s.type for s in loaded.stages] == ["decode", "vad", "gemini_live", "encode"]
    assert loaded.warnings == []
    assert loaded.stages[2].params.model_dump()["base_url"] is None  # unset: Google's own
    aimed = load_pipeline(PIPELINES / "gemini.yaml", environ={"GEMINI_BASE_URL": "https://gw/"})
    assert aimed.stages[2].params.model_dump()["base_url"] == "https://gw/"


LONG = "Our bakery opens at seven in the morning and closes at six in the evening, every day."


async def test_a_model_error_mid_reply_speaks_the_fallback(fake: FakeGemini) -> None:
    """Gemini reports a failure mid-reply by closing the session (1011, its reason): the words
    said stay, the call says its fallback on a new session and goes on."""
    fake.caller_says("when are you open")
    fake.reply(Reply(text=LONG, chunk_ms=400, drop_after_chunks=2, fail="Internal error."))
    live = await live_call(fake)
    call = live.call
    try:
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 2)
        (error,) = call.timeline("provider_error")
        assert error["stage"] == "gemini_live" and error["error_kind"] == "unavailable"
        assert "Internal error." in error["error"]
        assert call.wire.closed is None  # the call goes on
    finally:
        await call.session.end("test over")
    history = live.history()
    assert history[0] == ("caller", "when are you open", False)
    assert LONG.startswith(history[1][1]) and history[1][1]  # the 800 ms that were said
    assert history[2] == ("agent", "Sorry, say that again?", False)
    assert fake.sessions[1].context[-1] == ("model", "Sorry, say that again?")


async def test_a_stalled_model_times_out_into_the_fallback(fake: FakeGemini) -> None:
    """Gemini sends nothing when it will not answer: the deadline runs from the end of the
    caller's turn (the ``vad`` stage's SpeechEnded)."""
    fake.caller_says("hello")
    fake.reply(Reply(never=True))
    live = await live_call(fake, "timeout_s: 2")
    call = live.call
    try:
        await live.speak(0.6)
        await live.until(lambda: bool(call.timeline("provider_error")), limit_s=4)
        (error,) = call.timeline("provider_error")
        assert error["error_kind"] == "timeout" and "within 2 s" in error["error"]
        # The vad stage ends the caller's turn after its 300 ms of silence; 2 s pass after it.
        assert 2.3 <= error["t"] - 0.6 <= 2.5
        await live.until(lambda: len(call.timeline("turn_played")) >= 1)
    finally:
        await call.session.end("test over")
    assert live.history() == [
        ("caller", "hello", False),
        ("agent", "Sorry, say that again?", False),
    ]


@pytest.mark.parametrize("resume", [True, False])
async def test_a_goaway_moves_the_call_to_a_new_session_before_the_old_one_closes(
    fake: FakeGemini, resume: bool
) -> None:
    """``goAway``: between replies the stage opens the next session and closes the old one
    itself; no error, nothing unsaid. The new session resumes the old one by its newest
    handle (Gemini said it was resumable once the reply was over), or with ``resume: false``
    is given the heard history."""
    fake.go_away_close_s = 60.0  # the client leaves long before
    fake.caller_says("when are you open", "thanks")
    fake.reply(Reply(text="We open at seven.", go_away=True), Reply(text="You're welcome."))
    live = await live_call(fake, f"resume: {str(resume).lower()}")
    call = live.call
    try:
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 1)
        await live.until(lambda: len(fake.sessions) == 2 and fake.sessions[0].closed)
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 2)
        assert call.timeline("provider_error") == []
    finally:
        await call.session.end("test over")
    first, second = fake.sessions
    assert "goAway" not in json.dumps(first.messages)
    said = [("user", "when are you open"), ("model", "We open at seven.")]
    if resume:
        newest = max(h for h in fake.handles if h.startswith("handle-1-"))
        assert second.setup["sessionResumption"] == {"handle": newest}
        assert second.resumed_from == newest and fake.handles[newest] == said
        assert "historyConfig" not in second.setup and second.history == []
    else:
        assert "sessionResumption" not in first.setup and "sessionResumption" not in second.setup
        assert second.history == said
    assert second.context[:2] == said
    assert second.context[-2:] == [("user", "thanks"), ("model", "You're welcome.")]
    assert live.history() == [
        ("caller", "when are you open", False),
        ("agent", "We open at seven.", False),
        ("caller", "thanks", False),
        ("agent", "You're welcome.", False),
    ]


async def test_a_session_dropped_between_replies_is_resumed_by_its_handle(
    fake: FakeGemini,
) -> None:
    """A drop while the model is idle: the new session resumes the old one (nothing owed, so
    nothing said) and the call goes on in it; when Gemini refuses the handle (expired), the
    next session is given the heard history instead."""
    fake.caller_says("when are you open", "thanks", "and on sunday")
    fake.reply(
        Reply(text="We open at seven."), Reply(text="You're welcome."), Reply(text="At nine.")
    )
    live = await live_call(fake)
    call = live.call
    try:
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 1)
        await fake.drop(fake.sessions[0])
        await live.until(lambda: len(fake.sessions) == 2 and live.stage.link is not None)
        assert fake.sessions[1].resumed_from.startswith("handle-1-")
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 2)
        fake.handles.clear()  # expired
        await fake.drop(fake.sessions[1])
        await live.until(lambda: len(fake.sessions) == 4 and live.stage.link is not None)
        await live.speak(0.8)
        await live.until(lambda: len(call.timeline("turn_played")) >= 3)
        assert call.timeline("provider_error") == []  # no reply was owed at either drop
    finally:
        await call.session.end("test over")
    first, resumed, refused, replayed = fake.sessions
    assert resumed.context[:2] == [("user", "when are you open"), ("model", "We open at seven.")]
    assert resumed.history == [] and "historyConfig" not in resumed.setup
    assert refused.closed and not refused.context  # 1008: the handle is unknown
    assert "handle" not in replayed.setup["sessionResumption"]
    assert replayed.history == [
        ("user", "when are you open"),
        ("model", "We open at seven."),
        ("user", "thanks"),
        ("model", "You're welcome."),
    ]
    assert replayed.context[-2:] == [("user", "and on sunday"), ("model", "At nine.")]
    assert [h[1] for h in live.history()] == [
        "when are you open",
        "We open at seven.",
        "thanks",
        "You're welcome.",
        "and on sunday",
        "At nine.",
    ]


async def test_the_shipped_pipeline_simulates_a_call_into_a_call_page(
    fake: FakeGemini, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``voicebridge simulate pipelines/gemini.yaml`` against the fake, as its CLI does it:
    preload (the start-up check), a simulated Plivo call over a real socket, the call page. The
    SDK itself takes its endpoint from ``GOOGLE_GEMINI_BASE_URL``."""
    from voicebridge.plivo.formats import StreamFormat
    from voicebridge.sim.analysis import build_report
    from voicebridge.sim.html_report import write_html
    from voicebridge.sim.simulate import CallerLine, simulate_call

    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)
    fake.caller_says("when do you open tomorrow")
    fake.reply(Reply(text="We open at seven."))
    spec = load_pipeline(PIPELINES / "gemini.yaml", environ={})
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
    *probes, session = fake.sessions  # start-up checks: a session opened, set up and closed
    assert probes and all(p.closed and not p.context for p in probes)
    assert session.setup["model"] == "models/gemini-live-2.5-flash-preview"
    assert session.context[-1] == ("model", "We open at seven.")


# --- the circuit breaker ------------------------------------------------------------------------


def breaker_call(fake: FakeGemini, *, give_up: bool) -> CallHarness:
    text = breaker_template(PIPELINE, give_up=give_up)
    spec = pipeline_spec(text, fake.base_url, "", "gemini-breaker.yaml")
    return CallHarness(spec, encoding="audio/x-l16", rate=16000)


async def dropped_into_an_outage(fake: FakeGemini, *, give_up: bool) -> Live:
    """Gemini drops the session mid-reply and then closes every new one at its setup (1011);
    the breaker runs on this call's time."""
    fake.caller_says("when are you open")
    fake.reply(Reply(text=LONG, chunk_ms=400, drop_after_chunks=2))
    call = breaker_call(fake, give_up=give_up)
    resilience.breakers.reset(clock=call.clock)
    live = await Live.start(call, fake)
    fake.unavailable = True
    await live.speak(0.8)
    return live


async def test_an_outage_opens_the_breaker_and_the_call_hangs_up_at_once(
    fake: FakeGemini, breakers: None
) -> None:
    """As for ``openai_realtime``: two refused sessions open the breaker, the stage stops
    trying, the call (whose only voice is the model) ends at once; a new call is refused at
    its start without a try until the cool-down, after which its session is the probe."""
    live = await dropped_into_an_outage(fake, give_up=True)
    call = live.call
    breaker = live.stage.guard.breaker
    await live.until(lambda: call.session.ended.is_set())
    assert breaker.state is BreakerState.OPEN and breaker.opened == 1
    assert fake.refused == 2 and len(fake.sessions) == 3  # no try after the breaker opened
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
    assert "currently unavailable" in errors[-1]["error"] and errors[-1]["status"] == 1011
    metrics = call_metrics(call)
    labels = {"stage": "gemini_live", "kind": "unavailable"}
    assert metrics.value("voicebridge_provider_errors_total", labels) == len(errors)
    assert metrics.value("voicebridge_calls_total", {"outcome": "agent_hangup"}) == 1

    refused = breaker_call(fake, give_up=True)
    await refused.start()
    (failed,) = refused.timeline("pipeline_start_failed")
    assert "session did not open: unavailable: circuit open" in failed["error"]
    assert len(fake.sessions) == 3  # refused by the breaker, not by Gemini

    await call.clock.advance(COOLDOWN_S)  # the breaker's clock
    fake.unavailable = False
    probe = await Live.start(breaker_call(fake, give_up=True), fake)
    try:
        assert breaker.state is BreakerState.CLOSED and len(fake.sessions) == 4
    finally:
        await probe.call.session.end("test over")


async def test_the_breaker_waits_its_cooldown_then_the_session_comes_back(
    fake: FakeGemini, breakers: None
) -> None:
    """With ``give_up_when_circuit_open: false``: no try during the cool-down, then one probe,
    a session with the heard history, the fallback said on it, the breaker closed."""
    live = await dropped_into_an_outage(fake, give_up=False)
    call = live.call
    breaker = live.stage.guard.breaker
    try:
        await live.until(lambda: breaker.state is BreakerState.OPEN)
        opened_at = breaker.opened_at
        assert fake.refused == 2
        fake.unavailable = False  # any try from now on would open a session
        await live.until(lambda: len(fake.sessions) == 4, limit_s=COOLDOWN_S + 1)
        assert call.t == pytest.approx(opened_at + COOLDOWN_S)  # the first try since: the probe
        await live.until(lambda: "Sorry, say that again?" in played(call))
        assert breaker.state is BreakerState.CLOSED and fake.refused == 2
        assert call.timeline("provider_down") == [] and call.wire.closed is None
    finally:
        await call.session.end("test over")
    history = live.history()
    assert history[0] == ("caller", "when are you open", False)
    assert LONG.startswith(history[1][1]) and history[1][1]
    assert history[2] == ("agent", "Sorry, say that again?", False)
    assert fake.sessions[3].history[:2] == [("user", "when are you open"), ("model", history[1][1])]
