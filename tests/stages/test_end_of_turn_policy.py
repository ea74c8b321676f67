"""The end-of-turn decision as a pure state machine: silences, verdicts and words in, ends out."""

from __future__ import annotations

import pytest

from voicebridge.stages.end_of_turn.policy import (
    EndOfTurnPolicy,
    EndOfTurnSettings,
    EndTurn,
    StartCheck,
)

STEP = 20.0
TEXT = EndOfTurnSettings(text_cues=True, silence_ms=500, check_ms=200, max_silence_ms=1500)
MODEL = EndOfTurnSettings(model=True, silence_ms=500, check_ms=200, max_silence_ms=1500)
BOTH = EndOfTurnSettings(
    text_cues=True, model=True, silence_ms=500, check_ms=200, max_silence_ms=1500
)


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


def ended_at(policy: EndOfTurnPolicy, since: float = 0.0, until: float = 5000.0) -> float | None:
    """Silence from ``since``: how long until the turn ended (None: it did not)."""
    ends = [t for t, d in silence(policy, since, until) if isinstance(d, EndTurn)]
    return ends[0] - since if ends else None


# --- the silence timer alone --------------------------------------------------------------------
def test_silence_only_ends_after_the_silence_window_and_not_before() -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(silence_ms=500))
    assert silence(policy, 1000.0, 1480.0) == []
    policy.speech()
    assert silence(policy, 2000.0, 3000.0) == [(2500.0, EndTurn(2000.0, "silence"))]


# --- text cues ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("words", "after_ms", "reason"),
    [
        ("What time do you open tomorrow?", 200.0, "complete"),
        ("Yes", 200.0, "complete"),  # a short answer needs no full stop
        ("My order number is 55127.", 200.0, "complete"),  # a known length (digit_lengths)
        ("I'd like to book a table for", 1500.0, "max_silence"),
        ("My order number is...", 1500.0, "max_silence"),
        ("My order number is 551.", 1500.0, "max_silence"),  # three digits: more to come
        ("Could you tell me", 500.0, "silence"),  # unsure: the silence timer
        ("", 500.0, "silence"),  # the transcriber heard nothing
    ],
)
def test_words_decide_when_they_arrive_at_the_pause(
    words: str, after_ms: float, reason: str
) -> None:
    policy = EndOfTurnPolicy(
        EndOfTurnSettings(
            text_cues=True, silence_ms=500, check_ms=200, max_silence_ms=1500, digit_lengths=(5,)
        )
    )
    assert silence(policy, 0.0, 180.0) == []
    assert policy.words(0.0, words) is None  # kept until check_ms (the VAD's pause signal)
    out = silence(policy, 0.0, 5000.0)
    assert [(t, d.reason) for t, d in out] == [(after_ms, reason)]  # type: ignore[attr-defined]


def test_words_that_arrive_after_the_check_end_the_turn_the_moment_they_arrive() -> None:
    policy = EndOfTurnPolicy(TEXT)
    assert silence(policy, 0.0, 380.0) == []  # waiting for the words
    end = policy.words(0.0, "Where are you located?")
    assert end == EndTurn(0.0, "complete", None, "Where are you located?", "question")


def test_late_words_are_waited_for_up_to_words_wait_ms_then_the_timer_decides() -> None:
    policy = EndOfTurnPolicy(TEXT)  # check 200 + words_wait 800
    assert ended_at(policy) == 1000.0


def test_no_words_are_waited_for_when_no_transcriber_publishes_them() -> None:
    policy = EndOfTurnPolicy(TEXT, words_expected=lambda: False)  # a cloud transcriber
    assert ended_at(policy) == 500.0  # exactly the silence timer


def test_speech_resuming_keeps_the_turn_open_and_voids_the_old_words() -> None:
    policy = EndOfTurnPolicy(TEXT)
    silence(policy, 0.0, 200.0)
    assert policy.words(0.0, "I'd like to book a table for") is None
    assert silence(policy, 0.0, 900.0) == []  # a 900 ms pause, held open
    policy.speech()
    assert policy.words(0.0, "I'd like to book a table for four.") is None  # the old silence
    silence(policy, 2000.0, 2200.0)
    assert policy.words(2000.0, "I'd like to book a table for four.") == EndTurn(
        2000.0, "complete", None, "I'd like to book a table for four.", "full stop"
    )


def test_words_for_an_ended_utterance_are_void() -> None:
    policy = EndOfTurnPolicy(TEXT)
    silence(policy, 0.0, 300.0)
    policy.reset()
    assert policy.words(0.0, "What time?") is None


