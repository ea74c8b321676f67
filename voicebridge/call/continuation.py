"""Continuing an interrupted piece after a false interruption, from a word boundary.

(Not to be confused with resuming a dropped call: ``voicebridge.call.capture``.)

Plivo cannot pause playback, so a false interruption (a cough, "mm-hmm") has already cleared the
agent's audio. The agent goes on from the first word the caller did not hear. With the speaker's
word timings the cut is where the last heard word ends; without them, it is placed at the quietest
20 ms near where the first unheard word should start, so the restart does not land mid-word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voicebridge.audio.codec import codec_for
from voicebridge.call.ledger import Piece, timings_fit
from voicebridge.frames import PCM, OutputAudio
from voicebridge.plivo.formats import StreamFormat


@dataclass(frozen=True, slots=True)
class Remainder:
    """The unheard rest of a piece: where its audio starts and the words it speaks."""

    start_ms: float  # where the first unheard word starts, by estimate or by timings
    text: str
    word_ends_ms: tuple[float, ...] | None  # relative to ``start_ms``; None without timings
    exact: bool  # the start comes from word timings (cut there) rather than the char share


def unheard_rest(
    text: str, heard_words: int, duration_ms: float, word_ends_ms: tuple[float, ...] | None
) -> Remainder:
    """The words of ``text`` after the first ``heard_words``, and where their audio starts."""
    words = text.split()
    rest = words[heard_words:]
    if not rest:
        return Remainder(duration_ms, "", None, True)
    if word_ends_ms is not None and timings_fit(text, word_ends_ms):
        start = word_ends_ms[heard_words - 1] if heard_words else 0.0
        ends = tuple(end - start for end in word_ends_ms[heard_words:])
        return Remainder(start, " ".join(rest), ends, True)
    total = sum(len(w) + 1 for w in words)
    before = sum(len(w) + 1 for w in words[:heard_words])
    return Remainder(duration_ms * before / total, " ".join(rest), None, False)


def quiet_cut(pcm: PCM, rate: int, target: int, search_ms: int = 250) -> int:
    """The start of the quietest 20 ms window within ``search_ms`` before ``target``."""
    if len(pcm) == 0:
        return 0
    window = max(1, rate // 50)
    lo = max(0, target - rate * search_ms // 1000)
    hi = min(len(pcm) - window, target)
    if hi <= lo:
        return max(0, min(target, len(pcm)))
    energy = np.cumsum(np.square(pcm[lo : hi + window].astype(np.float64)))
    energy = np.concatenate(([0.0], energy))
    sums = energy[window:] - energy[:-window]
    return lo + int(np.argmin(sums))


def continue_piece(
    piece: Piece, audio: OutputAudio, turn: int, last: bool, fmt: StreamFormat
) -> OutputAudio | None:
    """The rest of ``audio`` (sent as ``piece``, cut off by a clear) the caller did not hear,
    as a piece of the new ``turn``; None when every word was heard."""
    payload, text, ends = audio.payload, audio.text, audio.word_ends_ms
    if piece.heard_ms > 0:
        rest = unheard_rest(
            audio.text, len(piece.heard_text.split()), audio.duration_ms, audio.word_ends_ms
        )
        if not rest.text:
            return None
        codec = codec_for(fmt.encoding)
        rate = fmt.sample_rate
        target = int(rest.start_ms * rate / 1000.0)
        if rest.exact:  # the speaker said where the word ends: cut right there
            cut = min(target, len(payload) // codec.bytes_per_sample)
        else:  # an estimate: look for a quiet spot before it
            cut = quiet_cut(codec.decode(payload), rate, target)
        payload = payload[cut * codec.bytes_per_sample :]
        text = rest.text
        shift_ms = rest.start_ms - 1000.0 * cut / rate
        ends = (
            tuple(max(0.0, end + shift_ms) for end in rest.word_ends_ms)
            if rest.word_ends_ms is not None
            else None
        )
    return OutputAudio(
        payload=payload,
        turn=turn,
        text=text,
        last=last,
        duration_ms=len(payload) / fmt.bytes_per_ms,
        word_ends_ms=ends,
    )


def unsent_piece(frame: OutputAudio, history_turn: int | None) -> Piece:
    """A stand-in ledger piece for audio that was queued but never sent (nothing heard)."""
    return Piece(
        frame.turn, 0, "", frame.text, frame.duration_ms, 0.0, 0.0, frame.last, history_turn
    )
