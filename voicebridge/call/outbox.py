"""Agent audio waiting to go out, paced so Plivo never holds more than a set lead of it.

Plivo buffers whatever we send. Sending a whole reply at once would make a barge-in's
``clearAudio`` drop seconds of audio we already paid to synthesise and, worse, leave the ledger
guessing across a long buffer. Keeping about a second queued at Plivo costs no latency (the first
chunk goes out at once) and keeps the playhead estimate tight. Sans-I/O: the session asks what to
send now and sends it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from voicebridge.call.ledger import Piece, PlaybackLedger
from voicebridge.frames import OutputAudio


@dataclass(slots=True)
class Send:
    """One message to put on the wire: a chunk of audio, or the checkpoint after a piece."""

    payload: bytes | None = None
    checkpoint: Piece | None = None
    started: OutputAudio | None = None  # set on a piece's first chunk: the whole frame
    piece: Piece | None = None


@dataclass(slots=True)
class _Outgoing:
    frame: OutputAudio
    history_turn: int | None
    offset: int = 0
    piece: Piece | None = None


class Outbox:
    """Reply pieces queued for sending, in order, chunk by chunk."""

    def __init__(
        self, ledger: PlaybackLedger, *, max_lead_ms: float, chunk_bytes: int, bytes_per_ms: float
    ) -> None:
        self._ledger = ledger
        self._queue: deque[_Outgoing] = deque()
        self.max_lead_ms = max_lead_ms
        self.chunk_bytes = chunk_bytes
        self.bytes_per_ms = bytes_per_ms

    def __bool__(self) -> bool:
        return bool(self._queue)

    def add(self, frame: OutputAudio, history_turn: int | None = None) -> None:
        self._queue.append(_Outgoing(frame, history_turn))

    def drop_all(self) -> list[tuple[OutputAudio, int | None]]:
        """Barge-in: nothing queued goes out any more. Returns (frame, history turn) of the
        frames not begun at all (a partly sent piece is the ledger's: it knows how much of it
        went out)."""
        dropped = [(item.frame, item.history_turn) for item in self._queue if item.piece is None]
        self._queue.clear()
        return dropped

    def queued(self) -> list[tuple[OutputAudio, int]]:
        """(frame, bytes already sent) of everything not fully sent."""
        return [(item.frame, item.offset) for item in self._queue]

    def due(self, now: float) -> list[Send]:
        """What to send now: chunks until the lead at Plivo reaches the limit."""
        sends: list[Send] = []
        ledger = self._ledger
        while self._queue and ledger.lead_ms(now) < self.max_lead_ms:
            item = self._queue[0]
            frame = item.frame
            first = item.piece is None
            if item.piece is None:
                item.piece = ledger.begin(
                    frame.turn,
                    frame.text,
                    frame.duration_ms,
                    now,
                    last=frame.last,
                    history_turn=item.history_turn,
                    word_ends_ms=frame.word_ends_ms,
                )
            end = min(len(frame.payload), item.offset + self.chunk_bytes)
            if end > item.offset:
                chunk = frame.payload[item.offset : end]
                sends.append(
                    Send(payload=chunk, started=frame if first else None, piece=item.piece)
                )
                ledger.sent(item.piece, len(chunk) / self.bytes_per_ms, now)
                item.offset = end
            if item.offset >= len(frame.payload):
                ledger.finish(item.piece, now)
                sends.append(Send(checkpoint=item.piece))
                self._queue.popleft()
        return sends