# --- the audio model (opt-in) -----------------------------------------------------------------
def test_a_short_pause_starts_one_check_and_complete_ends_the_turn_at_once() -> None:
    policy = EndOfTurnPolicy(MODEL)
    assert silence(policy, 1000.0, 1200.0) == [(1200.0, StartCheck(1000.0))]
    assert silence(policy, 1000.0, 1300.0) == []  # no second check for the same silence
    assert policy.verdict(1000.0, 0.93) == EndTurn(1000.0, "complete", 0.93)


def test_incomplete_waits_up_to_the_longer_limit() -> None:
    policy = EndOfTurnPolicy(MODEL)
    silence(policy, 0.0, 200.0)
    assert policy.verdict(0.0, 0.1) is None
    assert silence(policy, 0.0, 3000.0) == [(1500.0, EndTurn(0.0, "max_silence", 0.1))]


def test_a_verdict_about_an_older_silence_is_void() -> None:
    policy = EndOfTurnPolicy(MODEL)
    silence(policy, 0.0, 700.0)
    policy.speech()
    assert policy.verdict(0.0, 0.99) is None
    assert silence(policy, 2000.0, 2200.0) == [(2200.0, StartCheck(2000.0))]
    assert policy.verdict(2000.0, 0.99) == EndTurn(2000.0, "complete", 0.99)


@pytest.mark.parametrize("answer", [None, "never"])
def test_no_verdict_falls_back_to_the_silence_timer(answer: str | None) -> None:
    policy = EndOfTurnPolicy(MODEL)
    silence(policy, 0.0, 200.0)
    if answer is None:
        assert policy.verdict(0.0, None) is None  # failed: pool full, model error
    assert silence(policy, 0.0, 2000.0) == [(500.0, EndTurn(0.0, "silence"))]


@pytest.mark.parametrize(
    ("threshold", "probability", "ends"), [(0.5, 0.5, True), (0.5, 0.49, False), (0.9, 0.8, False)]
)
def test_threshold(threshold: float, probability: float, ends: bool) -> None:
    policy = EndOfTurnPolicy(EndOfTurnSettings(model=True, threshold=threshold))
    silence(policy, 0.0, 200.0)
    assert (policy.verdict(0.0, probability) is not None) is ends


# --- text cues and the model together ------------------------------------------------------------
@pytest.mark.parametrize(
    ("words", "probability", "after_ms", "reason"),
    [
        ("I'd like to book a table for", 0.97, 1500.0, "max_silence"),  # the words hold it
        ("What time do you open?", 0.9, 200.0, "complete"),  # both agree
        ("What time do you open?", 0.1, 500.0, "vetoed"),  # the voice disagrees: the timer
        ("Could you tell me", 0.9, 200.0, "complete"),  # words unsure: the voice decides
        ("Could you tell me", 0.1, 1500.0, "max_silence"),
        ("What time do you open?", None, 200.0, "complete"),  # the model failed
    ],
)
def test_words_and_voice(
    words: str, probability: float | None, after_ms: float, reason: str
) -> None:
    policy = EndOfTurnPolicy(BOTH)
    assert silence(policy, 0.0, 200.0) == [(200.0, StartCheck(0.0))]
    assert policy.words(0.0, words) is None  # the model has not answered yet
    end = policy.verdict(0.0, probability)
    if end is not None:  # at once, on the check's frame
        assert (200.0, end.reason) == (after_ms, reason)
        return
    out = silence(policy, 0.0, 5000.0)
    assert [(t, d.reason) for t, d in out] == [(after_ms, reason)]  # type: ignore[attr-defined]


def test_a_model_that_has_not_answered_by_the_silence_timer_does_not_hold_finished_words() -> None:
    policy = EndOfTurnPolicy(BOTH)
    silence(policy, 0.0, 200.0)
    policy.words(0.0, "Where are you located?")
    assert ended_at(policy) == 500.0


@pytest.mark.parametrize(
    ("words", "after_ms"),
    [
        ("I need to cancel.", 800.0),  # a plain statement waits full_stop_ms
        ("Where are you located?", 200.0),  # a question does not
        ("No thanks.", 200.0),  # nor a short answer
        ("My order number is 55127.", 200.0),  # nor a digit string of a known length
    ],
)
def test_full_stop_ms_holds_plain_statements_only(words: str, after_ms: float) -> None:
    settings = EndOfTurnSettings(
        text_cues=True, silence_ms=500, full_stop_ms=800, max_silence_ms=1500, digit_lengths=(5,)
    )
    policy = EndOfTurnPolicy(settings)
    silence(policy, 0.0, 180.0)
    policy.words(0.0, words)
    assert ended_at(policy) == after_ms
