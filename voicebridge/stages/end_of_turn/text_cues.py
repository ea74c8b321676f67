"""Words that cannot end a sentence: a cue that the caller paused mid-turn.

A transcript that ends in a conjunction, a preposition, an article, a possessive or a filler
("... a table for", "... and", "my order number is") is a sentence that goes on, however final
the voice sounded. Synthetic and flat-voiced callers in particular give the audio model little
to hear, while their words still say it. English only; the list is deliberately short: a word
that often ends a sentence ("in", "on", "up", "out") would hold finished callers.
"""

from __future__ import annotations

import re

__all__ = ["unfinished"]

_CONTINUES = frozenset(
    " ".join(
        (
            "and or but so because if that than as",
            "for to of with from at by about into onto",
            "the a an my your our his her their its this these those",
            "is are was were be am",
            "um uh er erm",
        )
    ).split()
)
_WORD = re.compile(r"[a-z']+")


def unfinished(text: str) -> bool:
    """True when ``text`` stops on a word that a sentence cannot end on, or trails off
    ("...", "-", ",")."""
    stripped = text.rstrip()
    if stripped.endswith(("...", "…", "-", "—", ",")):
        return True
    words = _WORD.findall(stripped.lower())
    return bool(words) and words[-1] in _CONTINUES
