"""A realtime model's reply cut into pieces the ledger can acknowledge, and the truncation point
of each model item for a given number of heard milliseconds."""

from __future__ import annotations

import numpy as np

from voicebridge.stages.realtime.reply_pieces import Cut, ReplyPieces


def ms(n: int) -> np.ndarray:
    return np.zeros(8 * n, np.int16)  # 8 kHz


def test_the_first_piece_goes_at_once_then_one_per_piece_ms_and_the_words_follow() -> None:
    reply = ReplyPieces(rate=8000, piece_ms=300)
    reply.text("a", "one two three four")  # 18 characters, the transcript ahead of the audio
    (first,) = reply.audio("a", 0, 100.0, ms(100))
    assert len(first.pcm) == 800 and not first.last
    assert reply.audio("a", 0, 200.0, ms(200)) == []  # 200 ms < piece_ms: held
    (second,) = reply.audio("a", 0, 200.0, ms(200))
    assert len(second.pcm) == 3200
    last = reply.finish()
    assert last.last and len(last.pcm) == 0
    words = [p.text for p in (first, second, last)]
    assert " ".join(w for w in words if w) == "one two three four"
    assert first.text == ""  # 100 ms of 300 ms covers no whole word of four


def test_truncation_cuts_the_item_being_spoken_and_drops_later_ones() -> None:
    reply = ReplyPieces(rate=8000)
    reply.audio("a", 0, 1000.0, ms(1000))
    reply.audio("b", 1, 500.0, ms(500))
    assert reply.truncation(1500.0) == []  # all heard
    assert reply.truncation(1200.4) == [Cut("b", 1, 200)]
    assert reply.truncation(640.0) == [Cut("a", 0, 640), Cut("b", 1, 0)]
    assert reply.truncation(0.0) == [Cut("a", 0, 0), Cut("b", 1, 0)]
