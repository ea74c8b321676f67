"""What every voice synthesised in this process must do, checked on each (hibari, Piper): agent
text to audible speech at the stream's rate, in order, sentence by sentence; a barge-in that
stops the rest of the reply; no download; and speech, without word timings, when ``onnx`` is
missing. What only one voice has (seed, speakers, its own front end) is in its own file."""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.frames import AgentAudio, AgentText, Dtmf, Frame
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.process_cache import ProcessCache
from voicebridge.runtime.workers import pool_stats
from voicebridge.stages.tts import hibari, piper
from voicebridge.stages.tts.local_voice import LocalVoice
from voicebridge.testing.harness import run_stages

from .voice_checks import assert_speech, audio_of, rms

RATES = [8000, 16000]


@dataclass(frozen=True)
class Voice:
    name: str
    stage: type[LocalVoice]
    module: ModuleType
    load: Callable[[], object]  # loads the default voice into the process-wide cache
    steady: dict[str, Any] = field(default_factory=dict)  # params that make its audio repeatable
    barge_in_sentences: int = 12  # enough that the reply is still being made when a caller speaks

    def fresh_cache(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The next use loads the voice anew (the process-wide one is back after the test)."""
        monkeypatch.setattr(self.module, "_voices", ProcessCache(self.module._load_voice))


VOICES = [
    Voice(
        "hibari",
        hibari.Hibari,
        hibari,
        load=lambda: hibari._get_voice(hibari.HibariParams().threads),
        barge_in_sentences=40,  # it renders fast: the reply must outlast the first sentence
    ),
    Voice(
        "piper",
        piper.Piper,
        piper,
        load=lambda: piper._get_voice(piper._voice_key(None)),
        steady={"noise_scale": 0.0, "noise_w": 0.0},  # hibari is steady already (seed 0)
    ),
]


@pytest.fixture(scope="module", params=VOICES, ids=[v.name for v in VOICES])
def voice(request: pytest.FixtureRequest) -> Voice:
    """Each voice, loaded once (the cache is process-wide)."""
    chosen: Voice = request.param
    chosen.load()
    return chosen


@pytest.mark.parametrize("rate", RATES)
async def test_each_sentence_becomes_audio_at_the_stream_rate(voice: Voice, rate: int) -> None:
    frames: list[Frame] = [
        AgentText("What time do you open tomorrow?", turn=1, last=False),
        Dtmf("1"),
        AgentText("We open at nine.", turn=1, last=True),
    ]
    run = await run_stages([voice.stage()], frames, info=CallInfo(sample_rate=rate))
    assert not run.errors
    first, second = audio_of(run.frames)
    assert (first.turn, first.text, first.last) == (1, "What time do you open tomorrow?", False)
    assert (second.turn, second.text, second.last) == (1, "We open at nine.", True)
    assert_speech(first, rate)
    assert_speech(second, rate)
    assert len(first.pcm) > len(second.pcm)  # the longer sentence takes longer to say
    kinds = [type(f).__name__ for f in run.frames[1:]]
    assert kinds == ["AgentAudio", "Dtmf", "AgentAudio"]  # other frames pass through, in order


async def test_a_long_piece_is_split_into_sentences(voice: Voice) -> None:
    text = "Thanks for calling. We are open from nine to five. Goodbye!"
    run = await run_stages(
        [voice.stage()],
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


async def test_sentence_silence_is_appended(voice: Voice) -> None:
    frames, info = [AgentText("Hello there.", turn=1)], CallInfo(sample_rate=8000)
    plain_run = await run_stages([voice.stage(**voice.steady)], frames, info=info)
    padded_run = await run_stages(
        [voice.stage(sentence_silence_ms=250, **voice.steady)], frames, info=info
    )
    plain, padded = audio_of(plain_run.frames)[0], audio_of(padded_run.frames)[0]
    assert len(padded.pcm) - len(plain.pcm) == 2000
    assert not padded.pcm[-2000:].any()


async def test_an_empty_final_piece_still_ends_the_turn(voice: Voice) -> None:
    run = await run_stages([voice.stage()], [AgentText("  ", turn=2, last=True)])
    (piece,) = audio_of(run.frames)
    assert piece.last and piece.turn == 2 and piece.text == ""
    assert len(piece.pcm) == 160 and not piece.pcm.any()


async def test_barge_in_cancels_synthesis_cleanly(voice: Voice) -> None:
    ctx = CallContext(CallInfo(sample_rate=8000))
    out: list[Frame] = []
    first_audio = asyncio.Event()

    async def sink(frame: Frame) -> None:
        out.append(frame)
        first_audio.set()

    errors: list[BaseException] = []
    pipeline = Pipeline([voice.stage()], ctx, sink, on_error=lambda stage, exc: errors.append(exc))
    await pipeline.start()
    count = voice.barge_in_sentences
    try:
        old = ctx.begin_turn()
        many = " ".join(f"This is sentence number {n} of a long answer." for n in range(count))
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
    assert 1 <= len(old_pieces) <= heard_before < count
    assert [f.text for f in out if isinstance(f, AgentAudio) and f.turn == new] == [
        "Sorry, go ahead."
    ]
    deadline = time.monotonic() + 5
    while pool_stats()[voice.stage.pool_name].outstanding:  # the discarded job's thread finishes
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_the_voice_loads_and_speaks_without_any_download(
    voice: Voice, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{voice.name} tried to download something")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    voice.fresh_cache(monkeypatch)  # a fresh load, from the installed packages only
    await voice.stage.preload(voice.stage.Params())
    run = await run_stages([voice.stage()], [AgentText("Thanks for calling.", turn=1)])
    (piece,) = audio_of(run.frames)
    assert not run.errors and rms(piece.pcm) > 1000
    assert piece.word_ends_ms is not None and len(piece.word_ends_ms) == 3


async def test_without_onnx_it_still_speaks_and_the_ledger_falls_back(
    voice: Voice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes its import fail
    voice.fresh_cache(monkeypatch)
    run = await run_stages([voice.stage()], [AgentText("We open at nine.", turn=1)])
    (piece,) = audio_of(run.frames)
    assert not run.errors and rms(piece.pcm) > 1000
    assert piece.word_ends_ms is None
