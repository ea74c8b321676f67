"""The barge-in policy on its own (sans-I/O): guard, words, backchannels, false interruptions."""

from __future__ import annotations

from voicebridge.call.barge_in import BargeInPolicy, Verdict
from voicebridge.call.options import BargeInOptions


def policy(**options: object) -> BargeInPolicy:
    return BargeInPolicy(BargeInOptions.model_validate(options))


def test_guard_then_clear_once_per_burst() -> None:
    p = policy(guard_ms=200)
    p.speech_started(1000)
    assert p.decide(1180, agent_active=True) is Verdict.NONE
    assert p.decide(1200, agent_active=True) is Verdict.CLEAR
    assert p.decide(1220, agent_active=True) is Verdict.NONE


def test_no_clear_when_the_agent_is_silent_or_the_speech_predates_the_reply() -> None:
    p = policy(guard_ms=200)
    p.speech_started(1000)
    assert p.decide(1300, agent_active=False) is Verdict.NONE
    assert p.decide(1400, agent_active=True, agent_since_ms=1200) is Verdict.NONE


def test_min_words_counts_interim_words_even_before_the_vad_onset() -> None:
    p = policy(guard_ms=200, min_words=2)
    p.transcript("hold on", final=False)  # a streaming transcriber quicker than the VAD
    p.speech_started(1000)
    assert p.decide(1200, agent_active=True) is Verdict.CLEAR


def test_backchannels_are_not_words() -> None:
    p = policy(guard_ms=200, min_words=1)
    p.speech_started(1000)
    p.transcript("uh-huh", final=False)
    assert p.decide(1500, agent_active=True) is Verdict.NONE
    assert p.content_words("okay so wait") == ["so", "wait"]


def test_no_words_after_a_clear_is_a_false_interruption() -> None:
    p = policy(guard_ms=200, false_interruption_ms=500)
    p.speech_started(1000)
    assert p.decide(1200, agent_active=True) is Verdict.CLEAR
    p.speech_ended(1400)
    assert p.decide(1800, agent_active=False) is Verdict.NONE
    assert p.decide(1900, agent_active=False) is Verdict.CONTINUE


def test_real_words_make_the_interruption_stand() -> None:
    p = policy(guard_ms=200, false_interruption_ms=500)
    p.speech_started(1000)
    p.decide(1200, agent_active=True)
    p.speech_ended(1400)
    assert p.transcript("wait a moment", final=True) is False
    assert p.decide(5000, agent_active=False) is Verdict.NONE


def test_a_backchannel_final_resumes_at_once_and_is_dropped() -> None:
    p = policy(guard_ms=200)
    p.speech_started(1000)
    p.decide(1200, agent_active=True)
    p.speech_ended(1400)
    assert p.transcript("mm-hmm", final=True) is True  # do not pass it to the dialogue
    assert p.decide(1420, agent_active=False) is Verdict.CONTINUE


def test_without_a_transcriber_nothing_is_ever_called_false() -> None:
    p = policy(guard_ms=200, false_interruption_ms=100)
    p.words_known = False
    p.speech_started(1000)
    p.decide(1200, agent_active=True)
    p.speech_ended(1300)
    assert p.decide(9000, agent_active=False) is Verdict.NONE
