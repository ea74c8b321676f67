"""Resuming an interrupted piece after a false interruption, from a word boundary.

Plivo cannot pause playback, so a false interruption (a cough, "mm-hmm") has already cleared the
agent's audio. The agent goes on from the first word the caller did not hear: the cut is placed
at the quietest 20 ms near where that word should start, so the restart does not land mid-word.
"""

from __future__ import annotations

import numpy as np

from voicebridge.frames import PCM
from voicebridge.playback import split_heard


def unheard_start(text: str, fraction: float) -> tuple[float, str]:
    """(share of the audio before the first unheard word, the unheard words)."""
    heard, rest = split_heard(text, fraction)
    if not rest:
        return 1.0, ""
    total = sum(len(w) + 1 for w in heard + rest)
    before = sum(len(w) + 1 for w in heard)
    return before / total, " ".join(rest)


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
