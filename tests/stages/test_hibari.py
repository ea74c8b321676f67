"""The offline ``hibari`` stage (the default voice): agent text to audible speech at the stream's
rate, in order, with each word's end, and never a download."""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request

import numpy as np
import pytest

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.frames import PCM, AgentAudio, AgentText, Dtmf, Frame
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.registry import BUILTIN_EXTRAS, resolve_stage
from voicebridge.runtime.workers import pool_stats
from voicebridge.stages.tts import hibari as module
from voicebridge.stages.tts.hibari import Hibari, HibariParams, synthesize
from voicebridge.testing.harness import run_stages

RATES = [8000, 16000]


@pytest.fixture(scope="module")
def voice_loaded() -> float:
    """Load the voice once (the cache is process-wide); returns the load time in seconds."""
    began = time.perf_counter()
    module._get_voice(HibariParams().threads)
    return time.perf_counter() - began


def rms(pcm: PCM) -> float:
    return float(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))))


def audio_of(frames: list[Frame]) -> list[AgentAudio]:
    return [f for f in frames if isinstance(f, AgentAudio)]


def assert_speech(piece: AgentAudio, rate: int) -> None:
    assert piece.pcm.dtype == np.int16 and piece.pcm.ndim == 1
    seconds = len(piece.pcm) / rate
    assert 0.3 <= seconds <= 5.0, seconds
    assert rms(piece.pcm) > 1000, rms(piece.pcm)  # speech, not silence or a whisper


@pytest.mark.parametrize("rate", RATES)
async def test_each_sentence_becomes_audio_at_the_stream_rate(
    rate: int, voice_loaded: float
) -> None:
    frames: list[Frame] = [
        AgentText("What time do you open tomorrow?", turn=1, last=False),
        Dtmf("1"),
        AgentText("We open at nine.", turn=1, last=True),
    ]
    run = await run_stages([Hibari()], frames, info=CallInfo(sample_rate=rate))
    assert not run.errors
    first, second = audio_of(run.frames)
    assert (first.turn, first.text, first.last) == (1, "What time do you open tomorrow?", False)
    assert (second.turn, second.text, second.last) == (1, "We open at nine.", True)
    assert_speech(first, rate)
    assert_speech(second, rate)
    assert len(first.pcm) > len(second.pcm)  # the longer sentence takes longer to say
    kinds = [type(f).__name__ for f in run.frames[1:]]
    assert kinds == ["AgentAudio", "Dtmf", "AgentAudio"]  # other frames pass through, in order


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


async def test_a_long_piece_is_split_into_sentences(voice_loaded: float) -> None:
    text = "Hello there. How can I help you today? We are open until six."
    run = await run_stages([Hibari()], [AgentText(text, turn=2, last=True)])
    pieces = audio_of(run.frames)
    assert [p.text for p in pieces] == [
        "Hello there.",
        "How can I help you today?",
        "We are open until six.",
    ]
    assert [p.last for p in pieces] == [False, False, True]
    assert all(p.turn == 2 for p in pieces)


async def test_sentence_silence_is_appended(voice_loaded: float) -> None:
    text, info = "Goodbye.", CallInfo(sample_rate=16000)
    plain_run = await run_stages([Hibari()], [AgentText(text, turn=1)], info=info)
    padded_run = await run_stages(
        [Hibari(sentence_silence_ms=250)], [AgentText(text, turn=1)], info=info
    )
    plain, padded = audio_of(plain_run.frames)[0], audio_of(padded_run.frames)[0]
    assert len(padded.pcm) - len(plain.pcm) == 250 * 16000 // 1000
    assert not padded.pcm[-4000:].any()


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


async def test_barge_in_cancels_synthesis_cleanly(voice_loaded: float) -> None:
    ctx = CallContext(CallInfo(sample_rate=8000))
    out: list[Frame] = []
    first_audio = asyncio.Event()

    async def sink(frame: Frame) -> None:
        out.append(frame)
        first_audio.set()

    errors: list[BaseException] = []
    pipeline = Pipeline([Hibari()], ctx, sink, on_error=lambda stage, exc: errors.append(exc))
    await pipeline.start()
    try:
        old = ctx.begin_turn()
        many = " ".join(f"This is sentence number {n} of a long answer." for n in range(40))
        await pipeline.push(AgentText(many, turn=old, last=True))
        await asyncio.wait_for(first_audio.wait(), 10)
        pipeline.interrupt()  # the caller speaks: the rest of the old reply must not be made
        heard_before = len(out)
        new = ctx.begin_turn()
        await pipeline.push(AgentText("Sorry, go ahead.", turn=new, last=True))
        deadline = time.monotonic() + 10
        while not any(isinstance(f, AgentAudio) and f.turn == new for f in out):
            assert time.monotonic() < deadline, "the new turn was never spoken"
            await asyncio.sleep(0.01)
    finally:
        await pipeline.stop()
    assert not errors
    old_pieces = [f for f in out if isinstance(f, AgentAudio) and f.turn == old]
    assert 1 <= len(old_pieces) <= heard_before < 40
    assert [f.text for f in out if isinstance(f, AgentAudio) and f.turn == new] == [
        "Sorry, go ahead."
    ]
    deadline = time.monotonic() + 5
    while pool_stats()["hibari"].outstanding:  # the discarded job's thread finishes, slot freed
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


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


def spectral_centroid(pcm: PCM, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    band = freqs < 4000  # where the voice's energy is, below the 8 kHz Nyquist of the test rate
    return float(np.sum(freqs[band] * spectrum[band]) / np.sum(spectrum[band]))


async def test_the_voice_loads_and_speaks_without_any_download(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("hibari tried to download something")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(module, "_voices", {})  # a fresh load, from the installed package only
    await Hibari.preload(HibariParams(threads=2))
    pcm, ends = module._render(2, "Thanks for calling.", 1.0, 0)
    assert rms(pcm) > 1000 and ends is not None and len(ends) == 3


async def test_without_onnx_it_still_speaks_and_the_ledger_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes its import fail
    monkeypatch.setattr(module, "_voices", {})
    run = await run_stages([Hibari()], [AgentText("We open at nine.", turn=1)])
    (piece,) = audio_of(run.frames)
    assert not run.errors and rms(piece.pcm) > 1000
    assert piece.word_ends_ms is None


def test_it_is_the_default_offline_voice_and_piper_is_opt_in() -> None:
    assert resolve_stage("hibari") is Hibari
    assert BUILTIN_EXTRAS["hibari"] == "offline"
    assert BUILTIN_EXTRAS["piper"] == "piper"  # GPL-3.0: never in the default install
