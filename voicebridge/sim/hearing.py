"""What a caller of a remote service heard, in words: the events and history the analysis needs.

A call simulated in-process reads the service's own timeline (what it transcribed, the text it
spoke, what Plivo acknowledged). ``voicebridge call`` talks to a service in another process:
all it has is the wire. The agent's audio arrives piece by piece, each closed by a checkpoint,
and the playout model knows how much of each piece played before a ``clearAudio``. Transcribing
each piece (and the part of it that played) gives the same ``AgentSaid`` events and history
entries the service would have reported, so one analysis (``voicebridge.sim.analysis``) builds
both reports. The caller's own lines are its script: what it said, not what the far end
understood.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from voicebridge.call.context import HistoryEntry
from voicebridge.call.events import AgentSaid, CallEvent
from voicebridge.call.ledger import checkpoint_turn
from voicebridge.frames import PCM
from voicebridge.sim.playout import ReceivedPiece
from voicebridge.sim.simulate import CallerLine

Transcriber = Callable[[PCM, int], str]


@dataclass
class Heard:
    """The far end's side of a call as the caller reconstructs it."""

    events: list[CallEvent]
    history: list[HistoryEntry]


def _turn_numbers(
    pieces: Sequence[ReceivedPiece], spans: Sequence[tuple[float, float]]
) -> list[int]:
    """Each piece's turn: from a voicebridge checkpoint name, else a new turn whenever a piece
    follows a caller utterance (another server's names mean nothing to us)."""
    numbers: list[int] = []
    turn = 0
    last_s = -1.0
    for piece in pieces:
        named = checkpoint_turn(piece.name) if piece.name else None
        if named is not None:
            turn = named
        elif not numbers or any(last_s <= start < piece.arrived_s for start, _ in spans):
            turn += 1
        numbers.append(turn)
        last_s = piece.arrived_s
    return numbers


def hear(
    pieces: Sequence[ReceivedPiece],
    rate: int,
    lines: Sequence[CallerLine],
    spans: Sequence[tuple[float, float]],
    transcribe: Transcriber,
) -> Heard:
    """Transcribe every piece the agent sent (``AgentSaid``) and the part the caller heard
    (the agent's history entries, ``interrupted`` when a clear cut a piece short)."""
    events: list[CallEvent] = []
    said: list[tuple[float, HistoryEntry]] = [
        (start, HistoryEntry("caller", line.text or "(audio)"))
        for line, (start, _end) in zip(lines, spans, strict=False)
    ]
    agent: dict[int, tuple[float, HistoryEntry]] = {}
    for piece, turn in zip(pieces, _turn_numbers(pieces, spans), strict=True):
        pcm = piece.pcm
        text = transcribe(pcm, rate)
        if not text:
            continue
        events.append(AgentSaid(round(piece.arrived_s, 3), turn, text, piece.name is not None))
        cut = 0 < piece.heard_samples < len(pcm)
        heard = text if not cut else transcribe(pcm[: piece.heard_samples], rate)
        if piece.heard_samples == 0:
            heard = ""
        entry = agent.setdefault(turn, (piece.arrived_s, HistoryEntry("agent", "", turn)))[1]
        if heard:
            entry.text = f"{entry.text} {heard}".strip()
        entry.interrupted = entry.interrupted or piece.cleared
    history = sorted([*said, *agent.values()], key=lambda pair: pair[0])
    return Heard(events, [entry for _, entry in history if entry.text])
