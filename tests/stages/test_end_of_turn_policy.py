"""The end-of-turn decision as a pure state machine: silences, verdicts and words in, ends out."""

from __future__ import annotations

import pytest

from voicebridge.stages.end_of_turn.policy import (
    EndOfTurnPolicy,
    EndOfTurnSettings,
    EndTurn,
    StartCheck,
)
from voicebridge.stages.end_of_turn.text_cues import unfinished

STEP = 20.0


def silence(policy: EndOfTurnPolicy, since: float, until: float) -> list[tuple[float, object]]:
    """Feed silent frames from ``since`` to ``until`` (frame end times); what came out, when."""
    out = []
    now = since
    while now < until:
        now += STEP
        decision = policy.silent(since, now)
        if decision is not None:
            out.append((now, decision))
            if isinstance(decision, EndTurn):
                break
    return out


def test_silence_only_ends_after_the_silence_window_and_not_before() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(model=False, silence_ms=500))
    assert silence(policy, 1000.0, 1480.0) == []
    policy.speech()
    assert silence(policy, 2000.0, 3000.0) == [(2500.0, EndTurn(2000.0, "silence"))]


def test_a_short_pause_starts_one_check_and_complete_ends_the_turn_at_once() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(check_ms=200, max_silence_ms=1500))
    assert silence(policy, 1000.0, 1200.0) == [(1200.0, StartCheck(1000.0))]
    assert silence(policy, 1000.0, 1300.0) == []  # no second check for the same silence
    end = policy.verdict(1000.0, 0.93)
    assert end == EndTurn(1000.0, "complete", 0.93)


def test_incomplete_waits_up_to_the_longer_limit() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(check_ms=200, max_silence_ms=1500))
    silence(policy, 0.0, 200.0)
    assert policy.verdict(0.0, 0.1) is None
    out = silence(policy, 0.0, 3000.0)
    assert out == [(1500.0, EndTurn(0.0, "max_silence", 0.1))]


def test_speech_resuming_keeps_the_turn_open_and_voids_the_late_verdict() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(check_ms=200, max_silence_ms=1500))
    silence(policy, 0.0, 200.0)
    silence(policy, 0.0, 700.0)  # 700 ms mid-sentence pause, still no answer
    policy.speech()
    assert policy.verdict(0.0, 0.99) is None  # about the old silence: ignored
    assert silence(policy, 2000.0, 2200.0) == [(2200.0, StartCheck(2000.0))]
    assert policy.verdict(2000.0, 0.99) == EndTurn(2000.0, "complete", 0.99)


def test_a_verdict_for_an_ended_utterance_is_void() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(check_ms=200))
    silence(policy, 0.0, 200.0)
    policy.reset()
    assert policy.verdict(0.0, 0.99) is None


def test_no_verdict_falls_back_to_the_silence_timer() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(silence_ms=500, check_ms=200, max_silence_ms=1500))
    silence(policy, 0.0, 200.0)
    assert policy.verdict(0.0, None) is None  # the check failed (pool full, model error)
    assert silence(policy, 0.0, 2000.0) == [(500.0, EndTurn(0.0, "no_verdict"))]


def test_a_failure_reported_after_the_silence_window_ends_the_turn_at_once() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(silence_ms=500, check_ms=200))
    silence(policy, 0.0, 600.0)
    assert policy.verdict(0.0, None) == EndTurn(0.0, "no_verdict")


def test_a_verdict_that_never_comes_ends_at_the_longer_limit() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(check_ms=200, max_silence_ms=1200))
    assert silence(policy, 0.0, 5000.0)[-1] == (1200.0, EndTurn(0.0, "max_silence"))


@pytest.mark.parametrize(
    ("threshold", "probability", "ends"), [(0.5, 0.5, True), (0.5, 0.49, False), (0.9, 0.8, False)]
)
def test_threshold(threshold: float, probability: float, ends: bool) -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(threshold=threshold))
    silence(policy, 0.0, 200.0)
    assert (policy.verdict(0.0, probability) is not None) is ends


def test_text_cues_unfinished_words_overrule_a_complete_sounding_voice() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(check_ms=200, max_silence_ms=1500, text_cues=True))
    silence(policy, 0.0, 200.0)
    assert policy.verdict(0.0, 0.97) is None  # waits for the words
    assert policy.words(0.0, "I'd like to book a table for") is None
    assert silence(policy, 0.0, 3000.0) == [
        (1500.0, EndTurn(0.0, "max_silence", 0.97, "I'd like to book a table for"))
    ]


def test_text_cues_finished_words_end_the_turn_when_they_arrive() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(check_ms=200, text_cues=True))
    silence(policy, 0.0, 200.0)
    assert policy.words(0.0, "What time do you open?") is None  # the model has not answered
    assert policy.verdict(0.0, 0.9) == EndTurn(0.0, "complete", 0.9, "What time do you open?")


def test_text_cues_decide_on_the_voice_alone_when_no_words_come() -> None:
    settings = EndOfTurnSettings(check_ms=200, text_cues=True, words_wait_ms=300)
    policy = EndOfTurnPolicy(settings)
    silence(policy, 0.0, 200.0)
    assert policy.verdict(0.0, 0.9) is None
    assert silence(policy, 0.0, 2000.0) == [(500.0, EndTurn(0.0, "complete", 0.9))]


def test_words_for_another_silence_are_ignored() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(check_ms=200, text_cues=True))
    silence(policy, 0.0, 200.0)
    assert policy.words(-500.0, "and") is None
    assert policy.verdict(0.0, 0.9) is None  # still waiting for this silence's words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'd like to book a table for", True),
        ("My order number is", True),
        ("I want a cake and", True),
        ("Can I book the", True),
        ("so um", True),
        ("I'd like to book a table...", True),
        ("My number is five five one,", True),
        ("What time do you open tomorrow?", False),
        ("I'd like to book a table for four.", False),
        ("Where are you located", False),
        ("", False),
    ],
)
def test_unfinished(text: str, expected: bool) -> None:
    assert unfinished(text) is expected
