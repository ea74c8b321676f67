"""One model reply's audio cut into pieces, each with the words its audio covers.

The call core acknowledges agent speech piece by piece (a ``checkpoint`` after each), so a reply
streamed by a realtime model must reach it in pieces: the first as soon as audio arrives (no
added latency), then one per ``piece_ms`` of audio (a checkpoint per piece; the finer the pieces,
the fewer milliseconds rest on the ledger's playhead estimate), and a last one when the reply is
done, which may be empty and only closes the turn.

A piece carries the words of the model's transcript that its audio covers. The models give no
word timings for what they say, so the words are placed in proportion to their characters, as
the ledger places words inside a piece of a speaker without timings: the transcript received so
far of an item is taken to cover the audio received so far of it (but never spoken faster than
``FASTEST_MS_PER_CHAR``: the transcript often runs ahead of the audio), and a word goes into the
first piece whose audio reaches the word's end. The last piece takes whatever words are left.

The reply also keeps where each model item's audio starts in the reply (``items``), in the
model's own milliseconds, so a barge-in maps "the caller heard N ms of this turn" to the
``audio_end_ms`` of the item being spoken (``truncation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from voicebridge.frames import PCM

# No voice speaks a character in less than this (fast speech is ~60 ms a character); a word's
# estimated end is never earlier than its characters at this pace.
FASTEST_MS_PER_CHAR = 40.0


@dataclass(slots=True)
class ModelItem:
    """One model output item with audio: where it starts in the reply, and how long it is."""

    item_id: str
    content_index: int
    offset_ms: float  # model milliseconds of the reply before this item's audio
    ms: float = 0.0  # model audio received for it
    text: str = ""  # its transcript so far (the whole one once done)
    text_done: bool = False
    placed_chars: int = 0  # characters of ``text`` already given to pieces


@dataclass(frozen=True, slots=True)
class Cut:
    """Where to truncate one item: it was heard up to ``audio_end_ms`` of its audio."""

    item_id: str
    content_index: int
    audio_end_ms: int


@dataclass
class ReplyPieces:
    """The pieces of one reply, at the pipeline's ``rate``."""

    rate: int
    piece_ms: int = 500
    items: list[ModelItem] = field(default_factory=list)
    emitted: int = 0  # pieces handed out
    _pcm: list[PCM] = field(default_factory=list)
    _samples: int = 0
    _emitted_ms: float = 0.0  # pipeline ms of audio handed out (pieces) so far

    # --- what the model sends -----------------------------------------------------------------
    def item(self, item_id: str, content_index: int = 0) -> ModelItem:
        """The item ``item_id``; the first audio or text of a new one starts it."""
        for known in reversed(self.items):
            if known.item_id == item_id:
                return known
        offset = sum(known.ms for known in self.items)
        made = ModelItem(item_id, content_index, offset)
        self.items.append(made)
        return made

    def text(self, item_id: str, delta: str) -> None:
        item = self.item(item_id)
        if not item.text_done:
            item.text += delta

    def text_done(self, item_id: str, transcript: str) -> None:
        """The item's whole transcript (it replaces the deltas: they may have been partial)."""
        item = self.item(item_id)
        if transcript or not item.text:
            item.text = transcript
        item.text_done = True
        item.placed_chars = min(item.placed_chars, len(item.text))

    def audio(self, item_id: str, content_index: int, model_ms: float, pcm: PCM) -> list[Piece]:
        """``model_ms`` of the item's audio arrived, ``pcm`` of it at the pipeline rate (less
        or more than ``model_ms`` while a resampler fills or drains). Returns the pieces now
        ready."""
        item = self.item(item_id, content_index)
        item.ms += model_ms
        if len(pcm):
            self._pcm.append(pcm)
            self._samples += len(pcm)
        wanted = 1 if self.emitted == 0 else self.rate * self.piece_ms // 1000
        if self._samples and self._samples >= wanted:
            return [self._piece(last=False)]
        return []

    def finish(self) -> Piece:
        """The reply is over: the last piece (whatever audio is left, and every word not yet
        placed; possibly empty)."""
        return self._piece(last=True)

    # --- pieces --------------------------------------------------------------------------------
    def _piece(self, *, last: bool) -> Piece:
        pcm = _joined(self._pcm, self._samples)
        self._pcm = []
        self._samples = 0
        self._emitted_ms += 1000.0 * len(pcm) / self.rate
        text = self._words(upto_ms=self._emitted_ms, everything=last)
        self.emitted += 1
        return Piece(pcm, text, last)

    def _words(self, *, upto_ms: float, everything: bool) -> str:
        """The words not yet placed whose estimated end lies within ``upto_ms`` of the reply."""
        words: list[str] = []
        for item in self.items:
            text = item.text
            if everything:
                end = len(text)
            elif item.ms <= 0 or not text:
                continue
            else:
                into_ms = upto_ms - item.offset_ms
                # The transcript received so far taken to span the audio received so far, but
                # never spoken faster than any voice speaks (it often runs ahead of the audio).
                covered = min(into_ms / item.ms * len(text), into_ms / FASTEST_MS_PER_CHAR)
                end = _placed_end(text, item.placed_chars, int(covered + 1e-9))
            if end > item.placed_chars:
                words.append(text[item.placed_chars : end])
                item.placed_chars = end
        return " ".join(" ".join(part.split()) for part in words if part.strip())

    # --- a barge-in -----------------------------------------------------------------------------
    def truncation(self, heard_ms: float) -> list[Cut]:
        """Where to cut each item the caller did not hear to its end, ``heard_ms`` of the reply
        having played (the call's ledger says how much): the item being spoken at the cut, and
        any later item with audio (heard not at all)."""
        cuts: list[Cut] = []
        for item in self.items:
            if item.ms <= 0:
                continue
            heard = heard_ms - item.offset_ms
            if heard >= item.ms - 0.5:  # heard to its end (within a rounding)
                continue
            end = round(max(0.0, heard))
            cuts.append(Cut(item.item_id, item.content_index, min(end, int(item.ms))))
        return cuts

    @property
    def model_ms(self) -> float:
        return sum(item.ms for item in self.items)

    @property
    def transcript(self) -> str:
        return " ".join(item.text.strip() for item in self.items if item.text.strip())


@dataclass(frozen=True, slots=True)
class Piece:
    pcm: PCM
    text: str
    last: bool


def _joined(parts: list[PCM], samples: int) -> PCM:
    if not parts:
        return np.zeros(0, np.int16)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts)[:samples]


def _placed_end(text: str, placed: int, covered: int) -> int:
    """The end (exclusive) of the last whole word of ``text`` that ends within its first
    ``covered`` characters, at least ``placed`` (words never move back)."""
    if covered <= 0:
        return placed
    covered = min(len(text), covered)
    if covered >= len(text):
        return len(text)
    # Back up to the end of the last word that ends within the covered characters.
    end = covered
    if end < len(text) and not text[end].isspace():
        while end > placed and not text[end - 1].isspace():
            end -= 1
    return max(placed, end)
