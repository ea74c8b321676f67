"""Is the sentence finished? The text rules on whisper-style transcripts, as tables."""

from __future__ import annotations

import pytest

from voicebridge.stages.end_of_turn.text_cues import digit_run, judge

LENGTHS = (4, 5, 7, 10)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        # finished: a full stop after a word a sentence can end on
        ("What time do you open tomorrow?", "complete"),
        ("I'd like to book a table for four people.", "complete"),
        ("Thank you, that's all.", "complete"),
        ("Who am I speaking to?", "complete"),  # a preposition may end a question
        ("Yes, it is.", "complete"),  # "is" after its subject
        ("Can I book for 7:30?", "complete"),  # a time, not three digits
        ("A table for 2.", "complete"),  # one digit is a quantity, not a digit string
        # short answers, with or without punctuation
        ("Yes", "complete"),
        ("no thanks", "complete"),
        ("Yes, please.", "complete"),
        ("That's right", "complete"),
        ("Thanks, goodbye.", "complete"),  # closing words
        ("A table for two please", "complete"),
        ("Okay, thank you.", "complete"),
        ("Thank you, that's all.", "complete"),  # a short answer closing the sentence
        # trailing off
        ("My order number is...", "incomplete"),
        ("The delivery should go to-", "incomplete"),
        ("My number is five five one,", "incomplete"),
        # a last word a sentence cannot end on, whatever the punctuation
        ("I'd like to book a table for", "incomplete"),
        ("I'd like to book a table for.", "incomplete"),
        ("Can I book the", "incomplete"),
        ("I want a cake and", "incomplete"),
        ("I want to know if", "incomplete"),
        ("My date of birth is the 14th of", "incomplete"),
        ("So um", "incomplete"),
        ("My order number is", "incomplete"),
        ("My order number is.", "incomplete"),
        ("Do you have any?", "incomplete"),  # a quantifier: "any ... gluten free bread"
        ("Could you tell me what?", "incomplete"),  # a question word starts a clause
        ("Sorry, what?", "complete"),  # but may be the whole question
        # digits: a run of a known length is complete, any other waits for more
        ("My order number is 55127.", "complete"),
        ("5-5-1-2.", "complete"),
        ("My phone number is 555-1234.", "complete"),
        ("seven seven one two", "unsure"),  # a known length, but no full stop
        ("My order number is 551.", "incomplete"),
        ("The card ends in four four.", "incomplete"),
        ("We live at 42.", "incomplete"),
        ("Can I book for the 20?", "incomplete"),
        ("double five one.", "incomplete"),  # three digits
        # no opinion: a content word with no full stop, or no words
        ("Could you tell me", "unsure"),
        ("", "unsure"),
        (None, "unsure"),
        ("...", "unsure"),
    ],
)
def test_judge(text: str | None, verdict: str) -> None:
    assert judge(text, LENGTHS).verdict == verdict


def test_without_known_lengths_every_digit_string_waits_for_more() -> None:
    assert judge("My order number is 55127.").verdict == "incomplete"
    assert judge("My order number is 55127.", (5,)).verdict == "complete"


@pytest.mark.parametrize(
    ("words", "digits"),
    [
        ("my number is 555 12", 5),
        ("five five one", 3),
        ("double five one", 3),
        ("triple seven", 3),
        ("oh two", 2),
        ("twenty", 2),
        ("forty two", 3),
        ("the end", 0),
        ("double", 0),
    ],
)
def test_digit_run(words: str, digits: int) -> None:
    assert digit_run(words.split()) == digits
