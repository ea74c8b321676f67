"""A turn's milestones back on the call's timeline, from the gaps its events carry.

``TurnCompleted.timing`` and ``BargeIn.timing`` are ``TurnTiming.as_dict()``: the time between
consecutive milestones (caller's end of speech, transcript, first text, first audio, first sent,
first played, completed), not the milestones themselves. Given one milestone's stream time (the
anchor: the completion is the event's own ``t``) every milestone joined to it by known gaps
follows. Tracing needs the milestones to give its spans explicit start and end times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MILESTONES = (
    "caller_end_s",
    "transcript_s",
    "first_text_s",
    "first_audio_s",
    "first_sent_s",
    "first_played_s",
    "completed_s",
)
# (earlier milestone, later milestone, the gap between them in TurnTiming.as_dict())
_LINKS = (
    ("caller_end_s", "transcript_s", "stt_s"),
    ("transcript_s", "first_text_s", "dialogue_s"),
    ("first_text_s", "first_audio_s", "tts_s"),
    ("first_audio_s", "first_sent_s", "send_s"),
    ("first_sent_s", "first_played_s", "playout_start_s"),
    ("first_played_s", "completed_s", "duration_s"),
    ("caller_end_s", "first_played_s", "latency_s"),
)


def milestones(timing: Mapping[str, Any], anchor: str, at_s: float) -> dict[str, float]:
    """Stream seconds of every milestone that known gaps join to ``anchor`` (at ``at_s``)."""
    if anchor not in MILESTONES:
        raise ValueError(f"unknown milestone {anchor!r}")
    known = {anchor: at_s}
    changed = True
    while changed:
        changed = False
        for early, late, gap_key in _LINKS:
            gap = timing.get(gap_key)
            if not isinstance(gap, int | float):
                continue
            if early in known and late not in known:
                known[late] = round(known[early] + gap, 3)
                changed = True
            elif late in known and early not in known:
                known[early] = round(known[late] - gap, 3)
                changed = True
    return known
