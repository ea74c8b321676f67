"""The playback ledger: what agent audio was sent to Plivo, and what the caller has heard.

Sans-I/O: the session tells it what it sent and which acknowledgements came back, and asks it
questions (is agent audio still playing? which words has the caller heard?). Plivo plays what we
send in order at real time and acknowledges a ``checkpoint`` with ``playedStream`` once everything
before it has played; ``clearAudio`` drops the rest, and checkpoints inside the dropped audio are
never acknowledged. The ledger models exactly that.

A piece is registered when its first chunk goes out (``begin``), grows as chunks are sent
(``sent``), and gets its checkpoint at the end (``finish``). Between acknowledgements the ledger
keeps an estimate of Plivo's playhead, re-anchored on every acknowledgement, so at any moment it
can say which piece is playing and how far into it. Which words that covers comes from the
speaker's word end times when it gave them (``AgentAudio.word_ends_ms``), else from an even rate
of characters.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from enum import StrEnum


class PieceState(StrEnum):
    PENDING = "pending"  # sent (or being sent), not yet acknowledged
    PLAYED = "played"  # acknowledged by playedStream
    CLEARED = "cleared"  # dropped by clearAudio before it was acknowledged
    EXPIRED = "expired"  # its ack never came within the timeout; assumed played


@dataclass(slots=True, eq=False)
class Piece:
    """One piece of agent speech: its audio, then its checkpoint."""

    turn: int
    index: int
    name: str
    text: str
    duration_ms: float  # the whole piece, including chunks not sent yet
    started_at: float  # clock seconds when its first chunk went out
    starts_at: float  # estimated clock seconds when Plivo starts playing it
    last: bool = False
    history_turn: int | None = None  # the history entry it speaks for (resumed pieces)
    word_ends_ms: tuple[float, ...] | None = None  # the speaker's word timings, if it knows
    sent_ms: float = 0.0
    checkpoint_sent_at: float | None = None
    cum_end_ms: float = 0.0  # total audio sent on the stream when its checkpoint went out
    state: PieceState = PieceState.PENDING
    settled_at: float | None = None
    heard_text: str = ""
    heard_fraction: float = 0.0
    heard_ms: float = 0.0  # how much of it had played when it was cleared

    @property
    def ends_at(self) -> float:
        return self.starts_at + self.duration_ms / 1000.0

    @property
    def checkpointed(self) -> bool:
        return self.checkpoint_sent_at is not None

    @property
    def entry_turn(self) -> int:
        return self.history_turn if self.history_turn is not None else self.turn


@dataclass(slots=True)
class AckResult:
    """What an acknowledgement did: the pieces it settled, or why it was ignored."""

    piece: Piece | None
    ignored_reason: str | None = None
    settled: list[Piece] = field(default_factory=list)

    @property
    def turn_complete(self) -> bool:
        return self.piece is not None and self.piece.last


@dataclass(slots=True)
class ClearResult:
    cleared: list[Piece] = field(default_factory=list)
    played: list[Piece] = field(default_factory=list)  # over by estimate, ack still in flight
    interrupted: Piece | None = None  # the piece that was playing when the clear went out


def checkpoint_name(turn: int, index: int) -> str:
    return f"turn-{turn}/piece-{index}"


def checkpoint_turn(name: str) -> int | None:
    """The turn number in a name :func:`checkpoint_name` made; None for any other name (a
    Plivo-protocol server that is not voicebridge names its checkpoints as it likes)."""
    head, sep, piece = name.partition("/piece-")
    if not sep or not head.startswith("turn-") or not piece.isdigit():
        return None
    number = head.removeprefix("turn-")
    return int(number) if number.isdigit() else None


class PlaybackLedger:
    """Tracks every piece sent to Plivo and settles it as played, cleared or expired."""

    def __init__(self, ack_grace_s: float = 3.0, playing_margin_s: float = 0.3) -> None:
        self._pieces: dict[str, Piece] = {}
        self._pending: list[Piece] = []  # in send order
        self._next_index: dict[int, int] = {}
        self._playhead = 0.0  # estimated clock time at which Plivo's buffer runs dry
        self._sent_total_ms = 0.0
        self.ack_grace_s = ack_grace_s
        # A piece counts as still playing this long past its estimated end while its ack is
        # due (acks trail playback by the network's latency).
        self.playing_margin_s = playing_margin_s

    # --- sending ------------------------------------------------------------------------------
    def begin(
        self,
        turn: int,
        text: str,
        duration_ms: float,
        now: float,
        *,
        last: bool = False,
        history_turn: int | None = None,
        word_ends_ms: tuple[float, ...] | None = None,
    ) -> Piece:
        """A piece's first chunk is about to go out; it gets its checkpoint name now."""
        index = self._next_index.get(turn, 0) + 1
        self._next_index[turn] = index
        name = checkpoint_name(turn, index)
        start = max(now, self._playhead)
        piece = Piece(
            turn, index, name, text, duration_ms, now, start, last, history_turn, word_ends_ms
        )
        self._pieces[name] = piece
        self._pending.append(piece)
        return piece

    def sent(self, piece: Piece, ms: float, now: float) -> None:
        """``ms`` more of ``piece``'s audio went out."""
        if piece.state is not PieceState.PENDING:
            return
        self._playhead = max(self._playhead, now) + ms / 1000.0
        self._sent_total_ms += ms
        piece.sent_ms += ms

    def finish(self, piece: Piece, now: float) -> None:
        """All of ``piece``'s audio went out and its checkpoint follows."""
        piece.checkpoint_sent_at = now
        piece.cum_end_ms = self._sent_total_ms

    def record(self, turn: int, text: str, duration_ms: float, now: float, last: bool) -> Piece:
        """A whole piece sent at once: ``begin`` + ``sent`` + ``finish``."""
        piece = self.begin(turn, text, duration_ms, now, last=last)
        self.sent(piece, duration_ms, now)
        self.finish(piece, now)
        return piece

    # --- acknowledgements ---------------------------------------------------------------------
    def ack(self, name: str, now: float) -> AckResult:
        """``playedStream``: the named piece, and everything sent before it, has played."""
        piece = self._pieces.get(name)
        if piece is None:
            return AckResult(None, "no checkpoint of that name was sent")
        if piece.state is not PieceState.PENDING:
            return AckResult(None, f"checkpoint already settled as {piece.state.value}")
        if not piece.checkpointed:
            # Names are predictable; an ack for audio still being sent cannot be Plivo's.
            return AckResult(None, "checkpoint has not been sent yet")
        # Plivo plays in order: an ack for this piece settles earlier ones it overtook.
        position = self._pending.index(piece)
        settled = self._pending[: position + 1]
        for done in settled:
            self._settle(done, PieceState.PLAYED, now)
        del self._pending[: position + 1]
        # Re-anchor the playhead on the real ack: what was sent after this checkpoint is
        # still ahead of the caller.
        self._playhead = now + max(0.0, self._sent_total_ms - piece.cum_end_ms) / 1000.0
        anchor = now
        for later in self._pending:
            later.starts_at = max(later.started_at, anchor)
            anchor = later.ends_at
        return AckResult(piece, settled=settled)

    def clear(self, now: float) -> ClearResult:
        """``clearAudio`` went out: every pending piece is dropped and will never be acked.

        Pieces whose estimated playout was already over are settled as played (their ack is
        late, not lost to the clear); the one playing is cut at the words heard so far.
        """
        result = ClearResult()
        for piece in self._pending:
            if piece.checkpointed and piece.ends_at <= now:
                self._settle(piece, PieceState.EXPIRED, now)
                result.played.append(piece)
                continue
            if result.interrupted is None and piece.starts_at <= now < piece.ends_at:
                result.interrupted = piece
                piece.heard_ms = (now - piece.starts_at) * 1000.0
                piece.heard_fraction = piece.heard_ms / piece.duration_ms
                piece.heard_text = words_heard(piece, now)
            self._settle(piece, PieceState.CLEARED, now)
            result.cleared.append(piece)
        self._pending.clear()
        self._playhead = now
        return result

    def expire_overdue(self, now: float) -> list[Piece]:
        """Settle checkpointed pieces whose ack is overdue by more than the grace period."""
        expired: list[Piece] = []
        while (
            self._pending
            and self._pending[0].checkpointed
            and self._pending[0].ends_at + self.ack_grace_s <= now
        ):
            piece = self._pending.pop(0)
            self._settle(piece, PieceState.EXPIRED, now)
            expired.append(piece)
        return expired

    def _settle(self, piece: Piece, state: PieceState, now: float) -> None:
        piece.state = state
        piece.settled_at = now
        if state is not PieceState.CLEARED:
            piece.heard_text = piece.text
            piece.heard_fraction = 1.0

    # --- questions ----------------------------------------------------------------------------
    @property
    def pending(self) -> list[Piece]:
        return list(self._pending)

    def has_unplayed(self, now: float) -> bool:
        """True while agent audio is buffered at Plivo or still playing: a piece counts until
        its ack, or until its estimated end plus a margin when the ack is late."""
        margin = self.playing_margin_s
        return any(not p.checkpointed or p.ends_at + margin > now for p in self._pending)

    def lead_ms(self, now: float) -> float:
        """Estimated audio buffered at Plivo and not yet played, in ms."""
        return max(0.0, (self._playhead - now) * 1000.0)

    def playing(self, now: float) -> Piece | None:
        """The piece the caller is hearing now, by estimate."""
        for piece in self._pending:
            if piece.starts_at <= now < piece.ends_at:
                return piece
        return None

    def next_deadline(self) -> float | None:
        """Clock time by which the oldest pending ack is overdue."""
        for piece in self._pending:
            if piece.checkpointed:
                return piece.ends_at + self.ack_grace_s
            return None
        return None

    def piece(self, name: str) -> Piece | None:
        return self._pieces.get(name)

    def forget_turns_through(self, turn: int) -> None:
        """Drop settled pieces of old turns (bounded memory on long calls)."""
        for name in [
            n for n, p in self._pieces.items() if p.turn <= turn and p not in self._pending
        ]:
            del self._pieces[name]


