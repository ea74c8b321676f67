"""Spoken digit strings written as digits (voicebridge.digits): what callers say and what
transcribers make of it, and the sentences that must stay as they are."""

from __future__ import annotations

import pytest

from voicebridge.digits import digit_runs, digits_spoken, normalise_digits, normalise_transcript
from voicebridge.frames import Transcript

CHANGED = [
    # words, as a caller reads a number out
    ("five five one two", "5512"),
    ("seven seven one two", "7712"),
    ("one two three four five six seven eight", "12345678"),
    ("my order number is five five one two please", "my order number is 5512 please"),
    ("Five, five, one, two.", "5512."),
    ("double five one two", "5512"),
    ("triple seven one two", "77712"),
    ("one double oh seven", "1007"),
    ("four oh seven nine three", "40793"),
    ("oh two oh seven", "0207"),
    ("zero zero one", "001"),
    ("FIVE FIVE ONE TWO", "5512"),
    # what Whisper writes for them
    ("5 5 1 2", "5512"),
    ("Order 5-5-1-2.", "Order 5512."),
    ("My order number is 551, 2 please.", "My order number is 5512 please."),
    ("771-2.", "7712."),
    ("Double 512.", "5512."),
    ("1-double-9", "199"),
    ("It's 4.0.7.9.3.", "It's 40793."),
    ("It's 4.07.9 3.", "It's 40793."),
    ("It's 4.0793.", "It's 40793."),
    ("Order 3-9-7 for 1-double-9, please.", "Order 3974199, please."),
    ("five 5 one 2", "5512"),
    ("It's to 1-1-0-9-5.", "It's 211095."),  # "two one one oh nine five"
    ("treble four five", "4445"),
    ("Order O. Double 6-9, please.", "Order 0669, please."),
    ("It costs $1.0.0.9.5", "It costs $10095"),  # not a sum of money: a digit string
    ("call 555-0100", "call 5550100"),
    # two digits only after a cue word
    ("extension two one", "extension 21"),
    ("my pin is four four", "my pin is 44"),
    # an interjection before the number stays a word
    ("Oh, five five one two", "Oh, 5512"),
    ("five five one two, oh and thanks", "5512, oh and thanks"),
    ("eight eight six, oh.", "8860."),  # the last digit, after a pause
]

UNCHANGED = [
    "I need two tickets for five people",
    "table for two, five o'clock",
    "I need one cake",
    "two four-inch cakes",  # two digits without a cue: a count and a size
    "We're at forty-two Harbor Street.",
    "fifty five twelve",  # tens and teens are not digit strings
    "It costs $12.50",
    "It costs $1,000 or £1,250.50",
    "10.5 kilos",
    "see you at 5:30",
    "table for 2",
    "two for five dollars",
    "It is 5 to 2",
    "Oh, oh!",
    "double double",
    "I want to go to the shop",
    "the booking is for 1930",
    "It is to 5",
    "",
    "5512",
]


@pytest.mark.parametrize(("said", "expected"), CHANGED)
def test_spoken_digit_runs_become_one_digit_string(said: str, expected: str) -> None:
    assert normalise_digits(said) == expected


@pytest.mark.parametrize("said", UNCHANGED)
def test_sentences_that_are_not_digit_strings_stay_as_they_are(said: str) -> None:
    assert normalise_digits(said) == said


def test_normalising_twice_changes_nothing_more() -> None:
    for said, _ in CHANGED:
        once = normalise_digits(said)
        assert normalise_digits(once) == once


def test_min_digits_sets_how_long_a_run_must_be() -> None:
    assert normalise_digits("two four", min_digits=2) == "24"
    assert normalise_digits("one two three", min_digits=4) == "one two three"


def test_runs_report_where_each_number_is() -> None:
    text = "order five five one two or 7 7 1 2"
    assert digit_runs(text) == [(6, 23, "5512"), (27, 34, "7712")]


def test_digits_are_read_back_one_by_one() -> None:
    assert digits_spoken("5512") == "five five one two"
    assert digits_spoken("0 2-07") == "zero two zero seven"
    assert digits_spoken("no digits") == "no digits"


def test_a_transcript_frame_is_rewritten_only_when_its_text_changes() -> None:
    frame = Transcript("five five one two", True, 0.9, 1200.0)
    rewritten = normalise_transcript(frame)
    assert rewritten == Transcript("5512", True, 0.9, 1200.0)
    same = Transcript("where are you")
    assert normalise_transcript(same) is same
