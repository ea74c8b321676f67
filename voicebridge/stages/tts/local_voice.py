"""What the voices synthesised in this process (hibari, Piper) share, written once.

- :func:`onnx_session`: the voice's onnxruntime session on the CPU, its thread count bounded so
  several voices (and Whisper) on one server do not each take every core.
- :func:`model_with_output`: the voice's model with one more output, patched in memory, so every
  synthesis also says when each word ends; the plain file when the ``onnx`` package is missing.
- :func:`pitch_source_rate`: the simulator's "someone else" voice, a pitch shift by resampling.
- :class:`LocalVoice`: the stage part. Each sentence is rendered in the voice's process-wide
  worker pool, never on the event loop, and resampled to the stream's rate and padded with the
  sentence's silence there too. A barge-in discards the sentence being rendered (its thread
  finishes and frees its slot).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime
import structlog

from voicebridge.audio.resample import resample
from voicebridge.frames import PCM
from voicebridge.runtime.workers import run_blocking
from voicebridge.stages.tts.speaker import Speaker, Speech

__all__ = [
    "POOL_QUEUE",
    "LocalVoice",
    "Rendered",
    "WordEnds",
    "model_with_output",
    "onnx_session",
    "pitch_source_rate",
]

log = structlog.get_logger("voicebridge.stages.local_voice")

POOL_QUEUE = 64  # sentences that may wait for a voice's worker pool before it refuses more

WordEnds = tuple[float, ...] | None  # when each word of the text ends, in ms; None = unknown
Rendered = tuple[PCM, int, WordEnds]  # int16 audio, its sample rate, and its words' ends


def onnx_session(
    model: str | bytes, threads: int, *, log_severity_level: int | None = None
) -> onnxruntime.InferenceSession:
    """A CPU session for ``model`` (a path, or the bytes of a model patched in memory).
    ``threads`` > 0 runs one operator at a time on that many threads; 0 lets onnxruntime choose."""
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if log_severity_level is not None:
        options.log_severity_level = log_severity_level
    return onnxruntime.InferenceSession(
        model, sess_options=options, providers=["CPUExecutionProvider"]
    )


def model_with_output(
    path: Path | str, add_output: Callable[[Any], bool], *, voice: str
) -> tuple[str | bytes, bool]:
    """The model at ``path`` as ``add_output`` leaves it (given the loaded ``onnx`` ModelProto,
    it exposes an inner tensor as an extra output and says whether it did), and whether it did.
    The computation is the same, so is the audio. When the ``onnx`` package is missing, or
    ``add_output`` declines, it is the plain file, and the ledger falls back to an even rate of
    characters."""
    try:
        import onnx
    except ImportError:
        log.warning(f"{voice}_word_timings_unavailable", reason="the onnx package is not installed")
        return str(path), False
    model = onnx.load(str(path))
    if not add_output(model):
        return str(path), False
    return bytes(model.SerializeToString()), True


def pitch_source_rate(voice_rate: int, factor: float) -> int:
    """The rate to play audio rendered ``factor`` times slower back at, ``factor`` times faster
    (resampled as if recorded at this rate): pitch and formants move up by ``factor``, a
    different-sounding speaker, and the tempo comes back to the voice's own."""
    # Rounded to 50 Hz so the resampler's polyphase tables stay small (< 0.05 semitone error).
    return voice_rate if factor == 1.0 else max(50, round(voice_rate * factor / 50) * 50)


class LocalVoice(Speaker):
    """Base of the stages whose voice runs in this process. A subclass names its worker pool and
    says how one sentence is rendered; its ``Params`` have ``sentence_silence_ms`` (the silence
    after each sentence) and ``workers`` (syntheses in parallel, per process)."""

    pool_name: ClassVar[str]

    @abstractmethod
    def renderer(self, text: str) -> Callable[[], Rendered]:
        """A blocking call that speaks ``text`` at the voice's own rate (run in the pool)."""

    async def synthesize(self, text: str) -> Speech:
        """One sentence in the worker pool, at the stream's rate, with its silence after."""
        rate = self.ctx.info.sample_rate
        pad = self.params.sentence_silence_ms * rate // 1000
        pcm, ends = await run_blocking(
            self.pool_name,
            _render_at,
            self.renderer(text),
            rate,
            pad,
            max_workers=self.params.workers,
            max_queue=POOL_QUEUE,
        )
        return Speech(pcm, rate, ends)


def _render_at(render: Callable[[], Rendered], rate: int, pad: int) -> tuple[PCM, WordEnds]:
    """``render``'s audio at ``rate`` with ``pad`` samples of silence after (in the pool, so
    the event loop never resamples)."""
    pcm, voice_rate, ends = render()
    if pcm.size and voice_rate != rate:
        pcm = resample(pcm, voice_rate, rate)
    if pad and pcm.size:
        pcm = np.concatenate((pcm, np.zeros(pad, np.int16)))
    return pcm, ends
