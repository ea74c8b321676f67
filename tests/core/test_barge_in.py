"""Barge-in, false interruptions, acks and turn endings, on the call's own clock.

Each test drives a real ``Session`` with 20 ms caller frames through ``CallHarness`` (Plivo's
playout modelled: acks once audio has played, clears drop the buffer) and asserts the messages
on the wire and the history the dialogue was given. The test speaker (``ToneSpeaker``) makes
timing exact: 50 ms per character, and a 50 ms gap between words.
"""

from __future__ import annotations

from typing import Any

import pytest

from voicebridge.config import load_pipeline_text
from voicebridge.frames import Transcript
from voicebridge.sim.signals import speech_like
from voicebridge.testing.harness import CallHarness, ScriptedDialogue

GREETING = "Hello and welcome to the test line. We are glad you called today."
# Piece 1 "Hello and welcome to the test line." = 29 characters + 7 gaps = 1.8 s
# Piece 2 "We are glad you called today." = 24 characters + 6 gaps = 1.5 s


def pipeline(
    *,
    lines: list[str] | None = None,
    greeting: str = GREETING,
    reply: str = "Sure, go ahead.",
    think_s: float = 0.0,
    barge_in: str = "{guard_ms: 200, false_interruption_ms: 500}",
    extra_session: str = "",
    interim: bool = False,
) -> Any:
    text = f"""
name: barge-in-test
session:
  chunk_ms: 100
  max_lead_ms: 600
  barge_in: {barge_in}
{extra_session}
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: {lines or []!r}, interim: {str(interim).lower()}}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: {greeting!r}, reply: {reply!r}, think_s: {think_s}}}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""
    return load_pipeline_text(text)


def dialogue(call: CallHarness) -> ScriptedDialogue:
    assert call.session.pipeline is not None
    stage = call.session.pipeline.stages[3]
    assert isinstance(stage, ScriptedDialogue)
    return stage


def history(call: CallHarness) -> list[tuple[str, str, bool]]:
    assert call.session.ctx is not None
    return [(h.role, h.text, h.interrupted) for h in call.session.ctx.history]


def acked(call: CallHarness) -> list[str]:
    return [a.message["name"] for a in call.acks_sent]


async def caller_says(call: CallHarness, seconds: float) -> None:
    await call.speak(speech_like(seconds, call.rate))


@pytest.mark.parametrize(
    ("speak_at", "heard"),
    [
        (0.26, "Hello"),  # early: 0.46 s = 9.2 characters in; "and" is not over
        (0.92, "Hello and welcome to"),  # mid-piece: 1.12 s = 22.4 characters in
    ],
)
async def test_interruption_in_the_first_piece(speak_at: float, heard: str) -> None:
    async with CallHarness(pipeline(lines=["wait a moment"])) as call:
        await call.idle(speak_at)
        await caller_says(call, 1.0)
        clears = call.events("clearAudio")
        assert len(clears) == 1
        assert clears[0].message == {"event": "clearAudio", "streamId": "harness-stream"}
        assert speak_at + 0.2 - 0.001 <= clears[0].t <= speak_at + 0.2 + 0.04  # guard + 1 frame
        await call.idle(3.0)
        # The greeting's checkpoints were dropped with the audio and never acknowledged; the
        # answer to the interruption played and was.
        assert acked(call) == ["turn-2/piece-1"]
        assert dialogue(call).seen == [[("agent", heard, True), ("caller", "wait a moment", False)]]
        assert history(call)[-1] == ("agent", "Sure, go ahead.", False)


async def test_interruption_in_a_later_piece() -> None:
    async with CallHarness(pipeline(lines=["hold on"])) as call:
        await call.idle(2.32)  # piece 2 started at 1.8 s
        await caller_says(call, 1.0)
        assert call.events("clearAudio")[0].t == pytest.approx(2.52, abs=0.03)
        await call.idle(3.0)
        assert acked(call)[0] == "turn-1/piece-1"
        assert "turn-1/piece-2" not in acked(call)
        expected = "Hello and welcome to the test line. We are glad"  # 0.72 s = 14.4 chars in
        assert dialogue(call).seen[0][0] == ("agent", expected, True)
        assert dialogue(call).seen[0][0][1].endswith("[interrupted]") is False
        assert call.session.ctx is not None
        assert call.session.ctx.history[0].as_prompt_text() == f"{expected} [interrupted]"


async def test_cough_is_a_false_interruption_and_the_agent_resumes_at_the_word() -> None:
    async with CallHarness(pipeline(lines=[""])) as call:  # the cough yields no words
        await call.idle(0.92)
        await caller_says(call, 0.35)
        assert len(call.events("clearAudio")) == 1
        await call.idle(6.0)
        # Resumed as a new turn from the first unheard word ("the"), then piece 2 in full.
        resumed = [e for e in call.timeline("continued")]
        assert resumed and resumed[0]["text"] == "the test line. We are glad you called today."
        assert acked(call) == ["turn-2/piece-1", "turn-2/piece-2"]
        assert dialogue(call).seen == []  # nothing reached the dialogue
        assert history(call) == [("agent", GREETING, False)]


async def test_two_false_interruptions_in_one_turn() -> None:
    async with CallHarness(pipeline(lines=["", ""])) as call:
        await call.idle(0.5)
        await caller_says(call, 0.3)
        await call.idle(1.2)  # resume happens 0.5 s after the cough ends (+ VAD window)
        await caller_says(call, 0.3)
        await call.idle(6.0)
        assert len(call.events("clearAudio")) == 2
        assert len(call.timeline("continued")) == 2
        assert history(call) == [("agent", GREETING, False)]
        # Every checkpoint that was not cleared was acknowledged.
        cleared = {n for e in call.timeline("barge_in") for n in e["cleared"]}
        sent = [m.message["name"] for m in call.events("checkpoint")]
        assert sorted(set(sent) - cleared) == sorted(acked(call))


async def test_backchannel_clears_then_resumes_and_never_reaches_the_dialogue() -> None:
    async with CallHarness(pipeline(lines=["uh-huh"])) as call:
        await call.idle(0.92)
        await caller_says(call, 0.4)
        await call.idle(5.0)
        assert len(call.events("clearAudio")) == 1
        assert call.timeline("backchannel")[0]["text"] == "uh-huh"
        assert len(call.timeline("continued")) == 1
        assert dialogue(call).seen == []
        assert history(call) == [("agent", GREETING, False)]


async def test_backchannel_with_min_words_never_interrupts() -> None:
    call_spec = pipeline(lines=["okay"], interim=True, barge_in="{guard_ms: 200, min_words: 1}")
    async with CallHarness(call_spec) as call:
        await call.idle(0.92)
        await caller_says(call, 0.6)
        await call.idle(4.0)
        assert call.events("clearAudio") == []
        assert acked(call) == ["turn-1/piece-1", "turn-1/piece-2"]
        assert dialogue(call).seen == []


async def test_min_words_waits_for_words_then_interrupts() -> None:
    call_spec = pipeline(
        lines=["stop right there"], interim=True, barge_in="{guard_ms: 200, min_words: 2}"
    )
    async with CallHarness(call_spec) as call:
        await call.idle(0.92)
        await caller_says(call, 0.8)
        # The interim transcript (3 words) arrives at the onset; the guard still applies.
        assert call.events("clearAudio")[0].t == pytest.approx(1.12, abs=0.03)


async def test_interruption_while_the_dialogue_is_still_generating() -> None:
    call_spec = pipeline(lines=["question one", "question two"], greeting="", think_s=1.0)
    async with CallHarness(call_spec) as call:
        await call.idle(0.2)
        await caller_says(call, 0.6)
        await call.idle(0.6)  # the dialogue is thinking about "question one" (1 s per sentence)
        await caller_says(call, 0.6)
        await call.idle(4.0)
        assert len(call.events("clearAudio")) == 1
        # Turn 1 (the answer to question one) never produced a sound; turn 2 answered.
        names = [m.message["name"] for m in call.events("checkpoint")]
        assert names == ["turn-2/piece-1"]
        assert dialogue(call).seen[-1] == [
            ("caller", "question one", False),
            ("caller", "question two", False),
        ]


async def test_new_audio_right_after_a_clear_plays() -> None:
    async with CallHarness(pipeline(lines=["stop"])) as call:
        await call.idle(0.5)
        await caller_says(call, 0.5)
        clear_index = call.log.index(call.events("clearAudio")[0])
        await call.idle(3.0)
        after = call.log[clear_index + 1 :]
        assert after[0].message["event"] == "playAudio"
        start = int(after[0].t * call.rate)
        heard = call.playout.heard_track(call.t)[start:]
        assert (heard != 0).any()  # the caller heard the new reply


async def test_dtmf_interrupts_when_configured() -> None:
    async with CallHarness(pipeline()) as call:
        await call.idle(0.5)
        await call.send({"event": "dtmf", "dtmf": {"digit": "5"}})
        assert len(call.events("clearAudio")) == 1
        await call.idle(3.0)
        assert call.timeline("continued") == []  # a key press is never a false interruption

    off = pipeline(barge_in="{dtmf_interrupts: false}")
    async with CallHarness(off) as call:
        await call.idle(0.5)
        await call.send({"event": "dtmf", "dtmf": {"digit": "5"}})
        assert call.events("clearAudio") == []


async def test_acks_late_duplicated_out_of_order_and_unknown() -> None:
    async with CallHarness(pipeline(), ack=False) as call:
        await call.idle(4.0)  # all audio played; Plivo said nothing yet
        await call.send({"event": "playedStream", "name": "turn-1/piece-2"})  # late, 2nd first
        await call.send({"event": "played", "name": "turn-1/piece-1"})  # out of order
        await call.send({"event": "playedStream", "name": "turn-1/piece-2"})  # duplicate
        await call.send({"event": "playedStream", "name": "turn-9/piece-9"})  # never sent
        stats = call.session.core.stats.as_dict()
        assert stats["played_acks"] == 1 and stats["ignored_acks"] == 3
        assert history(call) == [("agent", GREETING, False)]
        assert call.timeline("turn_played")[0]["turn"] == 1


async def test_lost_acks_are_settled_by_timeout_and_nothing_hangs() -> None:
    async with CallHarness(pipeline(lines=["goodbye"]), ack=False) as call:
        await call.idle(0.2)
        await call.idle(3.5)
        await caller_says(call, 0.5)
        await call.idle(9.0)
        # No ack ever came: greeting and goodbye expired (duration + 3 s grace), the hang-up
        # still happened.
        assert [e["name"] for e in call.timeline("ack_lost")][:2] == [
            "turn-1/piece-1",
            "turn-1/piece-2",
        ]
        assert call.wire.closed == (1000, "agent hung up")


async def test_idle_reprompts_then_goodbye_and_hang_up() -> None:
    session = "  idle_reprompt_s: 2\n  idle_reprompts: 2"
    async with CallHarness(pipeline(extra_session=session)) as call:
        await call.until(lambda: call.wire.closed is not None, limit_s=30)
        texts = [e["text"] for e in call.timeline("agent_text")]
        assert texts == [
            "Hello and welcome to the test line.",
            "We are glad you called today.",
            "Are you still there?",
            "Are you still there?",
            "I haven't heard from you, so I'll end the call now.",
            "Goodbye.",
        ]
        # Reprompts key off the end of the agent's turn by ack: greeting ends at 3.3 s.
        reprompts = [e["t"] for e in call.timeline("reprompt")]
        assert reprompts[0] == pytest.approx(3.3 + 2.0, abs=0.15)
        assert call.wire.closed == (1000, "agent hung up")
        # The goodbye played to its last checkpoint before the socket closed.
        assert acked(call)[-1] == call.events("checkpoint")[-1].message["name"]


async def test_turn_latency_is_measured_from_end_of_speech_to_audio_played() -> None:
    async with CallHarness(pipeline(lines=["what time is it"], greeting="")) as call:
        await call.idle(0.3)
        await caller_says(call, 0.8)
        await call.idle(3.0)
        (metrics,) = call.timeline("turn_played")
        # VAD: 300 ms of silence (+ WebRTC's own hangover) ends the utterance; the rest is
        # immediate in this pipeline.
        assert 0.3 <= metrics["latency_s"] <= 0.5
        assert metrics["stt_s"] is not None and metrics["interrupted"] is False


async def test_a_provider_error_speaks_the_fallback_and_the_call_goes_on() -> None:
    text = """
