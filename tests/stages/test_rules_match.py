"""The rules dialogue picks the most specific rule, reads numbers back digit by digit, and can
confirm a value before it answers (issue 15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voicebridge.config import load_pipeline
from voicebridge.frames import AgentText, Dtmf, Frame, Hangup, Transcript
from voicebridge.stages.dialogue.rule_match import Matcher, Rule, Specificity, yes_or_no
from voicebridge.stages.dialogue.rules import RulesDialogue
from voicebridge.testing.harness import run_stages

ROOT = Path(__file__).resolve().parents[2]

# Written in an order where "the first match answers" gives the wrong reply to most lines.
RULES: list[dict[str, Any]] = [
    {"keywords": ["order", "delivery", "status", "my order"], "reply": "STATUS"},
    {"keywords": ["where", "address", "located"], "reply": "ADDRESS"},
    {"keywords": ["open", "hours", "time", "tomorrow"], "reply": "HOURS"},
    {"keywords": ["book", "table", "cake", "order a"], "reply": "BOOKING"},
    {"regex": r"\b(?P<number>\d{4,10})\b", "reply": "ORDER {number_spoken}"},
    {"regex": r"\bgift\s+card\b", "reply": "GIFT"},
    {"keywords": ["bye", "goodbye"], "reply": "BYE", "action": "hangup"},
]

SPECIFIC = [
    ("I'd like to order a birthday cake", "BOOKING"),  # phrase "order a" + "cake" > "order"
    ("where is my order", "STATUS"),  # phrase "my order" > "where"
    ("order 5512", "ORDER five five one two"),  # a captured value beats every keyword
    ("order five five one two", "ORDER five five one two"),  # spoken digits, normalised
    ("my order number is 551, 2 please", "ORDER five five one two"),
    ("I'd like to book a table for tomorrow", "BOOKING"),  # 2 keywords > 1 keyword
    ("What time do you open tomorrow?", "HOURS"),
    ("where are you located", "ADDRESS"),
    ("is the order status ready", "STATUS"),
    ("do you sell a gift card for my order", "GIFT"),  # a regex beats keyword phrases
    ("ok goodbye", "BYE"),
]


def turns(pieces: list[AgentText]) -> list[str]:
    """Each agent turn's text (a turn is spoken as one piece per sentence)."""
    said: dict[int | None, str] = {}
    for piece in pieces:
        said[piece.turn] = f"{said.get(piece.turn, '')} {piece.text}".strip()
    return list(said.values())


async def replies(frames: list[Frame], **params: Any) -> list[str]:
    params.setdefault("rules", RULES)
    run = await run_stages([RulesDialogue(fallback="FALLBACK", **params)], frames)
    return turns(run.of_text())


@pytest.mark.parametrize(("said", "expected"), SPECIFIC)
async def test_the_most_specific_rule_answers(said: str, expected: str) -> None:
    assert await replies([Transcript(said)]) == [expected]


async def test_match_first_keeps_the_order_of_the_file() -> None:
    said = [Transcript(text) for text, _ in SPECIFIC[:3]]
    assert await replies(said, match="first") == ["STATUS", "STATUS", "STATUS"]


async def test_equal_matches_go_to_the_earlier_rule() -> None:
    rules = [{"keywords": ["cake"], "reply": "FIRST"}, {"keywords": ["cake"], "reply": "SECOND"}]
    assert await replies([Transcript("a cake")], rules=rules) == ["FIRST"]


def test_specificity_ranks_captured_regex_then_phrase_then_keywords() -> None:
    def of(rule: dict[str, Any], text: str) -> Specificity:
        found = Matcher(Rule(reply="x", **rule)).match_text(text)
        assert found is not None
        return found.specificity

    captured = of({"regex": r"(\d+)"}, "order 12")
    plain_regex = of({"regex": r"gift card"}, "a gift card")
    phrase = of({"keywords": ["order a"]}, "order a cake")
    two_words = of({"keywords": ["cake", "birthday"]}, "birthday cake")
    one_word = of({"keywords": ["cake"]}, "birthday cake")
    assert captured > plain_regex > phrase > two_words > one_word
    assert phrase == Specificity(phrase=2, words=2)
    assert Matcher(Rule(keywords=["cake"], reply="x")).match_text("pancakes") is None


