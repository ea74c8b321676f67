"""The rule every streaming transcriber shares: one final transcript per VAD utterance."""

from __future__ import annotations

from statistics import fmean
from typing import Any

import pytest

from voicebridge.stages.stt.finals import AfterSpeech, Piece, UtteranceFinals

# A script is a list of steps; ``run`` records what the stage is told to do at each one:
#   "start"                       the VAD's SpeechStarted
#   ("end", owed[, expecting])    the VAD's SpeechEnded -> "wait" / "nothing" / the released text
#   ("final", text[, owed])       a provider final -> the text sent at once, if any
#   ("timeout", *unfinished)      the wait ran out -> release, with unfinished words counted
Step = Any


def run(steps: list[Step], **params: Any) -> list[str]:
    finals = UtteranceFinals(**params)
    out: list[str] = []
    for step in steps:
        if step == "start":
            finals.speech_started()
            continue
        kind, *args = step
        if kind == "end":
            owed, expecting = (*args, False)[:2]
            after = finals.speech_ended(owed=owed, expecting=expecting)
            if after is AfterSpeech.RELEASE:
                released = finals.release()
                assert released is not None
                out.append(released.text)
            else:
                out.append(after.value)
        elif kind == "final":
            text, owed = (*args, False)[:2]
            sent = finals.final(text, None, 0.0, owed=owed)
            if sent is not None:
                out.append(sent.text)
        elif kind == "timeout":
            released = finals.release([Piece(text, None, 0.0) for text in args])
            out.append(released.text if released is not None else "-")
    return out


CASES: list[tuple[str, dict[str, Any], list[Step], list[str]]] = [
    (
        "finals while the caller speaks are held, then sent as one at the VAD's end",
        {},
        ["start", ("final", "I would like"), ("final", "to book"), ("end", False)],
        ["I would like to book"],
    ),
    (
        "a final after the VAD's end goes at once",
        {},
        ["start", ("end", True), ("final", "opening hours")],
        ["wait", "opening hours"],
    ),
    (
        "a final while another result is still open waits for it",
        {},
        ["start", ("end", True), ("final", "one", True), ("final", "two")],
        ["wait", "one two"],
    ),
    (
        "an empty final sends what is held once nothing is open",
        {},
        ["start", ("final", "yes"), ("end", True), ("final", "")],
        ["wait", "yes"],
    ),
    (
        "words still owed at the VAD's end are waited for, then counted as said",
        {},
        ["start", ("final", "book a"), ("end", True), ("timeout", "table")],
        ["wait", "book a table"],
    ),
    (
        "when the caller speaks again, what is held joins the new utterance",
        {},
        ["start", ("final", "I want"), ("end", True), "start", ("final", "a cake"), ("end", False)],
        ["wait", "I want a cake"],
    ),
    (
        "nothing held and nothing owed: nothing to do",
        {},
        ["start", ("end", False)],
        ["nothing"],
    ),
    (
        "expecting: the stage waits for a final it has seen no words of",
        {},
        ["start", ("end", False, True)],
        ["wait"],
    ),
    (
        "expecting: not when the utterance already had its final",
        {"hold": False},
        ["start", ("final", "hi"), ("end", False, True)],
        ["hi", "nothing"],
    ),
    (
        "hold off: every final goes as it comes, and nothing is waited for",
        {"hold": False},
        ["start", ("final", "I would like"), ("final", "to book"), ("end", True)],
        ["I would like", "to book", "nothing"],
    ),
    (
        "a wait that finds nothing sends nothing",
        {},
        ["start", ("end", True), ("timeout",)],
        ["wait", "-"],
    ),
]


@pytest.mark.parametrize(
    ("params", "steps", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_one_final_per_utterance(
    params: dict[str, Any], steps: list[Step], expected: list[str]
) -> None:
    assert run(steps, **params) == expected


@pytest.mark.parametrize(
    ("join", "scores", "expected"),
    [(min, [0.9, None, 0.6], 0.6), (fmean, [0.9, None, 0.6], 0.75), (min, [None, None], None)],
)
def test_the_utterance_confidence_joins_its_parts(
    join: Any, scores: list[float | None], expected: float | None
) -> None:
    finals = UtteranceFinals(confidence=join)
    finals.speech_started()
    for n, score in enumerate(scores):
        assert finals.final(f"w{n}", score, 100.0 * (3 - n)) is None
    finals.speech_ended(owed=False)
    released = finals.release()
    assert released is not None and released.final
    assert released.confidence == (pytest.approx(expected) if expected is not None else None)
    assert released.at_ms == 300.0  # the end of the latest words


def test_held_words_show_before_interim_words() -> None:
    finals = UtteranceFinals()
    finals.speech_started()
    assert finals.with_held("I") == "I"
    finals.final("I would like", 0.9, 800.0)
    assert (finals.held_text, finals.held_at_ms) == ("I would like", 800.0)
    assert finals.with_held("to") == "I would like to"
    assert finals.with_held("") == "I would like"


@pytest.mark.parametrize(("max_hold_ms", "overdue"), [(None, False), (8000.0, True)])
def test_finals_held_too_long_are_overdue(max_hold_ms: float | None, overdue: bool) -> None:
    """A VAD that never ends the utterance must not hold the caller's words forever."""
    finals = UtteranceFinals(max_hold_ms=max_hold_ms)
    finals.speech_started()
    assert not finals.overdue(now_ms=50_000.0)  # nothing held
    finals.final("still talking", None, 1000.0, now_ms=1000.0)
    assert not finals.overdue(now_ms=8999.0)
    assert finals.overdue(now_ms=9000.0) is overdue
