"""A caller who pauses mid-sentence, through a whole call on its own clock.

With the end-of-turn text cues, a pause whose words go on ("...a table for") is held open: no
reply is prepared in it, so the caller's next words are not an interruption and nothing is
cleared. The silence timer alone answers in the pause, and the caller then talks over the agent.
"""

from __future__ import annotations

from typing import Any

from voicebridge.config import load_pipeline_text
from voicebridge.sim.signals import speech_like
from voicebridge.testing.harness import CallHarness, ScriptedDialogue

FIRST, PAUSE, SECOND = 0.8, 1.0, 0.6  # seconds: speech, a mid-sentence pause, speech


def pipeline(end_of_turn: str, lines: list[str], pause_words: list[str]) -> Any:
    return load_pipeline_text(f"""
name: turn-pauses
session:
  chunk_ms: 100
  barge_in: {{guard_ms: 200, false_interruption_ms: 0}}
stages:
  - type: decode
  - type: vad
    params:
      min_speech_ms: 60
      min_silence_ms: 500
      pause_ms: 200
      pre_roll_ms: 100
      forward_audio: false
      end_of_turn: {end_of_turn}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: {lines!r}, pause_words: {pause_words!r}}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{reply: "Sure, for when?"}}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
""")


async def caller_pauses_mid_sentence(call: CallHarness) -> float:
    """Speech, a pause, speech; returns the stream time the caller stopped for good."""
    await call.idle(0.3)
    await call.speak(speech_like(FIRST, call.rate))
    await call.idle(PAUSE)
    await call.speak(speech_like(SECOND, call.rate))
    done = call.t
    await call.until(lambda: bool(call.timeline("turn_played")), limit_s=10.0)
    return done


def dialogue(call: CallHarness) -> ScriptedDialogue:
    assert call.session.pipeline is not None
    stage = call.session.pipeline.stages[3]
    assert isinstance(stage, ScriptedDialogue)
    return stage


async def test_a_pause_held_open_is_not_an_interruption_and_starts_no_reply() -> None:
    spec = pipeline(
        "text",
        lines=["I'd like to book a table for four."],
        pause_words=["I'd like to book a table for", "I'd like to book a table for four."],
    )
    async with CallHarness(spec) as call:
        done = await caller_pauses_mid_sentence(call)
        assert len(call.timeline("speech_ended")) == 1  # one turn, the pause inside it
        assert len(dialogue(call).seen) == 1  # one reply, to the whole sentence
        played = call.events("playAudio")
        assert played and min(m.t for m in played) > done  # nothing was said in the pause
        assert call.timeline("barge_in") == []
        assert call.events("clearAudio") == []
        assert call.timeline("turn_played")  # and the reply was heard in full


async def test_the_silence_timer_answers_in_the_pause_and_the_caller_talks_over_it() -> None:
    spec = pipeline("silence", lines=["I'd like to book a table for", "four."], pause_words=[])
    async with CallHarness(spec) as call:
        done = await caller_pauses_mid_sentence(call)
        assert len(call.timeline("speech_ended")) == 2  # the pause ended a turn
        first_audio = min(m.t for m in call.events("playAudio"))
        assert first_audio < done - SECOND  # the agent spoke in the pause
        assert len(call.timeline("barge_in")) == 1  # and was cut off when the caller went on
        assert len(call.events("clearAudio")) == 1
