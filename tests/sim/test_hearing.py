"""A remote call's report is built from what the caller received: the agent's audio piece by
piece, and how much of each played before a clear."""

from __future__ import annotations

import numpy as np

from voicebridge.call.context import HistoryEntry
from voicebridge.call.events import AgentSaid
from voicebridge.frames import PCM
from voicebridge.sim.hearing import hear
from voicebridge.sim.playout import PlayoutModel
from voicebridge.sim.simulate import CallerLine

RATE = 8000


def tone(samples: int) -> PCM:
    return np.full(samples, 1000, np.int16)


def count_samples(pcm: PCM, rate: int) -> str:
    """A stand-in transcriber whose 'words' say how much audio it was given."""
    return f"{len(pcm)} samples" if len(pcm) else ""


def test_pieces_become_agent_text_and_what_played_becomes_history() -> None:
    playout = PlayoutModel(RATE)
    playout.play(tone(800), 0.0)
    playout.play(tone(800), 0.05)
    assert playout.checkpoint("turn-1/piece-1", 0.1) == []
    playout.advance(1.0)  # the greeting played out whole
    playout.play(tone(3200), 2.0)
    playout.checkpoint("turn-2/piece-1", 2.0)
    playout.advance(2.1)  # 800 samples played...
    playout.clear(2.1)  # ...then the caller barged in

    pieces = playout.pieces
    assert [(p.name, p.samples, p.heard_samples, p.cleared) for p in pieces] == [
        ("turn-1/piece-1", 1600, 1600, False),
        ("turn-2/piece-1", 3200, 800, True),
    ]
    heard = hear(pieces, RATE, [CallerLine("what time", tone(10))], [(1.2, 1.8)], count_samples)
    assert heard.events == [
        AgentSaid(0.0, 1, "1600 samples", True),
        AgentSaid(2.0, 2, "3200 samples", True),
    ]
    assert heard.history == [
        HistoryEntry("agent", "1600 samples", 1, False),
        HistoryEntry("caller", "what time", None, False),
        HistoryEntry("agent", "800 samples", 2, True),
    ]


def test_another_servers_checkpoint_names_are_numbered_by_caller_turns() -> None:
    playout = PlayoutModel(RATE)
    playout.play(tone(400), 0.0)
    playout.checkpoint("a", 0.0)
    playout.play(tone(400), 0.1)
    playout.checkpoint("b", 0.1)
    playout.play(tone(400), 3.0)  # after the caller spoke: a new turn
    playout.checkpoint("c", 3.0)
    playout.advance(5.0)
    heard = hear(playout.pieces, RATE, [CallerLine(None, tone(10))], [(1.0, 2.0)], count_samples)
    assert [e.turn for e in heard.events if isinstance(e, AgentSaid)] == [1, 1, 2]
    assert [h.text for h in heard.history] == ["400 samples 400 samples", "(audio)", "400 samples"]
