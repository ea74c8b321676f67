"""What the offline ``hibari`` stage (the default voice) has of its own: a seed that makes speech
repeatable, each word's end from its own front end, a pitch-shifted helper, its place as the
default. What every local voice must do is checked in ``test_local_voices.py``."""

from __future__ import annotations

import time

import numpy as np
import pytest

from voicebridge.call.context import CallInfo
from voicebridge.frames import PCM, AgentText
from voicebridge.runtime.registry import BUILTIN_EXTRAS, resolve_stage
from voicebridge.stages.tts import hibari as module
from voicebridge.stages.tts.hibari import Hibari, HibariParams, synthesize
from voicebridge.testing.harness import run_stages

from .voice_checks import audio_of, rms, spectral_centroid

RATES = [8000, 16000]


@pytest.fixture(scope="module")
def voice_loaded() -> float:
    """Load the voice once (the cache is process-wide); returns the load time in seconds."""
    began = time.perf_counter()
    module._get_voice(HibariParams().threads)
    return time.perf_counter() - began


async def test_the_seed_makes_speech_repeatable_and_rates_keep_its_duration(
    voice_loaded: float,
) -> None:
    text = "Thank you for calling."

    async def say(rate: int, seed: int | None = 0) -> PCM:
        run = await run_stages(
            [Hibari(seed=seed)], [AgentText(text, turn=1)], info=CallInfo(sample_rate=rate)
        )
        (piece,) = audio_of(run.frames)
        return piece.pcm

    low, high, again = await say(8000), await say(16000), await say(16000)
    assert np.array_equal(high, again)  # same text, same seed: the same audio
    assert len(high) == pytest.approx(2 * len(low), abs=4)
    assert not np.array_equal(await say(16000, seed=None), high)  # unseeded: the noise varies


@pytest.mark.parametrize("rate", RATES)
async def test_each_piece_carries_the_end_of_each_word(rate: int, voice_loaded: float) -> None:
    text = "Your table is booked for 7:30 tonight, Mr. Okafor."
    run = await run_stages([Hibari()], [AgentText(text, turn=1)], info=CallInfo(sample_rate=rate))
    (piece,) = audio_of(run.frames)
    ends = piece.word_ends_ms
    assert ends is not None and len(ends) == len(text.split())
    assert all(isinstance(end, float) for end in ends)
    assert list(ends) == sorted(ends) and ends[0] > 0
    # "7:30" is said as two words ("seven thirty") and still ends once, after "for".
    assert ends[4] < ends[5] < ends[6]
    duration_ms = 1000 * len(piece.pcm) / rate
    assert ends[-1] <= duration_ms
    # The last word ends with the voice, not before it (the model gives a final phoneme the
    # quiet after it too, so the end may come late, which the ledger counts safely).
    ms10 = piece.pcm[: len(piece.pcm) // (rate // 100) * (rate // 100)].reshape(-1, rate // 100)
    loudness = np.sqrt(np.mean(np.square(ms10.astype(np.float64)), axis=1))
    last_loud_ms = 10 * (int(np.nonzero(loudness > 0.1 * loudness.max())[0][-1]) + 1)
    assert last_loud_ms - 60 <= ends[-1]
    assert rms(piece.pcm[int(ends[-1] * rate / 1000) :]) < 0.05 * rms(piece.pcm)


def test_synthesize_helper_can_sound_like_someone_else(voice_loaded: float) -> None:
    text = "I would like to book a table for two."
    plain, higher = synthesize(text, 16000), synthesize(text, 16000, pitch_semitones=4.0)
    slower = synthesize(text, 16000, speed=0.8)
    assert plain.dtype == np.int16 and rms(plain) > 1000
    # A pitch shift keeps the tempo but moves the spectrum up (by up to 2^(4/12)).
    assert len(higher) == pytest.approx(len(plain), rel=0.1)
    ratio = spectral_centroid(higher, 16000) / spectral_centroid(plain, 16000)
    assert 1.08 < ratio < 1.45, ratio
    assert 1.1 < len(slower) / len(plain) < 1.4


def test_it_is_the_default_offline_voice_and_piper_is_opt_in() -> None:
    assert resolve_stage("hibari") is Hibari
    assert BUILTIN_EXTRAS["hibari"] == "offline"
    assert BUILTIN_EXTRAS["piper"] == "piper"  # GPL-3.0: never in the default install
