"""The offline ``piper`` stage: agent text to audible speech at the stream's rate, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import pytest

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.frames import PCM, AgentAudio, AgentText, Dtmf, Frame
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.stage import StageError
from voicebridge.runtime.workers import pool_stats
from voicebridge.stages.offline_models import piper_voice_path
from voicebridge.stages.tts.piper import Piper, PiperParams, _get_voice, _voice_key, synthesize
from voicebridge.testing.harness import run_stages

RATES = [8000, 16000]


@pytest.fixture(scope="module")
def voice_loaded() -> float:
    """Load the voice once (the cache is process-wide); returns the load time in seconds."""
    began = time.perf_counter()
    _get_voice(_voice_key(None))
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
    run = await run_stages([Piper()], frames, info=CallInfo(sample_rate=rate))
    assert not run.errors
    first, second = audio_of(run.frames)
    assert (first.turn, first.text, first.last) == (1, "What time do you open tomorrow?", False)
    assert (second.turn, second.text, second.last) == (1, "We open at nine.", True)
    assert_speech(first, rate)
    assert_speech(second, rate)
    assert len(first.pcm) > len(second.pcm)  # the longer sentence takes longer to say
    # Other frames pass through, in order.
    kinds = [type(f).__name__ for f in run.frames[1:]]
    assert kinds == ["AgentAudio", "Dtmf", "AgentAudio"]


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


async def test_a_long_piece_is_split_into_sentences(voice_loaded: float) -> None:
    text = "Thanks for calling. We are open from nine to five. Goodbye!"
    run = await run_stages(
        [Piper()],
        [AgentText(text, turn=3, last=True), AgentText("Anything else?", turn=3, last=False)],
        info=CallInfo(sample_rate=8000),
    )
    pieces = audio_of(run.frames)
    assert [p.text for p in pieces] == [
        "Thanks for calling.",
        "We are open from nine to five.",
        "Goodbye!",
        "Anything else?",
    ]
    assert [p.last for p in pieces] == [False, False, True, False]
    assert {p.turn for p in pieces} == {3}
    for piece in pieces:
        assert_speech(piece, 8000)


async def test_sentence_silence_is_appended(voice_loaded: float) -> None:
    params = {"noise_scale": 0.0, "noise_w": 0.0}
    frames = [AgentText("Hello there.", turn=1)]
    info = CallInfo(sample_rate=8000)
    plain = audio_of((await run_stages([Piper(**params)], frames, info=info)).frames)[0]
    padded = audio_of(
        (await run_stages([Piper(sentence_silence_ms=250, **params)], frames, info=info)).frames
    )[0]
    assert len(padded.pcm) - len(plain.pcm) == 2000
    assert not padded.pcm[-2000:].any()


async def test_an_empty_final_piece_still_ends_the_turn(voice_loaded: float) -> None:
    run = await run_stages([Piper()], [AgentText("  ", turn=2, last=True)])
    (piece,) = audio_of(run.frames)
    assert piece.last and piece.turn == 2 and piece.text == ""
    assert len(piece.pcm) == 160 and not piece.pcm.any()


async def test_barge_in_cancels_synthesis_cleanly(voice_loaded: float) -> None:
    ctx = CallContext(CallInfo(sample_rate=8000))
    out: list[Frame] = []
    first_audio = asyncio.Event()

    async def sink(frame: Frame) -> None:
        out.append(frame)
        first_audio.set()

    errors: list[BaseException] = []
    pipeline = Pipeline([Piper()], ctx, sink, on_error=lambda stage, exc: errors.append(exc))
    await pipeline.start()
    try:
        old = ctx.begin_turn()
        many = " ".join(f"This is sentence number {n} of a long answer." for n in range(12))
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
    assert 1 <= len(old_pieces) <= heard_before < 12
    assert [f.text for f in out if isinstance(f, AgentAudio) and f.turn == new] == [
        "Sorry, go ahead."
    ]
    deadline = time.monotonic() + 5
    while pool_stats()["piper"].outstanding:  # the discarded job's thread finishes, slot freed
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


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


def spectral_centroid(pcm: PCM, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    band = freqs < 4000  # where the voice's energy is, below the 8 kHz Nyquist of the test rate
    return float(np.sum(freqs[band] * spectrum[band]) / np.sum(spectrum[band]))


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
