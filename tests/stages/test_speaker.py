"""The shared speaking loop of every TTS stage, driven through a tiny provider on a virtual clock.

The fake provider "says" each character as 1 ms of a constant sample at its own rate, after a
virtual delay, so every piece's length, rate and timing is exact.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.clock import VirtualClock
from voicebridge.frames import AgentAudio, AgentText, Dtmf, Frame, Hangup, Transfer
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.stage import StageParams
from voicebridge.stages.tts.speaker import EMPTY_TURN_END_MS, Speaker, Speech
from voicebridge.testing.harness import StageRun, run_stages


class FakeSpeaker(Speaker):
    type_name = "fake_speaker"
    description = "Says each character as 1 ms of a constant sample."

    class Params(StageParams):
        rate: int = 8000  # the rate the "provider" makes audio at
        delay_s: float = 0.1  # virtual time one request takes
        fail_on: str = ""  # a piece that raises ProviderError

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.requested: list[str] = []
        self.cancelled: list[str] = []
        self.on_request: Any = None  # called with each piece, before its audio is made

    async def synthesize(self, text: str) -> Speech:
        self.requested.append(text)
        if self.on_request is not None:
            self.on_request(text)
        try:
            await self.ctx.clock.sleep(self.params.delay_s)
        except asyncio.CancelledError:
            self.cancelled.append(text)
            raise
        if text == self.params.fail_on:
            raise ProviderError(self.name, "fake", "unavailable", "down")
        rate = self.params.rate
        words = [w for w in text.split() if w.strip(".!?")]  # punctuation alone is not said
        samples = sum(len(w) for w in words) * rate // 1000
        ends = tuple(float(sum(len(w) for w in words[: k + 1])) for k in range(len(words)))
        return Speech(np.full(samples, 1000, np.int16), rate, ends or None)


class ClosingSpeaker(FakeSpeaker):
    type_name = "closing_speaker"
    close_turn_on_error = True


def audio(frames: list[Frame]) -> list[AgentAudio]:
    return [f for f in frames if isinstance(f, AgentAudio)]


async def speak(stage: Speaker, frames: list[Frame], rate: int = 8000) -> StageRun:
    """Run ``frames`` through ``stage`` and let a virtual second pass for its requests."""
    info = CallInfo(sample_rate=rate)
    return await run_stages([stage], frames, info=info, clock=VirtualClock(), settle_s=1.0)


async def test_each_sentence_is_one_piece_and_only_the_final_one_is_last() -> None:
    stage = FakeSpeaker()
    run = await speak(
        stage,
        [
            AgentText("Hello there. How are you?", turn=1, last=False),
            AgentText("Bye now.", turn=1, last=True),
        ],
    )
    assert not run.errors
    pieces = audio(run.frames)
    assert [(p.text, p.last, p.turn) for p in pieces] == [
        ("Hello there.", False, 1),
        ("How are you?", False, 1),
        ("Bye now.", True, 1),
    ]
    assert stage.requested == ["Hello there.", "How are you?", "Bye now."]
    # 1 ms per character said, at 8 kHz; each word's end comes through untouched.
    assert [len(p.pcm) for p in pieces] == [8 * 11, 8 * 10, 8 * 7]
    assert pieces[0].word_ends_ms == (5.0, 11.0)


async def test_a_single_sentence_keeps_the_pieces_own_text() -> None:
    run = await speak(FakeSpeaker(), [AgentText("Just this one.  ", turn=2)])
    (piece,) = audio(run.frames)
    assert piece.text == "Just this one.  " and piece.last


async def test_audio_at_another_rate_is_resampled_to_the_stream_rate() -> None:
    run = await speak(FakeSpeaker(rate=24000), [AgentText("Resample me.", turn=1)])
    (piece,) = audio(run.frames)
    assert piece.pcm.dtype == np.int16 and len(piece.pcm) == 8 * 11  # 11 ms at 8 kHz


async def test_an_empty_final_piece_ends_the_turn_with_silence() -> None:
    stage = FakeSpeaker()
    run = await speak(
        stage, [AgentText("   ", turn=3, last=False), AgentText("", turn=3, last=True)], 16000
    )
    (piece,) = audio(run.frames)  # the empty non-final piece says nothing at all
    assert (piece.turn, piece.text, piece.last) == (3, "", True)
    assert len(piece.pcm) == EMPTY_TURN_END_MS * 16 and not piece.pcm.any()
    assert stage.requested == []


async def test_a_final_sentence_with_nothing_to_say_still_ends_the_turn() -> None:
    run = await speak(FakeSpeaker(), [AgentText("Okay. ...", turn=1, last=True)])
    said, closing = audio(run.frames)
    assert (said.text, said.last) == ("Okay.", False)
    assert (closing.text, closing.last, closing.word_ends_ms) == ("...", True, None)
    assert len(closing.pcm) == EMPTY_TURN_END_MS * 8 and not closing.pcm.any()


async def test_hangup_transfer_and_other_frames_pass_in_order() -> None:
    run = await speak(
        FakeSpeaker(),
        [
            AgentText("Goodbye.", turn=1),
            Dtmf("5"),
            Transfer("+14155550123"),
            Hangup("agent"),
        ],
    )
    kinds = [type(f).__name__ for f in run.frames[1:]]  # after CallStarted
    assert kinds == ["AgentAudio", "Dtmf", "Transfer", "Hangup"]


async def test_a_turn_gone_stale_between_sentences_requests_no_more() -> None:
    stage = FakeSpeaker()

    def barge_in(text: str) -> None:
        stage.ctx.invalidate_turns()  # the caller speaks while the first sentence is made

    stage.on_request = barge_in
    clock = VirtualClock()
    ctx = CallContext(CallInfo(), clock=clock)
    turn = ctx.begin_turn()
    out: list[Frame] = []

    async def sink(frame: Frame) -> None:
        out.append(frame)

    pipeline = Pipeline([stage], ctx, sink)
    await pipeline.start()
    try:
        await pipeline.push(AgentText("One. Two. Three.", turn=turn))
        await clock.advance(1.0)
        await pipeline.drain()
    finally:
        await pipeline.stop()
    assert stage.requested == ["One."]  # "Two." and "Three." never requested
    assert audio(out) == []  # the stale first sentence is dropped on its way out


async def test_interrupt_cancels_the_request_in_flight_and_the_next_turn_is_spoken() -> None:
    stage = FakeSpeaker(delay_s=1.0)
    clock = VirtualClock()
    ctx = CallContext(CallInfo(), clock=clock)
    out: list[Frame] = []

    async def sink(frame: Frame) -> None:
        out.append(frame)

    pipeline = Pipeline([stage], ctx, sink)
    await pipeline.start()
    try:
        old = ctx.begin_turn()
        await pipeline.push(AgentText("Long answer. More of it.", turn=old))
        await clock.advance(0.5)  # halfway through the first request
        assert stage.active_turn == old
        assert pipeline.interrupt() == old
        new = ctx.begin_turn()
        await pipeline.push(AgentText("Go ahead.", turn=new))
        await clock.advance(2.0)
    finally:
        await pipeline.stop()
    assert stage.cancelled == ["Long answer."]
    assert stage.requested == ["Long answer.", "Go ahead."]
    assert [(a.turn, a.text) for a in audio(out)] == [(new, "Go ahead.")]
    assert stage.active_turn is None


async def test_a_failed_final_piece_closes_its_turn_only_when_the_speaker_asks() -> None:
    frames = [AgentText("Fine. Broken.", turn=1, last=True)]
    plain = await speak(FakeSpeaker(fail_on="Broken."), frames)
    closing = await speak(ClosingSpeaker(fail_on="Broken."), frames)
    assert [(a.text, a.last) for a in audio(plain.frames)] == [("Fine.", False)]
    assert [(a.text, a.last) for a in audio(closing.frames)] == [("Fine.", False), ("", True)]
    assert plain.errors == [] and closing.errors == []  # a provider error ends only the turn
