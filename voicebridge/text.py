"""Text helpers for agent replies: sentence-sized pieces so speech can start early, and how far
apart two spellings (or word lists) are."""

from __future__ import annotations

import re
from collections.abc import Sequence

# A sentence ends at . ! ? (or their CJK forms) followed by space/end, not inside "e.g." or "3.5".
_BOUNDARY = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])[\"')\]]*\s+(?=\S)")
_ABBREVIATIONS = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "st.", "e.g.", "i.e.", "etc.", "vs.", "a.m.", "p.m.", "no."}
)


def split_sentences(text: str) -> list[str]:
    """Split a reply into sentences; abbreviations such as "Dr." do not end one."""
    text = " ".join(text.split())
    if not text:
        return []
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        candidate = text[start : match.start()].strip()
        last_word = candidate.rsplit(" ", 1)[-1].lower()
        if last_word in _ABBREVIATIONS:
            continue
        pieces.append(candidate)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


class SentenceChunker:
    """Accumulates streamed text (LLM tokens) and releases whole sentences as they complete."""

    def __init__(self, min_chars: int = 12) -> None:
        self._buffer = ""
        self._min_chars = min_chars

    def push(self, text: str) -> list[str]:
        self._buffer += text
        sentences = split_sentences(self._buffer)
        if len(sentences) <= 1:
            return []
        ready: list[str] = []
        pending = ""
        for sentence in sentences[:-1]:
            pending = f"{pending} {sentence}".strip()
            if len(pending) >= self._min_chars:
                ready.append(pending)
                pending = ""
        self._buffer = f"{pending} {sentences[-1]}".strip() if pending else sentences[-1]
        if self._buffer and text and text[-1].isspace():
            self._buffer += " "
        return ready

    def flush(self) -> list[str]:
        rest = " ".join(self._buffer.split())
        self._buffer = ""
        return [rest] if rest else []


def edit_distance(a: Sequence[object], b: Sequence[object]) -> int:
    """Levenshtein distance: the substitutions, deletions and insertions that turn ``a`` into
    ``b``, over characters of two strings or words of two lists."""
    previous = list(range(len(b) + 1))
    for x, ca in enumerate(a, 1):
        current = [x]
        for y, cb in enumerate(b, 1):
            current.append(min(previous[y] + 1, current[y - 1] + 1, previous[y - 1] + (ca != cb)))
        previous = current
    return previous[-1]


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,31})\}")


def fill_vars(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{name}`` whose name is in ``values`` replaced by its value.

    Everything else is left as written: a prompt full of JSON braces, or a greeting used for
    inbound calls too, stays intact; a call without variables sees its text unchanged.
    """
    if not values:
        return template
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
