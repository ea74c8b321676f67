"""How much of each agent turn's audio the caller heard, in milliseconds, as the ledger settled it.

A speech-to-speech model keeps its own copy of what it said, as audio; after a barge-in it must be
told where the caller stopped hearing it (OpenAI's ``conversation.item.truncate`` takes
``audio_end_ms``). That number is not estimated here: the call core adds a piece's whole duration
when the ledger settles it as played (Plivo's ``playedStream``, or an ack overdue), and the part
of the piece that was playing when ``clearAudio`` went out (``Piece.heard_ms``, the same figure
the history's heard words come from). So the model, the history and the call report are cut at
the same point.

Written by the call core, read by stages through ``CallContext.heard_audio``. Bounded: turns long
settled are forgotten.
"""

from __future__ import annotations


class HeardAudio:
    """Per agent turn: the milliseconds of its audio the caller heard so far."""

    __slots__ = ("_ms",)

    def __init__(self) -> None:
        self._ms: dict[int, float] = {}

    def played(self, turn: int, ms: float) -> None:
        """``ms`` more of ``turn`` played: a whole piece (acknowledged, or overdue and assumed
        played), or the part of the piece that was playing when the agent was cut off."""
        self._ms[turn] = self._ms.get(turn, 0.0) + max(0.0, ms)

    def ms(self, turn: int) -> float:
        """Milliseconds of ``turn``'s audio the caller heard so far."""
        return self._ms.get(turn, 0.0)

    def forget_before(self, turn: int) -> None:
        for old in [t for t in self._ms if t < turn]:
            del self._ms[old]
