"""The ``piper`` stage: offline speech synthesis of the agent's reply with Piper (onnxruntime).

The voice is loaded once per process and shared by every call; synthesis (and resampling to the
stream's rate) runs in the process-wide ``piper`` worker pool, never on the event loop, as for
every :class:`~voicebridge.stages.tts.local_voice.LocalVoice`. The speaking loop is
:class:`~voicebridge.stages.tts.speaker.Speaker`'s; Piper adds each word's end, from the voice's
phoneme alignments. A barge-in discards the sentence being synthesised (its thread finishes and
frees its slot).

:func:`synthesize` is the same voice as a plain blocking function, for the call simulator and
tests (with a pitch shift, so a simulated caller need not sound like the agent).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from piper import PiperConfig, PiperVoice, SynthesisConfig
from pydantic import Field

from voicebridge.audio.resample import resample
from voicebridge.frames import PCM
from voicebridge.runtime.process_cache import ProcessCache
from voicebridge.runtime.stage import StageError, StageParams
from voicebridge.stages.offline_models import piper_voice_path
from voicebridge.stages.tts.local_voice import (
    LocalVoice,
    Rendered,
    model_with_output,
    onnx_session,
    pitch_source_rate,
)
from voicebridge.stages.tts.word_timing import (
    PUNCTUATION,
    phoneme_key,
    piper_phoneme_groups,
    word_ends_for,
)

log = structlog.get_logger("voicebridge.stages.piper")

POOL_NAME = "piper"


class PiperParams(StageParams):
    voice_path: Path | None = Field(
        None, description="a Piper .onnx voice, its .onnx.json beside it (default: en_US-joe)"
    )
    speaker: int | None = Field(None, ge=0, description="speaker id of a multi-speaker voice")
    length_scale: float = Field(1.0, gt=0.1, le=5.0, description="> 1 speaks slower")
    noise_scale: float | None = Field(None, ge=0, le=2, description="voice variation")
    noise_w: float | None = Field(None, ge=0, le=2, description="phoneme length variation")
    sentence_silence_ms: int = Field(0, ge=0, le=5000, description="silence after each sentence")
    workers: int = Field(1, ge=1, le=32, description="syntheses run in parallel, per process")
    threads: int = Field(0, ge=0, le=64, description="onnxruntime threads per voice (0 = auto)")


# --- the process-wide voice ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _VoiceKey:
    path: str
    threads: int


def _voice_key(voice_path: Path | None, threads: int = 0) -> _VoiceKey:
    path = voice_path if voice_path is not None else piper_voice_path()
    config = path.with_name(path.name + ".json")
    if not path.is_file() or not config.is_file():
        raise StageError(
            f"piper: voice {str(path)!r} needs the .onnx file and its .onnx.json beside it"
        )
    return _VoiceKey(str(path.resolve()), threads)


def _load_voice(key: _VoiceKey) -> PiperVoice:
    # Built by hand rather than PiperVoice.load so the onnxruntime thread count can be bounded.
    config = json.loads(Path(key.path + ".json").read_text(encoding="utf-8"))
    model, _ = model_with_output(key.path, _add_alignments, voice="piper")
    session = onnx_session(model, key.threads)
    return PiperVoice(session=session, config=PiperConfig.from_dict(config))


def _add_alignments(model: Any) -> bool:
    """Exposes the phoneme durations as a second output (Piper's own patch, done in memory)."""
    from piper.patch_voice_with_alignment import add_alignment_output

    try:
        add_alignment_output(model)
    except ValueError as exc:  # already patched on disk, or no duration tensor to expose
        log.info("piper_voice_not_patched", reason=str(exc)[:200])
        return False
    return True


_voices: ProcessCache[_VoiceKey, PiperVoice] = ProcessCache(_load_voice)


def _get_voice(key: _VoiceKey) -> PiperVoice:
    """The loaded voice for ``key``; loads it (blocking, once per process) on first use."""
    return _voices.get(key)


# --- synthesis (runs in a worker thread) --------------------------------------------------------


def _render(key: _VoiceKey, text: str, syn: SynthesisConfig) -> Rendered:
    """Text to int16 PCM at the voice's own rate (all of Piper's sentences joined), and the end
    of each of the text's words in ms when the voice gives alignments."""
    voice = _get_voice(key)
    chunks = list(voice.synthesize(text, syn_config=syn, include_alignments=True))
    parts = [chunk.audio_int16_array for chunk in chunks]
    pcm = np.concatenate(parts) if parts else np.zeros(0, np.int16)
    ends = _word_ends(voice, text, chunks) if chunks else None
    return pcm.astype(np.int16, copy=False), voice.config.sample_rate, ends


def _word_ends(voice: PiperVoice, text: str, chunks: list[Any]) -> tuple[float, ...] | None:
    """Each word's end from the alignments: the phoneme groups are matched to each word's
    phonemes said alone, since espeak merges some words and splits others."""
    groups = piper_phoneme_groups(chunks)
    if groups is None:
        return None
    ends, unit_keys = groups
    words = text.split()
    return word_ends_for(text, ends, word_keys=_word_keys(voice, words), unit_keys=unit_keys)


def _word_keys(voice: PiperVoice, words: list[str]) -> list[str]:
    """Each word's phonemes said alone: one espeak call with every word as its own sentence,
    or a call per word when espeak does not keep them apart."""
    bare = [word.strip(PUNCTUATION) or word for word in words]
    sentences = voice.phonemize("! ".join(bare) + "!")
    if len(sentences) == len(words):
        return [phoneme_key(sentence) for sentence in sentences]
    return [phoneme_key(p for s in voice.phonemize(word) for p in s) for word in bare]


def synthesize(
    text: str,
    rate: int,
    *,
    voice_path: Path | str | None = None,
    length_scale: float = 1.0,
    speaker: int | None = None,
    pitch_semitones: float = 0.0,
    noise_scale: float | None = None,
    noise_w: float | None = None,
) -> PCM:
    """Speak ``text`` as int16 PCM at ``rate`` (blocking; loads the voice on first use).

    See :func:`synthesize_timed` for the parameters.
    """
    pcm, _ends = synthesize_timed(
        text,
        rate,
        voice_path=voice_path,
        length_scale=length_scale,
        speaker=speaker,
        pitch_semitones=pitch_semitones,
        noise_scale=noise_scale,
        noise_w=noise_w,
    )
    return pcm


def synthesize_timed(
    text: str,
    rate: int,
    *,
    voice_path: Path | str | None = None,
    length_scale: float = 1.0,
    speaker: int | None = None,
    pitch_semitones: float = 0.0,
    noise_scale: float | None = None,
    noise_w: float | None = None,
) -> tuple[PCM, tuple[float, ...] | None]:
    """Speak ``text`` as int16 PCM at ``rate``, with the end of each whitespace word in ms
    (None when the voice gives no alignments): a test corpus can cut or pause a sentence
    exactly between two words, keeping the prosody of a sentence that goes on.

    ``pitch_semitones`` shifts the pitch (and formants: a different-sounding speaker) while
    keeping roughly the tempo: Piper renders the speech slower by the pitch factor, and the
    samples are then played back faster by the same factor (resampled as if recorded at a higher
    rate). Piper's length scale stretches phonemes more than pauses, so the tempo is kept only
    approximately (+4 semitones comes out about 10 % shorter).
    """
    key = _voice_key(Path(voice_path) if voice_path is not None else None)
    factor = 2.0 ** (pitch_semitones / 12.0)
    syn = SynthesisConfig(
        speaker_id=speaker,
        length_scale=length_scale * factor,
        noise_scale=noise_scale,
        noise_w_scale=noise_w,
    )
    pcm, voice_rate, ends = _render(key, text, syn)
    if not pcm.size:
        return pcm, ends
    source_rate = pitch_source_rate(voice_rate, factor)
    if ends is not None and source_rate != voice_rate:  # played faster: words end sooner
        ends = tuple(end * voice_rate / source_rate for end in ends)
    return (resample(pcm, source_rate, rate) if source_rate != rate else pcm), ends


# --- the stage ----------------------------------------------------------------------------------


class Piper(LocalVoice):
    type_name = "piper"
    description = "Speaks the agent's reply offline with a Piper voice (onnxruntime, CPU)."
    Params = PiperParams
    pool_name = POOL_NAME

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: PiperParams = self.params
        self._key: _VoiceKey | None = None
        self._syn = SynthesisConfig(
            speaker_id=p.speaker,
            length_scale=p.length_scale,
            noise_scale=p.noise_scale,
            noise_w_scale=p.noise_w,
        )

    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """Load the voice at service start so the first reply does not wait ~1 s for it."""
        assert isinstance(params, PiperParams)
        key = _voice_key(params.voice_path, params.threads)
        voice = await asyncio.to_thread(_get_voice, key)
        if params.speaker is not None and params.speaker >= max(voice.config.num_speakers, 1):
            raise StageError(
                f"piper: speaker {params.speaker} out of range; the voice has "
                f"{voice.config.num_speakers} speaker(s)"
            )
        # Warm onnxruntime up (its first run allocates); the first caller gets a fast reply.
        await asyncio.to_thread(_render, key, "Hello.", SynthesisConfig())

    async def start(self) -> None:
        self._key = _voice_key(self.params.voice_path, self.params.threads)

    def renderer(self, text: str) -> Callable[[], Rendered]:
        key = self._key or _voice_key(self.params.voice_path, self.params.threads)
        return functools.partial(_render, key, text, self._syn)
