"""Resuming an interrupted piece after a false interruption, from a word boundary.

Plivo cannot pause playback, so a false interruption (a cough, "mm-hmm") has already cleared the
agent's audio. The agent goes on from the first word the caller did not hear. With the speaker's
word timings the cut is where the last heard word ends; without them, it is placed at the quietest
20 ms near where the first unheard word should start, so the restart does not land mid-word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voicebridge.call.ledger import timings_fit
from voicebridge.frames import PCM


@dataclass(frozen=True, slots=True)
class Remainder:
    """The unheard rest of a piece: where its audio starts and the words it speaks."""

    start_ms: float  # where the first unheard word starts, by estimate or by timings
    text: str
    word_ends_ms: tuple[float, ...] | None  # relative to ``start_ms``; None without timings
    exact: bool  # the start comes from word timings (cut there) rather than the char share


def unheard_rest(
    text: str, heard_words: int, duration_ms: float, word_ends_ms: tuple[float, ...] | None
) -> Remainder:
    """The words of ``text`` after the first ``heard_words``, and where their audio starts."""
    words = text.split()
    rest = words[heard_words:]
    if not rest:
        return Remainder(duration_ms, "", None, True)
    if word_ends_ms is not None and timings_fit(text, word_ends_ms):
        start = word_ends_ms[heard_words - 1] if heard_words else 0.0
        ends = tuple(end - start for end in word_ends_ms[heard_words:])
        return Remainder(start, " ".join(rest), ends, True)
    total = sum(len(w) + 1 for w in words)
    before = sum(len(w) + 1 for w in words[:heard_words])
    return Remainder(duration_ms * before / total, " ".join(rest), None, False)


def quiet_cut(pcm: PCM, rate: int, target: int, search_ms: int = 250) -> int:
    """The start of the quietest 20 ms window within ``search_ms`` before ``target``."""
    if len(pcm) == 0:
        return 0
    window = max(1, rate // 50)
    lo = max(0, target - rate * search_ms // 1000)
    hi = min(len(pcm) - window, target)
    if hi <= lo:
        return max(0, min(target, len(pcm)))
    energy = np.cumsum(np.square(pcm[lo : hi + window].astype(np.float64)))
    energy = np.concatenate(([0.0], energy))
    sums = energy[window:] - energy[:-window]
    return lo + int(np.argmin(sums))
