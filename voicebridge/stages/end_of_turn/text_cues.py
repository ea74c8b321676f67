"""Is the sentence finished? A verdict from the words transcribed up to a pause.

Whisper writes punctuation and case, and a speculative transcript of a caller who stopped
mid-sentence shows it: "I'd like to book a table for" (no full stop), "My order number is..."
(trails off), "The delivery should go to-", "My order number is 551." (three digits of a
longer number). A finished one ends in ".", "?" or "!" after a word a sentence can end on.
:func:`judge` reads those signs and answers one of three verdicts:

- ``complete``: a closed-set short answer, alone or closing the sentence ("no thanks", "thank
  you, that's all"); a closing word ("... please", "thanks, bye"); or terminal punctuation after
  a word a sentence can end on, with any trailing digit run of a known length. The reason says
  which (``short answer``, ``closing``, ``N digits``, ``question`` or ``full stop``): whisper
  also ends a clause cut off after a content word with a full stop ("I need to cancel."), so
  the policy may give a plain full stop longer (``full_stop_ms``);
- ``incomplete``: a trailing "...", "-" or ","; a last word a sentence cannot end on (an article,
  a possessive, a quantifier, a conjunction, a filler, "of"; a question word after a verb; a
  preposition outside a question; "is" after no subject); a run of digits whose count is not
  one of ``digit_lengths``;
- ``unsure``: anything else (no terminal punctuation after a content word, no words at all).

English only. The lists are deliberately short: a word that often ends a sentence ("in", "on",
"up", "that") would hold finished callers.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

__all__ = ["Judgement", "Verdict", "digit_run", "judge"]

Verdict = Literal["complete", "incomplete", "unsure"]


def _words(*groups: str) -> frozenset[str]:
    return frozenset(word for group in groups for word in group.split())


# Never the last word of a sentence: articles, possessives, quantifiers, conjunctions, "of",
# fillers. ("Do you have any?" is English, but on the phone "any ..." goes on far more often.)
_NEVER_LAST = _words(
    "the a an my your our their his her its",
    "any some every each another",
    "and or but because if although though than whether nor",
    "of",
    "um uh er erm uhm hmm",
)
# Last only in a question ("who am I speaking to?"): prepositions.
_PREPOSITIONS = _words("for to with from at by about into onto through")
# Last only after a subject ("yes it is", "there you are"): forms of "be".
_BE = _words("is are was were am be")
# A question word after a verb starts a clause ("could you tell me what ..."); alone it may be
# the whole question ("what?", "sorry, when?").
_WH = _words("what when where which who whom whose how why")
_SUBJECTS = _words("it that this there here he she they we i you which what who so")
_SHORT_ANSWERS = frozenset(
    {
        "yes",
        "yeah",
        "yep",
        "no",
        "nope",
        "no thanks",
        "no thank you",
        "yes please",
        "okay",
        "ok",
        "sure",
        "right",
        "that's right",
        "correct",
        "that's correct",
        "exactly",
        "thanks",
        "thank you",
        "bye",
        "goodbye",
        "that's all",
        "that's it",
    }
)
# Words that close a request or a call ("... please", "thanks, goodbye"): the caller is done.
_CLOSING = _words("please thanks bye goodbye")
_TRAILS_OFF = ("...", "\u2026", "-", "\u2014", "\u2013", ",", ";", ":")  # ellipsis, dashes
_WORD = re.compile(r"[a-z0-9']+")
_CLAUSE_END = re.compile(r"[,.!?;]")
_CLOCK_TIME = re.compile(r"\b\d{1,2}:\d{2}\b")  # "7:30" is a time, not three digits
# Spoken digits and how many digits each stands for.
_DIGIT_WORDS = {
    **dict.fromkeys(_words("zero oh one two three four five six seven eight nine"), 1),
    **dict.fromkeys(_words("ten eleven twelve thirteen fourteen fifteen sixteen seventeen"), 2),
    **dict.fromkeys(_words("eighteen nineteen twenty thirty forty fifty sixty seventy"), 2),
    **dict.fromkeys(_words("eighty ninety"), 2),
}


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    reason: str  # for logs and the benchmark: which rule decided


def digit_run(words: list[str]) -> int:
    """How many digits the trailing run of ``words`` holds ("my number is 555 12" -> 5;
    "five five one" -> 3; "double five" -> 2; "twenty" -> 2, a number that may go on)."""
    count = 0
    for i in range(len(words) - 1, -1, -1):
        word = words[i]
        if word.isdigit():
            count += len(word)
        elif word in _DIGIT_WORDS:
            count += _DIGIT_WORDS[word]
        elif word in ("double", "triple") and i + 1 < len(words) and count:
            count += 1 if word == "double" else 2  # "double five": one more five
        else:
            break
    return count


def judge(text: str | None, digit_lengths: Collection[int] = ()) -> Judgement:
    """The verdict on ``text``, a transcript up to a pause (None or "": no words)."""
    stripped = (text or "").strip()
    words = _WORD.findall(_CLOCK_TIME.sub("time", stripped.lower()).replace("-", " "))
    if not words:
        return Judgement("unsure", "no words")
    if stripped.endswith(_TRAILS_OFF):
        return Judgement("incomplete", "trails off")
    clauses = [c for c in _CLAUSE_END.split(stripped.lower()) if _WORD.search(c)]
    if " ".join(_WORD.findall(clauses[-1])) in _SHORT_ANSWERS:
        return Judgement("complete", "short answer")
    last = words[-1]
    if last in _CLOSING or words[-2:] == ["thank", "you"]:
        return Judgement("complete", "closing")
    question = stripped.endswith("?")
    if last in _NEVER_LAST:
        return Judgement("incomplete", f"ends on {last!r}")
    if last in _PREPOSITIONS and not question:
        return Judgement("incomplete", f"ends on {last!r}")
    if last in _WH and len(words) > 2:
        return Judgement("incomplete", f"ends on {last!r}")
    if last in _BE and (len(words) < 2 or words[-2] not in _SUBJECTS):
        return Judgement("incomplete", f"ends on {last!r}")
    digits = digit_run(words)
    if digits >= 2 and digits not in digit_lengths:
        return Judgement("incomplete", f"{digits} digits")
    if stripped.endswith((".", "?", "!")):
        if digits >= 2:
            return Judgement("complete", f"{digits} digits")
        return Judgement("complete", "question" if stripped.endswith("?") else "full stop")
    return Judgement("unsure", "no full stop")