async def test_numbers_are_read_back_digit_by_digit() -> None:
    rules = [
        {"regex": r"(?P<number>\d{4,})", "reply": "Order {number_spoken}, {number}, {value}."},
        {"dtmf": r"\d+#", "reply": "Keyed {digits_spoken}."},
    ]
    frames: list[Frame] = [Transcript("it's oh seven double five"), *map(Dtmf, "4012#")]
    assert await replies(frames, rules=rules) == [
        "Order zero seven five five, 0755, 0755.",
        "Keyed four zero one two.",
    ]


async def test_without_spoken_digits_the_words_stay_words() -> None:
    said = [Transcript("order five five one two")]
    assert await replies(said, spoken_digits=False) == ["STATUS"]


CONFIRMING: list[dict[str, Any]] = [
    {"regex": r"(?P<number>\d{4,10})", "confirm": True, "reply": "Order {number_spoken} is out."},
    {"keywords": ["bye"], "reply": "BYE", "action": "hangup", "confirm": "Hang up now?"},
    {"dtmf": r"\d+#", "confirm": "You typed {digits_spoken}?", "reply": "Keyed {digits}."},
]


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        (
            ["five five one two", "yes"],
            ["Did you say five five one two?", "Order five five one two is out."],
        ),
        (
            ["five five one two", "no", "five five one three", "yeah that's right"],
            [
                "Did you say five five one two?",
                "Sorry about that. Please say it again.",
                "Did you say five five one three?",
                "Order five five one three is out.",
            ],
        ),
        (  # a correction in the same breath asks about the new value
            ["5512", "no it's five five one three", "correct"],
            [
                "Did you say five five one two?",
                "Did you say five five one three?",
                "Order five five one three is out.",
            ],
        ),
        (  # neither yes nor no: a new request, and the question is forgotten
            ["5512", "what is this", "yes"],
            ["Did you say five five one two?", "FALLBACK", "FALLBACK"],
        ),
    ],
)
async def test_a_confirming_rule_asks_and_answers_on_yes(
    said: list[str], expected: list[str]
) -> None:
    frames: list[Frame] = [Transcript(text) for text in said]
    assert await replies(frames, rules=CONFIRMING) == expected


async def test_actions_wait_for_the_yes_and_keypad_entries_confirm_too() -> None:
    frames: list[Frame] = [Transcript("bye"), Transcript("nope"), *map(Dtmf, "42#")]
    frames.append(Transcript("yes please"))
    run = await run_stages([RulesDialogue(rules=CONFIRMING, fallback="FALLBACK")], frames)
    assert turns(run.of_text()) == [
        "Hang up now?",
        "Sorry about that. Please say it again.",
        "You typed four two?",
        "Keyed 42.",
    ]
    assert run.of(Hangup) == []


@pytest.mark.parametrize(
    ("said", "answer"),
    [
        ("yes", True),
        ("Yeah, that's right.", True),
        ("correct", True),
        ("no", False),
        ("No, that's not right.", False),
        ("nope", False),
        ("what?", None),
        ("I'd like a cake", None),
    ],
)
def test_yes_or_no(said: str, answer: bool | None) -> None:
    assert yes_or_no(said) is answer


def test_a_confirm_question_cannot_be_empty() -> None:
    with pytest.raises(ValueError, match="confirm question is empty"):
        Rule(keywords=["a"], reply="x", confirm=" ")


OFFLINE = [
    ("I'd like to order a birthday cake", "help with a booking"),
    ("where is my order", "check an order for you"),
    ("order 5512", "Order five five one two has been baked"),
    ("five five one two", "Order five five one two has been baked"),  # after "say your number"
    ("My order number is 551, 2 please.", "Order five five one two has been baked"),
    ("I'd like to book a table for tomorrow", "help with a booking"),
    ("What time do you open tomorrow?", "seven in the morning"),
    ("Where are you located?", "42 Harbor Street"),
    ("Can I talk to a person about my order?", "put you through"),
    ("I need two tickets for five people", "Sorry, I can help with"),
]


@pytest.mark.parametrize(("said", "expected"), OFFLINE)
async def test_the_shipped_receptionist(said: str, expected: str) -> None:
    spec = load_pipeline(ROOT / "pipelines" / "offline.yaml")
    (rules,) = [s for s in spec.stages if s.type == "rules"]
    run = await run_stages([rules.create()], [Transcript(said)], start_call=False)
    assert expected in " ".join(f.text for f in run.of_text())
