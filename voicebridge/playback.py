"""The playback ledger: what agent audio was sent to Plivo, and what the caller has heard.

Sans-I/O: the session tells it what it sent and which acknowledgements came back, and asks it
questions (is agent audio still playing? which words has the caller heard?). Plivo plays what we
send in order at real time and acknowledges a ``checkpoint`` with ``playedStream`` once everything
before it has played; ``clearAudio`` drops the rest, and checkpoints inside the dropped audio are
never acknowledged. The ledger models exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class PieceState(StrEnum):
    PENDING = "pending"  # sent, not yet acknowledged
    PLAYED = "played"  # acknowledged by playedStream
    CLEARED = "cleared"  # dropped by clearAudio before it was acknowledged
    EXPIRED = "expired"  # its ack never came within the timeout; assumed played


@dataclass(slots=True)
class Piece:
    """One piece of agent speech: its audio then its checkpoint."""

    turn: int
    index: int
    name: str
    text: str
    duration_ms: float
    sent_at: float  # clock seconds when its checkpoint went out
    starts_at: float  # estimated clock seconds when Plivo starts playing it
    last: bool = False
    state: PieceState = PieceState.PENDING
    settled_at: float | None = None
    heard_text: str = ""

    @property
    def ends_at(self) -> float:
        return self.starts_at + self.duration_ms / 1000.0


@dataclass(slots=True)
class AckResult:
    """What an acknowledgement did: the piece it settled, or why it was ignored."""

    piece: Piece | None
    ignored_reason: str | None = None
    turn_complete: bool = False


@dataclass(slots=True)
class ClearResult:
    cleared: list[Piece] = field(default_factory=list)
    interrupted: Piece | None = None  # the piece that was playing when the clear went out


def checkpoint_name(turn: int, index: int) -> str:
    return f"turn-{turn}/piece-{index}"


class PlaybackLedger:
    """Tracks every piece sent to Plivo and settles it as played, cleared or expired."""

    def __init__(self, ack_grace_s: float = 3.0) -> None:
        self._pieces: dict[str, Piece] = {}
        self._pending: list[Piece] = []  # in send order
        self._next_index: dict[int, int] = {}
        self._playhead = 0.0  # estimated clock time at which Plivo's buffer runs dry
        self.ack_grace_s = ack_grace_s

    # --- sending ------------------------------------------------------------------------------
    def record(self, turn: int, text: str, duration_ms: float, now: float, last: bool) -> Piece:
        """Register a piece whose audio was just sent; returns it with its checkpoint name."""
        index = self._next_index.get(turn, 0) + 1
        self._next_index[turn] = index
        name = checkpoint_name(turn, index)
        starts = max(now, self._playhead)
        piece = Piece(turn, index, name, text, duration_ms, now, starts, last)
        self._playhead = piece.ends_at
        self._pieces[name] = piece
        self._pending.append(piece)
        return piece

    # --- acknowledgements ---------------------------------------------------------------------
    def ack(self, name: str, now: float) -> AckResult:
        """``playedStream``: the named piece, and everything sent before it, has played."""
        piece = self._pieces.get(name)
        if piece is None:
            return AckResult(None, f"no checkpoint named {name!r} was sent")
        if piece.state is not PieceState.PENDING:
            return AckResult(None, f"checkpoint {name!r} already settled as {piece.state.value}")
        # Plivo plays in order: an ack for this piece settles earlier ones it overtook.
        position = self._pending.index(piece)
        for earlier in self._pending[:position]:
            self._settle(earlier, PieceState.PLAYED, now)
        self._settle(piece, PieceState.PLAYED, now)
        del self._pending[: position + 1]
        # The estimate of when the rest plays is re-anchored on the real ack time.
        anchor = now
        for later in self._pending:
            later.starts_at = max(later.sent_at, anchor)
            anchor = later.ends_at
        self._playhead = max(anchor, now) if self._pending else now
        return AckResult(piece, turn_complete=piece.last)

    def clear(self, now: float) -> ClearResult:
        """``clearAudio`` went out: every pending piece is dropped and will never be acked."""
        result = ClearResult()
        for piece in self._pending:
            if piece.starts_at <= now < piece.ends_at and result.interrupted is None:
                result.interrupted = piece
                piece.heard_text = words_heard(piece, now)
            self._settle(piece, PieceState.CLEARED, now)
            result.cleared.append(piece)
        self._pending.clear()
        self._playhead = now
        return result

    def expire_overdue(self, now: float) -> list[Piece]:
        """Settle pieces whose ack is overdue by more than the grace period (lost acks)."""
        expired: list[Piece] = []
        while self._pending and self._pending[0].ends_at + self.ack_grace_s <= now:
            piece = self._pending.pop(0)
            self._settle(piece, PieceState.EXPIRED, now)
            expired.append(piece)
        return expired

    def _settle(self, piece: Piece, state: PieceState, now: float) -> None:
        piece.state = state
        piece.settled_at = now
        if state is not PieceState.CLEARED:
            piece.heard_text = piece.text

    # --- questions ----------------------------------------------------------------------------
    @property
    def pending(self) -> list[Piece]:
        return list(self._pending)

    def has_unplayed(self, now: float) -> bool:
        """True while agent audio is buffered at Plivo or still playing (by estimate)."""
        return bool(self._pending)

    def unplayed_ms(self, now: float) -> float:
        if not self._pending:
            return 0.0
        return max(0.0, (self._playhead - now) * 1000.0)

    def next_deadline(self) -> float | None:
        """Clock time by which the oldest pending ack is overdue."""
        return self._pending[0].ends_at + self.ack_grace_s if self._pending else None

    def piece(self, name: str) -> Piece | None:
        return self._pieces.get(name)


def words_heard(piece: Piece, now: float) -> str:
    """The words of ``piece`` that elapsed playout covers, by the share of time played."""
    if piece.duration_ms <= 0:
        return ""
    fraction = min(1.0, max(0.0, (now - piece.starts_at) * 1000.0 / piece.duration_ms))
    words = piece.text.split()
    count = int(len(words) * fraction)
    return " ".join(words[:count])
