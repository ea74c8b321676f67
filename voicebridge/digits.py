"""Spoken digit strings in a transcript, written as the digits the caller said.

Callers read order numbers, codes and phone numbers digit by digit: "five five one two",
"double five one two", "four oh seven". Transcribers write them every way: words, "5 5 1 2",
"5-5-1-2", "551, 2", "4.0.7.9.3". A dialogue that matches or reads back the number needs one
form, so :func:`normalise_digits` rewrites each *run* of digits into one digit string ("5512")
and leaves the rest of the text alone.

What counts as a run (the rule is conservative, because a number invented from ordinary words
is worse than a number left as words):

* digit words (``zero``, ``oh``/``o``, ``one`` .. ``nine``) and digit groups ("55", "1") that
  follow each other with only spaces, hyphens, commas or full stops between them;
* ``double`` / ``triple`` (``treble``) before a digit repeat its first digit ("double 512" is
  "5512");
* ``oh`` is zero inside a run, but not at its edge when a comma or full stop parts it from the
  digits ("Oh, five five one two", "five five one two, oh and thanks" keep their interjection),
  unless a word such as "order" or "is" comes right before it, or it ends the sentence
  ("eight eight six, oh.");
* a word a transcriber hears for a digit ("for" 4, "to"/"too" 2, "won" 1, "ate" 8) counts only
  in a run of at least 4 digits, between two digits ("3-9-7 for 1-9-9"), or first right after
  "is", "it's" or a cue word ("it's to 1-1-0-9-5"; not "for": "it's for 1930"), never
  elsewhere at an edge ("table for 2", "2 for 5");
* a run becomes one string when it holds at least ``min_digits`` digits (3 by default), or at
  least 2 right after a cue word such as "number", "code" or "extension". So "two tickets for
  five people" and "table for two, five o'clock" are left as they are;
* amounts stay as written: a run right after a currency sign ("$12.50"), and "10.5" (a decimal
  point: one full stop between two groups, the second shorter than 3 digits).

Tens and teens ("fifty five twelve") are not digit strings here and stay as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from voicebridge.frames import Transcript

__all__ = [
    "DIGIT_WORDS",
    "digit_runs",
    "digits_spoken",
    "normalise_digits",
    "normalise_transcript",
]

DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_SPOKEN = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_REPEATS = {"double": 2, "triple": 3, "treble": 3}
_SOUNDALIKES = {"for": "4", "to": "2", "too": "2", "won": "1", "ate": "8"}
_MIN_WITH_SOUNDALIKE = 4
_OHS = frozenset({"oh", "o"})
# Words after which a two-digit run is a code, not a count ("extension two one").
CUE_WORDS = frozenset(
    {
        "number", "numbers", "code", "pin", "extension", "ext", "order", "account",
        "reference", "ref", "id", "room", "zip", "postcode", "digits",
    }
)  # fmt: skip
_CUE_REACH = 3  # a cue counts within this many words before the run
# After these a run may start with a sound-alike: "it's to 1-1-0-9-5" (two one one oh nine five).
_LEAD_WORDS = CUE_WORDS | {"is", "it's", "its", "was"}
_CURRENCY = "$£€¥"
_SENTENCE_END = re.compile(r"[\s\"')]*(?:[.!?]|$)")

_TOKEN = re.compile(
    r"(?P<num>\d+)|(?P<word>[^\W\d_]+(?:['\u2019][^\W\d_]+)*)|(?P<sep>[\s,.\-\u2013]+)|(?P<other>.)",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class _Item:
    """One token of a possible run: a digit word, a digit group, or double/triple."""

    start: int
    end: int
    digits: str  # "" for double/triple
    repeat: int  # 2 or 3 for double/triple, else 1
    word: str  # the lower-cased word ("" for a digit group)
    sep_before: str  # the separator between this item and the previous one of its run
    anchored: bool = False  # at the run's edge, yet its context ties it to the number

    @property
    def soundalike(self) -> bool:
        return self.word in _SOUNDALIKES


def _parted_oh(item: _Item, sep: str, items: list[_Item]) -> bool:
    """An "oh" at a run's edge that a comma or full stop parts from the digits (unless its
    context ties it to them: ``anchored``)."""
    return len(items) > 1 and item.word in _OHS and not item.anchored and ("," in sep or "." in sep)


def _trim(items: list[_Item]) -> list[_Item]:
    """Drop what cannot belong to the run: a leading or trailing double/triple, a sound-alike
    at an edge, and an edge "oh" parted from the digits by a comma or full stop (an
    interjection)."""
    while items:
        first, last = items[0], items[-1]
        if last.repeat > 1 or last.soundalike or _parted_oh(last, last.sep_before, items):
            items = items[:-1]
        elif (first.soundalike and not first.anchored) or (
            len(items) > 1 and _parted_oh(first, items[1].sep_before, items)
        ):
            items = items[1:]
        else:
            break
    if items and all(item.word in _OHS or item.repeat > 1 for item in items):
        return []
    return items


def _settle(items: list[_Item]) -> list[list[_Item]]:
    """The run(s) ``items`` make: a run too short to trust its sound-alikes ("2 for 5") is
    split at them into the runs on either side."""
    items = _trim(items)
    if not any(item.soundalike for item in items):
        return [items] if items else []
    if len(_value(items)) >= _MIN_WITH_SOUNDALIKE:
        return [items]
    parts: list[list[_Item]] = [[]]
    for item in items:
        if item.soundalike:
            parts.append([])
        else:
            parts[-1].append(item)
    return [run for part in parts if part for run in _settle(part)]


def _anchor(text: str, items: list[_Item]) -> list[_Item]:
    """Tie edge words to the run where their context says they belong: a sound-alike or a
    parted "oh" after a word that introduces a number ("it's to 1-1-0-9-5", "order O. double
    6-9"), and a parted "oh" that ends the sentence ("eight eight six, oh.")."""
    if not items:
        return items
    first, last = items[0], items[-1]
    if first.word != "for" and (first.soundalike or first.word in _OHS):  # "is for 1930"
        head = text[: first.start].lower().replace("\u2019", "'")
        before = re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)*", head)
        if before and before[-1] in _LEAD_WORDS:
            items = [replace(first, anchored=True), *items[1:]]
    if len(items) > 1 and last.word in _OHS and _SENTENCE_END.match(text, last.end):
        items = [*items[:-1], replace(last, anchored=True)]
    return items


