"""Agent turns: the one owner of turn numbers, and where each turn's latency went.

A turn is one agent reply. Its number is begun by the dialogue (or by the call core for
reprompts, fillers and fallbacks), marked stale by a barge-in, sent when its last piece went out
whole, and completed when Plivo acknowledged its last piece as played. Everything that asks
"which turn is live?" asks this object, so the answers can never disagree.

A turn's latency runs from the caller's end of speech to the first agent audio *played* (taken
from Plivo's acknowledgement of the turn's first piece, less that piece's duration), not to when
we sent bytes. The breakdown shows where the time went: transcriber, dialogue, speaker, and the
call's own sending.
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
class Turns:
    """Turn numbers and turn timing of one call."""

    begun: int = 0  # the newest turn begun
    stale_through: int = 0  # every turn up to this one was cut off (barge-in, timeout)
    sent_through: int = 0  # the newest turn whose last piece went out whole
    completed_through: int = 0  # the newest turn whose last piece played
    newest_seen: int = 0  # the newest turn whose text the call has seen
    agent_since_ms: float = 0.0  # stream time the newest agent reply began
    timings: dict[int, TurnTiming] = field(default_factory=dict)
    _caller_end_s: float | None = None
    _transcript_s: float | None = None
    _answered_end: float | None = None
    _aside: set[int] = field(default_factory=set)

    # --- numbers ------------------------------------------------------------------------------
    def begin(self) -> int:
        """Start a new agent reply and return its number."""
        self.begun += 1
        return self.begun

    def invalidate(self) -> int:
        """Barge-in: every turn begun so far is stale. Returns the highest stale turn."""
        self.stale_through = self.begun
        return self.stale_through

    def is_stale(self, turn: int | None) -> bool:
        """True for a reply the caller interrupted: its frames must not reach the caller."""
        return turn is not None and turn <= self.stale_through

    def restore(self, turn: int, stale_through: int) -> None:
        """A resumed call goes on counting from where its dropped stream left off; every turn
        of the dropped stream is over here."""
        self.begun = max(self.begun, turn)
        self.stale_through = max(self.stale_through, min(stale_through, self.begun))
        self.sent_through = self.completed_through = self.newest_seen = self.begun

    def seen(self, turn: int, stream_ms: float) -> None:
        """The call saw text of ``turn``: a newer one marks when the agent's reply began."""
        if turn > self.newest_seen:
            self.newest_seen = turn
            self.agent_since_ms = stream_ms

    def sent(self, turn: int) -> None:
        self.sent_through = max(self.sent_through, turn)

    def completed(self, turn: int) -> None:
        self.completed_through = max(self.completed_through, turn)

    @property
    def preparing(self) -> bool:
        """A reply is begun for a live turn and has neither gone out nor been cut off."""
        return self.begun > max(self.completed_through, self.sent_through, self.stale_through)

    def settled(self, turn: int) -> bool:
        """``turn`` has played to its end or been cut off."""
        return self.completed_through >= turn or self.stale_through >= turn

    # --- timing -------------------------------------------------------------------------------
    def aside(self, turn: int) -> None:
        """``turn`` answers nothing (a filler while the reply is late): it must not take the
        caller's end of speech from the reply that does."""
        self._aside.add(turn)

    def caller_ended(self, at_s: float) -> None:
        self._caller_end_s = at_s
        self._transcript_s = None

    def caller_transcribed(self, now_s: float) -> None:
        if self._transcript_s is None:
            self._transcript_s = now_s

    def timing(self, turn: int) -> TurnTiming:
        timing = self.timings.get(turn)
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
            self.timings[turn] = timing
        return timing

    def mark(self, turn: int, milestone: str, at_s: float) -> None:
        """Record the first time ``turn`` reached ``milestone`` (a ``TurnTiming`` field)."""
        timing = self.timing(turn)
        if getattr(timing, milestone) is None:
            setattr(timing, milestone, at_s)

    def finish(self, turn: int, now_s: float) -> TurnTiming:
        timing = self.timing(turn)
        timing.completed_s = now_s
        self.completed(turn)
        return timing

    def interrupted(self, turn: int) -> None:
        if turn in self.timings:
            self.timings[turn].interrupted = True

    def forget_before(self, turn: int) -> None:
        """Bounded memory on long calls."""
        for old in [t for t in self.timings if t < turn]:
            del self.timings[old]
        self._aside = {t for t in self._aside if t >= turn}
