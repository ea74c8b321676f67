"""Per-turn timing: where a reply's latency went, measured from what the caller experienced.

A turn's latency runs from the caller's end of speech to the first agent audio *played* (taken
from Plivo's acknowledgement of the turn's first piece, less that piece's duration), not to when
we sent bytes. The stage breakdown shows where the time went: transcriber, dialogue, speaker,
and the session's own sending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class TurnTiming:
    """Stream-time seconds of one agent turn's milestones (None until reached)."""

    turn: int
    caller_end_s: float | None = None  # the caller's end of speech this turn answers
    transcript_s: float | None = None
    first_text_s: float | None = None
    first_audio_s: float | None = None  # first PCM from the speaker
    first_sent_s: float | None = None
    first_played_s: float | None = None
    completed_s: float | None = None
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        def gap(a: float | None, b: float | None) -> float | None:
            return round(b - a, 3) if a is not None and b is not None else None

        return {
            "turn": self.turn,
            "latency_s": gap(self.caller_end_s, self.first_played_s),
            "stt_s": gap(self.caller_end_s, self.transcript_s),  # VAD silence window + STT
            "dialogue_s": gap(self.transcript_s, self.first_text_s),
            "tts_s": gap(self.first_text_s, self.first_audio_s),
            "send_s": gap(self.first_audio_s, self.first_sent_s),
            "playout_start_s": gap(self.first_sent_s, self.first_played_s),
            "duration_s": gap(self.first_played_s, self.completed_s),
            "interrupted": self.interrupted,
        }


@dataclass
class TurnTracker:
    """Collects ``TurnTiming`` for every turn of a call."""

    turns: dict[int, TurnTiming] = field(default_factory=dict)
    _caller_end_s: float | None = None
    _transcript_s: float | None = None
    _answered_end: float | None = None
    _aside: set[int] = field(default_factory=set)

    def aside(self, turn: int) -> None:
        """``turn`` answers nothing (a filler while the reply is late): it must not take the
        caller's end of speech from the reply that does."""
        self._aside.add(turn)

    def speech_ended(self, at_s: float) -> None:
        self._caller_end_s = at_s
        self._transcript_s = None

    def transcript(self, now_s: float) -> None:
        if self._transcript_s is None:
            self._transcript_s = now_s

    def _timing(self, turn: int) -> TurnTiming:
        timing = self.turns.get(turn)
        if timing is None:
            timing = TurnTiming(turn)
            # A turn answers the caller's latest utterance, unless an earlier turn already did.
            if (
                self._caller_end_s is not None
                and self._caller_end_s != self._answered_end
                and turn not in self._aside
            ):
                timing.caller_end_s = self._caller_end_s
                timing.transcript_s = self._transcript_s
                self._answered_end = self._caller_end_s
            self.turns[turn] = timing
        return timing

    def agent_text(self, turn: int, now_s: float) -> None:
        timing = self._timing(turn)
        if timing.first_text_s is None:
            timing.first_text_s = now_s

    def agent_audio(self, turn: int, now_s: float) -> None:
        timing = self._timing(turn)
        if timing.first_audio_s is None:
            timing.first_audio_s = now_s

    def sent(self, turn: int, now_s: float) -> None:
        timing = self._timing(turn)
        if timing.first_sent_s is None:
            timing.first_sent_s = now_s

    def played(self, turn: int, started_s: float) -> None:
        timing = self._timing(turn)
        if timing.first_played_s is None:
            timing.first_played_s = started_s

    def completed(self, turn: int, now_s: float) -> TurnTiming:
        timing = self._timing(turn)
        timing.completed_s = now_s
        return timing

    def interrupted(self, turn: int) -> None:
        if turn in self.turns:
            self.turns[turn].interrupted = True
