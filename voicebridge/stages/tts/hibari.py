"""The ``hibari`` stage: offline speech synthesis of the agent's reply with hibari (onnxruntime).

hibari is a 7.9 MB English voice (American, female) distilled from Kokoro-82M, with its own
espeak-free text-to-phoneme front end; code, weights and lexicon are Apache-2.0 and ship inside
the ``hibari-tts`` wheel. That makes it the default offline voice: nothing GPL is installed, and
nothing is downloaded at run time (only the bundled voice is ever loaded; hibari's other voices
would be fetched from a hub, so they are not offered).

The voice is loaded once per process and shared by every call; synthesis (and resampling to the
stream's rate) runs in the process-wide ``hibari`` worker pool, never on the event loop, as for
every :class:`~voicebridge.stages.tts.local_voice.LocalVoice`. The speaking loop is
:class:`~voicebridge.stages.tts.speaker.Speaker`'s; hibari adds each word's end, from the frames
the model gives each phoneme.

:func:`synthesize` is the same voice as a plain blocking function, for the call simulator and
tests (with a pitch shift, so a simulated caller need not sound like the agent).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime
import structlog
from hibari import dsp
from hibari.g2p import G2P
from pydantic import Field

from voicebridge.audio.resample import resample
from voicebridge.frames import PCM
from voicebridge.runtime.process_cache import ProcessCache
from voicebridge.runtime.stage import StageParams
from voicebridge.stages.offline_models import hibari_assets_dir
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
    phoneme_string_groups,
    word_ends_for,
)

log = structlog.get_logger("voicebridge.stages.hibari")

POOL_NAME = "hibari"
VOICE_RATE = 24000  # the model's output rate
_HOP = 300  # samples per model frame (12.5 ms at 24 kHz)
_MAX_PHONEMES = 400  # longer phoneme strings are split at clause punctuation (as hibari does)
_CLAUSE = re.compile(r"(?<=[.!?,;:—…])\s+")
# The model's per-phoneme frame counts, an inner tensor of hibari-tts 0.2.1's graph; exposed as an
# extra output (in memory) so every synthesis also says when each word ends.
_DURATIONS_TENSOR = "/Cast_32_output_0"
# Warms every part up: the lexicon, the number reader and the out-of-vocabulary net ("Zorblat").
_WARM_UP = "Hello Zorblat, it's 4:30."


class HibariParams(StageParams):
    speed: float = Field(1.0, ge=0.5, le=2.0, description="> 1 speaks faster (1.0 = as trained)")
    seed: int | None = Field(
        0, ge=0, description="seed of the voice's noise part: same text, same audio (None = vary)"
    )
    sentence_silence_ms: int = Field(0, ge=0, le=5000, description="silence after each sentence")
    workers: int = Field(1, ge=1, le=32, description="syntheses run in parallel, per process")
    threads: int = Field(1, ge=0, le=64, description="onnxruntime threads per voice (0 = auto)")


# --- the process-wide voice ---------------------------------------------------------------------


@dataclass(slots=True)
class _Voice:
    session: onnxruntime.InferenceSession
    g2p: G2P  # text -> phoneme string (misaki's alphabet)
    vocab: dict[str, int]
    timed: bool  # the session also outputs each phoneme's frames


def _load_voice(threads: int) -> _Voice:
    assets = hibari_assets_dir()
    model, timed = model_with_output(assets / "hibari.onnx", _add_durations, voice="hibari")
    session = onnx_session(model, threads, log_severity_level=3)
    vocab = json.loads((assets / "vocab.json").read_text(encoding="utf-8"))
    return _Voice(session, G2P(british=False), vocab, timed)


def _add_durations(model: Any) -> bool:
    """Exposes the per-phoneme frame counts as an extra output, if the graph has them."""
    import onnx

    produced = {name for node in model.graph.node for name in node.output}
    if _DURATIONS_TENSOR not in produced:
        log.warning("hibari_word_timings_unavailable", reason="no duration tensor in this voice")
        return False
    duration = onnx.helper.make_tensor_value_info(_DURATIONS_TENSOR, onnx.TensorProto.INT64, [None])
    model.graph.output.append(duration)
    return True


_voices: ProcessCache[int, _Voice] = ProcessCache(_load_voice)


def _get_voice(threads: int) -> _Voice:
    """The loaded voice for ``threads``; loads it (blocking, once per process) on first use."""
    return _voices.get(threads)


# --- synthesis (runs in a worker thread) --------------------------------------------------------


def _chunks(phonemes: str) -> list[str]:
    """The phoneme string in pieces the model takes at once (split at clauses when long)."""
    if len(phonemes) <= _MAX_PHONEMES:
        return [phonemes]
    chunks: list[str] = []
    current = ""
    for part in _CLAUSE.split(phonemes):
        if current and len(current) + len(part) + 1 > _MAX_PHONEMES:
            chunks.append(current)
            current = part
        else:
            current = f"{current} {part}" if current else part
    return [*chunks, current] if current else chunks


def _render(threads: int, text: str, speed: float, seed: int | None) -> Rendered:
    """Text to int16 PCM at 24 kHz, and the end of each of the text's words in ms when the voice
    gives durations."""
    voice = _get_voice(threads)
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    unit_ends: list[float] = []
    unit_keys: list[str] = []
    offset = 0
    for chunk in _chunks(voice.g2p(text)):
        kept = [ch for ch in chunk if ch in voice.vocab]
        if not kept:
            continue
        ids = np.asarray([[0, *(voice.vocab[ch] for ch in kept), 0]], np.int64)
        out = voice.session.run(None, {"ids": ids, "speed": np.asarray([speed], np.float32)})
        lh, theta, ln, lr, phi, f0 = (o[0] for o in out[:6])
        wav = dsp.synth(lh, theta, ln, lr, phi, f0, rng)
        if voice.timed:
            frames = np.asarray(out[6], np.float64).reshape(-1)
            # Durations are in the model's coarse steps: scale them onto the frames it made.
            scale = _HOP * f0.shape[-1] / max(float(frames.sum()), 1.0)
            group_ends, keys = phoneme_string_groups(
                kept, frames[1:-1] * scale, start=frames[0] * scale
            )
            unit_ends += [1000.0 * (offset + end) / VOICE_RATE for end in group_ends]
            unit_keys += keys
        parts.append(wav)
        offset += len(wav)
    if not parts:
        return np.zeros(0, np.int16), VOICE_RATE, None
    audio = np.concatenate(parts)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    ends = _word_ends(voice, text, unit_ends, unit_keys) if voice.timed else None
    return pcm, VOICE_RATE, ends


def _word_ends(
    voice: _Voice, text: str, unit_ends: list[float], unit_keys: list[str]
) -> tuple[float, ...] | None:
    """Each word's end: phoneme groups matched to each word's phonemes said alone (one G2P call
    with every word as its own sentence), since the front end spells "4:30" as two groups."""
    words = text.split()
    if not words or not unit_ends:
        return None
    bare = [word.strip(PUNCTUATION) or word for word in words]
    said = [part.strip() for part in voice.g2p("! ".join(bare) + "!").split("!")][:-1]
    if len(said) != len(words):
        return word_ends_for(text, unit_ends)
    return word_ends_for(
        text, unit_ends, word_keys=[phoneme_key(s) for s in said], unit_keys=unit_keys
    )


def synthesize(
    text: str,
    rate: int,
    *,
    speed: float = 1.0,
    pitch_semitones: float = 0.0,
    seed: int | None = 0,
) -> PCM:
    """Speak ``text`` as int16 PCM at ``rate`` (blocking; loads the voice on first use).

    ``pitch_semitones`` shifts the pitch (and formants: a different-sounding speaker) while
    keeping the tempo: hibari renders the speech slower by the pitch factor, and the samples are
    then played back faster by the same factor (resampled as if recorded at a higher rate).
    """
    factor = 2.0 ** (pitch_semitones / 12.0)
    pcm, voice_rate, _ = _render(1, text, max(0.5, min(2.0, speed / factor)), seed)
    if not pcm.size:
        return pcm
    source_rate = pitch_source_rate(voice_rate, factor)
    return resample(pcm, source_rate, rate) if source_rate != rate else pcm


# --- the stage ----------------------------------------------------------------------------------


class Hibari(LocalVoice):
    type_name = "hibari"
    description = (
        "Speaks the agent's reply offline with hibari, an Apache-2.0 English voice "
        "(onnxruntime, CPU)."
    )
    Params = HibariParams
    pool_name = POOL_NAME

    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """Load the voice at service start so the first reply does not wait for it."""
        assert isinstance(params, HibariParams)
        await asyncio.to_thread(_get_voice, params.threads)
        # Warm onnxruntime and the G2P up (their first run allocates); the first caller gets a
        # fast reply.
        await asyncio.to_thread(_render, params.threads, _WARM_UP, 1.0, 0)

    def renderer(self, text: str) -> Callable[[], Rendered]:
        p: HibariParams = self.params
        return functools.partial(_render, p.threads, text, p.speed, p.seed)
