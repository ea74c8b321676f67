"""What the offline ``piper`` stage has of its own: rates that keep the duration, speakers, a
voice file of the user's, espeak's word groups, a pitch-shifted helper. What every local voice
must do is checked in ``test_local_voices.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import pytest

from voicebridge.call.context import CallInfo
from voicebridge.frames import PCM, AgentText
from voicebridge.runtime.stage import StageError
from voicebridge.stages.offline_models import piper_voice_path
from voicebridge.stages.tts.piper import Piper, PiperParams, _get_voice, _voice_key, synthesize
from voicebridge.testing.harness import run_stages

from .voice_checks import audio_of, rms, spectral_centroid

RATES = [8000, 16000]


@pytest.fixture(scope="module")
def voice_loaded() -> float:
    """Load the voice once (the cache is process-wide); returns the load time in seconds."""
    began = time.perf_counter()
    _get_voice(_voice_key(None))
    return time.perf_counter() - began


async def test_resampling_keeps_duration_across_rates(voice_loaded: float) -> None:
    text = "Thank you for calling."
    params = {"noise_scale": 0.0, "noise_w": 0.0}  # deterministic, so both rates say the same
    runs = [
        await run_stages(
            [Piper(**params)],
            [AgentText(text, turn=1)],
            info=CallInfo(sample_rate=rate),
        )
        for rate in RATES
    ]
    low, high = (audio_of(run.frames)[0] for run in runs)
    assert len(low.pcm) / 8000 == pytest.approx(len(high.pcm) / 16000, abs=0.002)


def test_synthesize_helper_can_sound_like_someone_else(voice_loaded: float) -> None:
    def say(pitch_semitones: float = 0.0, length_scale: float = 1.0) -> PCM:
        text = "I would like to book a table for two."
        return synthesize(
            text,
            16000,
            pitch_semitones=pitch_semitones,
            length_scale=length_scale,
            noise_scale=0.0,
            noise_w=0.0,
        )

    plain, higher, slower = say(), say(pitch_semitones=4.0), say(length_scale=1.3)
    assert plain.dtype == np.int16 and rms(plain) > 1000
    # A pitch shift roughly keeps the tempo but moves the spectrum up by ~2^(4/12).
    assert len(higher) == pytest.approx(len(plain), rel=0.15)
    ratio = spectral_centroid(higher, 16000) / spectral_centroid(plain, 16000)
    assert 1.12 < ratio < 1.45, ratio
    assert 1.08 < len(slower) / len(plain) < 1.4  # slower (Piper stretches pauses less)


async def test_preload_checks_the_speaker_and_shares_the_voice(voice_loaded: float) -> None:
    await Piper.preload(PiperParams())
    assert _get_voice(_voice_key(None)) is _get_voice(_voice_key(piper_voice_path()))
    with pytest.raises(StageError, match="speaker 3 out of range"):
        await Piper.preload(PiperParams(speaker=3))


def test_a_missing_voice_file_is_a_clear_error(tmp_path: object) -> None:
    make: Callable[..., PiperParams] = PiperParams
    with pytest.raises(StageError, match=r"\.onnx\.json beside it"):
        asyncio.run(Piper.preload(make(voice_path=f"{tmp_path}/nope.onnx")))


@pytest.mark.parametrize("rate", RATES)
async def test_each_piece_carries_the_end_of_each_word(rate: int, voice_loaded: float) -> None:
    text = "We open at nine of the clock, call 42 times."
    run = await run_stages([Piper()], [AgentText(text, turn=1)], info=CallInfo(sample_rate=rate))
    (piece,) = audio_of(run.frames)
    ends = piece.word_ends_ms
    assert ends is not None and len(ends) == len(text.split())
    assert list(ends) == sorted(ends) and ends[0] > 0
    duration_ms = 1000 * len(piece.pcm) / rate
    assert ends[-1] <= duration_ms
    assert ends[4] == ends[5]  # espeak says "of the" as one group: both end with it
    # The last word's end is where the voice falls quiet: loud just before, quiet after.
    end = int(ends[-1] * rate / 1000)
    window = rate // 20
    assert rms(piece.pcm[end - 2 * window : end]) > 4 * rms(piece.pcm[end + window // 2 :])
