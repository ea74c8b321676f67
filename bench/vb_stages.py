"""Zero-latency stages for the capacity benchmark (``bench/capacity.py``), and a probed VAD.

The providers answer at once, so what the benchmark measures is the framework: socket, session,
decode, VAD, pacing, encode. Referenced from the benchmark's pipeline YAML as
``bench.vb_stages:Class`` (run with the repository root on ``PYTHONPATH``).
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from typing import Any, ClassVar

from voicebridge.frames import (
    PCM,
    AgentAudio,
    AgentText,
    AudioIn,
    Frame,
    SpeechEnded,
    SpeechStarted,
    Transcript,
)
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.stages.vad import Vad

# Set by the benchmark's server process; called with (stream_id, [k0, wall0, k1, wall1, ...],
# onset frames, end-of-speech frames).
REPORT: Callable[[str, array, list[float], list[float]], None] | None = None


class ProbedVad(Vad):
    """The real ``vad`` stage, which also notes when it finished each caller frame (frame
    number, CLOCK_MONOTONIC): the end of the server's processing of incoming media."""

    type_name = "bench_probed_vad"

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._probe = array("d")
        self._k = 0.0
        self._starts: list[float] = []  # frames on which the VAD decided speech began
        self._ends: list[float] = []  # ... and ended

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AudioIn):
            self._k = frame.timestamp_ms / 20.0
        await super().process(frame)
        if isinstance(frame, AudioIn):
            self._probe.append(self._k)
            self._probe.append(time.monotonic())

    async def emit(self, frame: Frame) -> None:
        if isinstance(frame, SpeechStarted):
            self._starts.append(self._k)
        elif isinstance(frame, SpeechEnded):
            self._ends.append(self._k)
        await super().emit(frame)

    async def stop(self) -> None:
        await super().stop()
        if REPORT is not None and self._probe:
            REPORT(self.ctx.info.stream_id, self._probe, self._starts, self._ends)
            self._probe = array("d")


class InstantTranscriber(Stage):
    """Says ``text`` at each end of speech, at once."""

    type_name = "bench_instant_stt"
    role = "stt"
    inline = (AudioIn,)  # as the real transcribers: caller audio is taken directly while idle
    description = "Benchmark transcriber: a fixed final transcript at each end of speech."

    class Params(StageParams):
        text: str = "I would like to check on my order please"

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, SpeechEnded):
            await self.emit(Transcript(self.params.text, final=True, at_ms=frame.at_ms))


class InstantDialogue(Stage):
    """Answers every final transcript at once with ``sentences`` sentences of reply text."""

    type_name = "bench_instant_dialogue"
    role = "dialogue"
    passthrough = (AudioIn,)  # caller audio goes around this stage
    description = "Benchmark dialogue: a fixed reply, at once."

    class Params(StageParams):
        sentences: int = 3

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, Transcript) and frame.final:
            turn = self.begin_turn()
            n = self.params.sentences
            for i in range(n):
                text = f"This is sentence number {i + 1} of the reply."
                await self.emit(AgentText(text, turn=turn, last=i == n - 1))


class PreparedSpeaker(Stage):
    """Returns prepared PCM for every sentence, at once: ``seconds`` of a voiced signal, in
    ``pieces`` pieces (``AgentAudio`` frames) of equal length, the sentence's words dealt over
    them: what a reply's piece count costs the media path is measured with this."""

    type_name = "bench_prepared_speaker"
    role = "tts"
    passthrough = (AudioIn,)  # caller audio goes around this stage
    description = "Benchmark speaker: the same prepared audio for every sentence."

    class Params(StageParams):
        seconds: float = 1.0
        pieces: int = 1

    _cache: ClassVar[dict[tuple[int, float], PCM]] = {}

    def _pcm(self) -> PCM:
        rate = self.ctx.info.sample_rate
        key = (rate, self.params.seconds)
        pcm = self._cache.get(key)
        if pcm is None:
            from voicebridge.sim.signals import speech_like

            pcm = speech_like(self.params.seconds, rate, level=6000)
            pcm.setflags(write=False)
            self._cache[key] = pcm
        return pcm

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AgentText):
            pcm, n = self._pcm(), max(1, self.params.pieces)
            if n == 1:
                await self.emit(AgentAudio(pcm, turn=frame.turn, text=frame.text, last=frame.last))
                return
            words = frame.text.split()
            for i in range(n):
                await self.emit(
                    AgentAudio(
                        pcm[i * len(pcm) // n : (i + 1) * len(pcm) // n],
                        turn=frame.turn,
                        text=" ".join(words[i * len(words) // n : (i + 1) * len(words) // n]),
                        last=frame.last and i == n - 1,
                    )
                )
            return
        await self.emit(frame)