name: provider-failure
session: {fallback_text: "Sorry, something went wrong."}
stages:
  - type: decode
  - type: vad
    params: {min_speech_ms: 60, min_silence_ms: 300, forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: [fail now, hello again]}
  - type: voicebridge.testing:FailingDialogue
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""
    async with CallHarness(load_pipeline_text(text)) as call:
        await caller_says(call, 0.5)
        await call.idle(3.0)
        await caller_says(call, 0.5)
        await call.idle(3.0)
        (error,) = call.timeline("provider_error")
        assert error["provider"] == "fake-llm" and error["error_kind"] == "unavailable"
        said = [e["text"] for e in call.timeline("agent_text")]
        assert said == ["Sorry, something went wrong.", "You said hello again."]
        assert call.wire.closed is None


async def test_a_reply_that_starts_while_the_caller_is_still_speaking_is_not_interrupted() -> None:
    """Streaming transcribers can finalise before the VAD hears the end of speech; the reply
    that answers the caller must not be cleared by the tail of the very speech it answers."""
    text = """
name: early-final
session: {chunk_ms: 100, max_lead_ms: 600}
stages:
  - type: decode
  - type: vad
    params: {min_speech_ms: 60, min_silence_ms: 300, forward_audio: false}
  - type: voicebridge.testing:ScriptedStt   # says nothing: the test pushes the transcript
  - type: voicebridge.testing:ScriptedDialogue
    params: {reply: "We open at nine."}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""
    async with CallHarness(load_pipeline_text(text)) as call:
        await call.idle(0.2)
        assert call.session.pipeline is not None
        await call.speak(speech_like(0.5, call.rate))
        # A transcript arrives while the caller is still talking (an early final).
        await call.session.pipeline.push(Transcript("what are your hours", final=True))
        await call.speak(speech_like(0.6, call.rate))
        await call.idle(3.0)
        assert call.events("clearAudio") == []
        assert acked(call) == ["turn-1/piece-1"]