def words_heard(piece: Piece, now: float) -> str:
    """The words of ``piece`` that elapsed playout covers (see :func:`count_heard`)."""
    elapsed_ms = (now - piece.starts_at) * 1000.0
    count = count_heard(piece.text, elapsed_ms, piece.duration_ms, piece.word_ends_ms)
    return " ".join(piece.text.split()[:count])


def timings_fit(text: str, word_ends_ms: tuple[float, ...] | None) -> bool:
    """Whether ``word_ends_ms`` gives one end time per whitespace word of ``text``."""
    return word_ends_ms is not None and len(word_ends_ms) == len(text.split())


def count_heard(
    text: str, elapsed_ms: float, duration_ms: float, word_ends_ms: tuple[float, ...] | None = None
) -> int:
    """How many words of ``text`` have played after ``elapsed_ms`` of its audio.

    A word counts once playout has passed its end. With the speaker's word timings that end is
    known; without them, speech is assumed to run at an even rate of characters, which real
    voices do not quite do (short words spoken slowly), so timings are used whenever they fit.
    """
    if duration_ms <= 0 or not text.strip():
        return 0
    if word_ends_ms is not None and timings_fit(text, word_ends_ms):
        return bisect_right(word_ends_ms, elapsed_ms)
    fraction = min(1.0, max(0.0, elapsed_ms / duration_ms))
    return len(split_heard(text, fraction)[0])


def split_heard(text: str, fraction: float) -> tuple[list[str], list[str]]:
    """(words heard, words not heard) when ``fraction`` of ``text``'s audio has played."""
    words = text.split()
    if not words:
        return [], []
    total = sum(len(w) + 1 for w in words)
    covered = fraction * total
    heard: list[str] = []
    position = 0.0
    for word in words:
        position += len(word) + 1
        if position <= covered + 1e-9:
            heard.append(word)
        else:
            break
    return heard, words[len(heard) :]
