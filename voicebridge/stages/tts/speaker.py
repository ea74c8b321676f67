"""The speaking loop every TTS stage shares; a provider only says how to synthesise one piece.

A reply arrives as sentence-sized ``AgentText`` pieces. :class:`Speaker` splits a piece again
(one sentence per request, so the caller hears the first sentence while the rest is still being
made), synthesises each sentence through :meth:`Speaker.synthesize` and emits one
``AgentAudio`` per sentence, at the stream's rate, tagged with the piece's ``turn``. Only the
piece's final sentence carries its ``last`` flag, and an empty final piece still ends its turn
with :data:`EMPTY_TURN_END_MS` of silence, so the session sees the turn's last audio played.

Why one ``AgentAudio`` per sentence and not per network chunk: every ``AgentAudio`` becomes a
``playAudio`` plus a checkpoint, and checkpoints are how the session knows which words an
interrupting caller heard. Sentence pieces keep that record in words.

Barge-in needs nothing kept here: the pipeline cancels ``process`` while it awaits the
provider (the request in flight is dropped), and the loop checks the turn before each sentence
so the rest of a stale piece is never requested. No state outlives a frame, so
:meth:`~voicebridge.runtime.stage.Stage.interrupt` has nothing to drop.
"""

from __future__ import annotations

import time
from abc import ABCMeta, abstractmethod
from typing import ClassVar, NamedTuple

import numpy as np

from voicebridge.audio.resample import resample
from voicebridge.frames import PCM, AgentAudio, AgentText, AudioIn, Frame
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.stage import Stage
from voicebridge.text import split_sentences

EMPTY_TURN_END_MS = 20  # an empty final piece still ends its turn, with this much silence


class Speech(NamedTuple):
    """One synthesised piece: int16 PCM at ``rate``, and when each word of it ends, if known.

    A provider that can resample more cheaply (chunk by chunk as audio streams in, or in its own
    worker thread) returns audio at the stream's rate already; otherwise the speaker resamples.
    """

    pcm: PCM
    rate: int
    word_ends_ms: tuple[float, ...] | None = None


class Speaker(Stage, metaclass=ABCMeta):
    """Base of the TTS stages: the per-sentence speaking loop, written once."""

    role = "tts"
    passthrough = (AudioIn,)  # caller audio goes around every speaker
    # Close the turn with silence when a final piece fails, so the session does not wait for its
    # end (google_tts does; the others leave it to the session's reply watch).
    close_turn_on_error: ClassVar[bool] = False

    @abstractmethod
    async def synthesize(self, text: str) -> Speech:
        """Speak one piece (a sentence, or a whole SSML document); raise ``ProviderError``."""

    def pieces(self, text: str) -> list[str]:
        """What one ``AgentText`` is synthesised as, one request each: its sentences."""
        return split_sentences(text)

    def heard(self, said: str) -> str:
        """The words the caller hears for ``said`` (a speaker of SSML removes the markup)."""
        return said

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AgentText):
            await self.speak(frame)
            return
        await self.emit(frame)  # Hangup, Transfer and the rest pass on, in order

    async def speak(self, frame: AgentText) -> None:
        """Each piece of ``frame`` as one ``AgentAudio``, in order, until the turn goes stale."""
        self.active_turn = frame.turn  # the turn a barge-in would cancel; logs name it too
        try:
            await self._speak(frame)
        finally:
            self.active_turn = None

    async def _speak(self, frame: AgentText) -> None:
        rate = self.ctx.info.sample_rate
        pieces = self.pieces(frame.text)
        started = time.perf_counter()
        sent_any = False
        for index, piece in enumerate(pieces):
            if self.ctx.is_stale(frame.turn):
                return  # interrupted between sentences: do not synthesise the rest
            last = frame.last and index == len(pieces) - 1
            try:
                speech = await self.synthesize(piece)
            except ProviderError:
                if self.close_turn_on_error and frame.last:
                    await self._end_turn(frame.turn, rate)
                raise
            pcm, ends = speech.pcm, speech.word_ends_ms
            if pcm.size and speech.rate != rate:
                pcm = resample(pcm, speech.rate, rate)
            if not pcm.size:
                if not last:
                    continue  # nothing to say (punctuation only); the turn goes on
                pcm, ends = silence(rate), None
            if not sent_any:
                sent_any = True
                self.log.info(
                    "tts_first_audio",
                    ms=round(1000 * (time.perf_counter() - started)),
                    turn=frame.turn,
                    sentences=len(pieces),
                    chars=len(frame.text),
                    audio_ms=round(1000 * pcm.size / rate),
                )
            said = frame.text if len(pieces) == 1 else piece
            audio = AgentAudio(
                pcm=pcm, turn=frame.turn, text=self.heard(said), last=last, word_ends_ms=ends
            )
            await self.emit(audio)
        if frame.last and not pieces:
            await self._end_turn(frame.turn, rate)

    async def _end_turn(self, turn: int, rate: int) -> None:
        """The turn's last audio, with nothing to say: the session still sees it played."""
        await self.emit(AgentAudio(pcm=silence(rate), turn=turn, text="", last=True))


def silence(rate: int) -> PCM:
    """:data:`EMPTY_TURN_END_MS` of silence at ``rate``."""
    return np.zeros(EMPTY_TURN_END_MS * rate // 1000, np.int16)
