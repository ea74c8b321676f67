"""Late replies without a network: fillers, the reply timeout and barge-in on a filler.

A real ``Session`` on ``CallHarness``; ``ScriptedDialogue`` thinks ``think_s`` of call time before
its reply (like a slow LLM), ``ToneSpeaker`` speaks with exact timing. Wire messages, the
timeline and the dialogue history are asserted.
"""

from __future__ import annotations

from typing import Any

from voicebridge.config import load_pipeline_text
from voicebridge.sim.signals import speech_like
from voicebridge.testing.harness import CallHarness

FALLBACK = "Sorry, that took too long."


def pipeline(*, think_s: float, replies: str = "{}", lines: list[str] | None = None) -> Any:
    text = f"""
name: reply-watch-test
session:
  chunk_ms: 100
  max_lead_ms: 600
  fallback_text: {FALLBACK!r}
  replies: {replies}
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: {lines or ["what are your hours"]!r}}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{reply: "We open at nine.", think_s: {think_s}}}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""
    return load_pipeline_text(text)


def sent(call: CallHarness) -> list[str]:
    names = [m.message["name"] for m in call.events("checkpoint")]
    texts = {e["name"]: e["text"] for e in call.timeline("checkpoint")}
    return [texts[name] for name in names]


def played(call: CallHarness) -> list[str]:
    return [e["text"] for e in call.timeline("played")]


def history(call: CallHarness) -> list[tuple[str, str, bool]]:
    assert call.session.ctx is not None
    return [(h.role, h.text, h.interrupted) for h in call.session.ctx.history]


async def says(call: CallHarness, seconds: float = 0.5) -> None:
    await call.speak(speech_like(seconds, call.rate))


async def test_a_quick_reply_needs_no_filler() -> None:
    async with CallHarness(pipeline(think_s=1.0)) as call:
        await says(call)
        await call.until(lambda: "We open at nine." in played(call), limit_s=5)
        assert sent(call) == ["We open at nine."]
        assert call.timeline("filler") == []


async def test_a_slow_reply_gets_one_filler_and_the_history_leaves_it_out() -> None:
    async with CallHarness(pipeline(think_s=2.5)) as call:
        await says(call)
        await call.until(lambda: "We open at nine." in played(call), limit_s=6)
        assert sent(call) == ["One moment.", "We open at nine."]
        (filler,) = call.timeline("filler")
        end = call.timeline("caller_said")[0]["t"]
        assert 1.5 <= filler["t"] - end <= 1.5 + 0.15
        assert history(call) == [
            ("caller", "what are your hours", False),
            ("agent", "We open at nine.", False),
        ]


async def test_fillers_can_be_switched_off() -> None:
    async with CallHarness(pipeline(think_s=2.5, replies="{filler_after_ms: null}")) as call:
        await says(call)
        await call.until(lambda: "We open at nine." in played(call), limit_s=6)
        assert sent(call) == ["We open at nine."]


async def test_a_reply_later_than_the_timeout_is_dropped_for_the_fallback() -> None:
    replies = "{filler_after_ms: 1000, max_fillers: 1, reply_timeout_ms: 3000}"
    async with CallHarness(pipeline(think_s=5.0, replies=replies)) as call:
        await says(call)
        await call.until(lambda: FALLBACK in played(call), limit_s=6)
        await call.idle(4.0)  # the reply would have come at 5 s: it was cancelled
        assert sent(call) == ["One moment.", FALLBACK]
        assert history(call) == [
            ("caller", "what are your hours", False),
            ("agent", FALLBACK, False),
        ]
        assert call.wire.closed is None


async def test_the_caller_talking_over_a_filler_cancels_the_wait() -> None:
    lines = ["what are your hours", "never mind"]
    replies = "{filler_after_ms: 1000, max_fillers: 1, reply_timeout_ms: 4000}"
    async with CallHarness(pipeline(think_s=3.0, replies=replies, lines=lines)) as call:
        await says(call)
        await call.until(lambda: call.timeline("filler"), limit_s=3)
        await call.idle(0.2)
        await says(call, 0.6)  # over the filler: a barge-in
        assert call.events("clearAudio")
        await call.until(lambda: "We open at nine." in played(call), limit_s=6)
        await call.idle(5.0)
        assert call.timeline("reply_timeout") == []
        assert sent(call)[-1] == "We open at nine."
        # The interrupted filler is not in the history either.
        assert [h for h in history(call) if h[0] == "agent"] == [
            ("agent", "We open at nine.", False)
        ]