def _value(items: list[_Item]) -> str:
    out: list[str] = []
    repeat = 1
    for item in items:
        if item.repeat > 1:
            repeat *= item.repeat
            continue
        out.append(item.digits[0] * repeat + item.digits[1:])
        repeat = 1
    return "".join(out)


_AMOUNT = re.compile(r"\d{1,3}(?:,\d{3})*(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?")


def _is_amount(text: str, items: list[_Item]) -> bool:
    """A sum of money ("$12.50", "$1,000") or a decimal ("10.5"): not a digit string."""
    span = text[items[0].start : items[-1].end]
    before = text[: items[0].start].rstrip()
    if before and before[-1] in _CURRENCY and _AMOUNT.fullmatch(span):
        return True
    groups = [item for item in items if not item.word]
    if len(items) == 2 and len(groups) == 2 and items[1].sep_before == ".":
        return len(items[1].digits) < 3  # "10.5": a decimal point, not a digit string
    return False


def _cued(text: str, start: int) -> bool:
    words = re.findall(r"[^\W\d_]+", text[:start].lower())[-_CUE_REACH:]
    return any(word in CUE_WORDS for word in words)


def _runs(text: str) -> list[list[_Item]]:
    runs: list[list[_Item]] = []
    current: list[_Item] = []
    sep = ""
    for token in _TOKEN.finditer(text):
        kind = token.lastgroup
        value = token.group()
        item: _Item | None = None
        if kind == "num":
            item = _Item(token.start(), token.end(), value, 1, "", sep)
        elif kind == "word":
            word = value.lower()
            if word in DIGIT_WORDS:
                item = _Item(token.start(), token.end(), DIGIT_WORDS[word], 1, word, sep)
            elif word in _SOUNDALIKES:
                item = _Item(token.start(), token.end(), _SOUNDALIKES[word], 1, word, sep)
            elif word in _REPEATS:
                item = _Item(token.start(), token.end(), "", _REPEATS[word], word, sep)
        elif kind == "sep":
            sep = value
            continue
        if item is None:
            if current:
                runs.append(current)
            current = []
        else:
            if current and current[-1].repeat > 1 and item.repeat > 1:
                runs.append(current)  # "double double": not a number
                current = []
            current.append(item)
        sep = ""
    if current:
        runs.append(current)
    return runs


def digit_runs(text: str, *, min_digits: int = 3) -> list[tuple[int, int, str]]:
    """Each spoken digit run in ``text`` as ``(start, end, digits)``, by the rules above."""
    found: list[tuple[int, int, str]] = []
    for items in (run for raw in _runs(text) for run in _settle(_anchor(text, raw))):
        if _is_amount(text, items):
            continue
        digits = _value(items)
        enough = len(digits) >= min_digits or (len(digits) >= 2 and _cued(text, items[0].start))
        if enough:
            found.append((items[0].start, items[-1].end, digits))
    return found


def normalise_digits(text: str, *, min_digits: int = 3) -> str:
    """``text`` with each spoken digit run written as one digit string.

    >>> normalise_digits("my order number is five five one two please")
    'my order number is 5512 please'
    >>> normalise_digits("I need two tickets for five people")
    'I need two tickets for five people'
    """
    out: list[str] = []
    position = 0
    for start, end, digits in digit_runs(text, min_digits=min_digits):
        out.append(text[position:start])
        out.append(digits)
        position = end
    out.append(text[position:])
    return "".join(out)


def normalise_transcript(frame: Transcript) -> Transcript:
    """``frame`` with its text normalised (the same frame when nothing changed)."""
    text = normalise_digits(frame.text)
    return frame if text == frame.text else replace(frame, text=text)


def digits_spoken(value: str) -> str:
    """The digits of ``value`` as words, one by one, as a receptionist reads a number back
    ("5512" is "five five one two"); ``value`` itself when it holds no digit."""
    digits = [c for c in value if c.isdigit() and c.isascii()]
    return " ".join(_SPOKEN[int(c)] for c in digits) if digits else value
