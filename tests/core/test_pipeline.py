import asyncio
import weakref
from dataclasses import replace

import numpy as np
import pytest
from structlog.testing import capture_logs

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.clock import VirtualClock
from voicebridge.frames import AgentText, AudioIn, Frame, MediaIn, SpeechEnded, Transcript
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.testing.harness import run_stages


class Upper(Stage):
    type_name = "upper"

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, Transcript):
            frame = replace(frame, text=frame.text.upper())
        await self.emit(frame)


class Reply(Stage):
    """Answers each transcript after a (virtual) thinking delay, as a slow LLM would."""

    type_name = "reply"

    class Params(StageParams):
        delay_s: float = 1.0

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, Transcript):
            turn = self.begin_turn()
            await self.ctx.clock.sleep(self.params.delay_s)
            await self.emit(AgentText(f"you said {frame.text}", turn=turn))


class Boom(Stage):
    async def process(self, frame: Frame) -> None:
        if isinstance(frame, Transcript):
            raise RuntimeError("provider exploded")
        await self.emit(frame)


async def test_frames_flow_through_stages_in_order() -> None:
    run = await run_stages(
        [Upper(), Reply(delay_s=0.5)],
        [Transcript("hello"), Transcript("again")],
        settle_s=2.0,
    )
    texts = [f.text for f in run.of(AgentText)]  # type: ignore[attr-defined]
    assert texts == ["you said HELLO", "you said AGAIN"]
    assert [f.turn for f in run.of(AgentText)] == [1, 2]  # type: ignore[attr-defined]


async def test_stage_failure_is_reported_not_raised() -> None:
    run = await run_stages([Boom()], [Transcript("x")])
    assert len(run.errors) == 1 and "provider exploded" in str(run.errors[0])


async def test_interrupt_cancels_work_for_stale_turn_and_drops_its_frames() -> None:
    clock = VirtualClock()
    ctx = CallContext(CallInfo(), clock=clock)
    out: list[Frame] = []

    async def sink(frame: Frame) -> None:
        out.append(frame)

    reply = Reply(delay_s=1.0)
    pipeline = Pipeline([reply], ctx, sink)
    await pipeline.start()
    await pipeline.push(Transcript("first"))
    await clock.advance(0.5)
    assert reply.active_turn == 1
    assert pipeline.interrupt() == 1
    await clock.advance(2.0)
    assert not any(isinstance(f, AgentText) for f in out)  # the reply was cancelled
    # The stage keeps working for the next turn.
    await pipeline.push(Transcript("second"))
    await clock.advance(2.0)
    assert [f.text for f in out if isinstance(f, AgentText)] == ["you said second"]
    await pipeline.stop()


async def test_stale_frames_are_dropped_at_emit() -> None:
    clock = VirtualClock()
    ctx = CallContext(CallInfo(), clock=clock)
    out: list[Frame] = []

    async def sink(frame: Frame) -> None:
        out.append(frame)

    pipeline = Pipeline([Stage()], ctx, sink)
    await pipeline.start()
    ctx.begin_turn()
    ctx.turns.invalidate()
    await pipeline.push(AgentText("old", turn=1))
    await pipeline.push(AgentText("new", turn=2))
    await clock.settle()
    await pipeline.stop()
    assert [f.text for f in out if isinstance(f, AgentText)] == ["new"]


async def test_caller_audio_overflow_drops_oldest_and_counts() -> None:
    ctx = CallContext(CallInfo())
    gate = asyncio.Event()

    class Stuck(Stage):
        async def process(self, frame: Frame) -> None:
            await gate.wait()

    async def sink(frame: Frame) -> None:
        return None

    pipeline = Pipeline([Stuck()], ctx, sink, queue_size=4)
    await pipeline.start()
    for i in range(10):
        await pipeline.push(MediaIn(b"\0\0", float(i)))
    assert pipeline.dropped_frames >= 5
    gate.set()
    await pipeline.stop()


async def test_start_failure_stops_started_stages() -> None:
    stopped: list[str] = []

    class Good(Stage):
        async def stop(self) -> None:
            stopped.append("good")

    class Bad(Stage):
        async def start(self) -> None:
            raise RuntimeError("cannot open provider stream")

    pipeline = Pipeline([Good(), Bad()], CallContext(CallInfo()), lambda f: asyncio.sleep(0))
    with pytest.raises(RuntimeError, match="cannot open"):
        await pipeline.start()
    assert stopped == ["good"]


class Seen(Stage):
    """Records every frame it is given, passes it on."""

    type_name = "seen"

    def __init__(self, params: StageParams | None = None, /, **kwargs: object) -> None:
        super().__init__(params, **kwargs)
        self.seen: list[Frame] = []

    async def process(self, frame: Frame) -> None:
        self.seen.append(frame)
        await self.emit(frame)


class SkipsAudio(Seen):
    passthrough = (AudioIn,)


async def test_passthrough_frames_go_around_the_stage() -> None:
    """A stage that declares caller audio as passthrough never gets it; the stages after it and
    the sink still do, and it still sees every other frame."""
    first, skipper, last = Seen(), SkipsAudio(), Seen()
    audio = [AudioIn(np.zeros(160, np.int16), 20.0 * k) for k in range(3)]
    run = await run_stages([first, skipper, last], [*audio, Transcript("hello")])
    assert [f for f in first.seen if isinstance(f, AudioIn)] == audio
    assert not any(isinstance(f, AudioIn) for f in skipper.seen)
    assert any(isinstance(f, Transcript) for f in skipper.seen)
    assert [f for f in last.seen if isinstance(f, AudioIn)] == audio
    assert run.of(AudioIn) == audio
    assert [f.text for f in run.of(Transcript)] == ["hello"]  # type: ignore[attr-defined]


async def test_passthrough_at_the_tail_goes_to_the_sink() -> None:
    skipper = SkipsAudio()
    frame = AudioIn(np.zeros(160, np.int16), 0.0)
    run = await run_stages([Seen(), skipper], [frame])
    assert run.of(AudioIn) == [frame]
    assert skipper.seen and not any(isinstance(f, AudioIn) for f in skipper.seen)


class Listens(Seen):
    role = "dialogue"


@pytest.mark.parametrize("fails", [False, True])
async def test_final_transcripts_are_rewritten_at_the_dialogue_input(fails: bool) -> None:
    """``ctx.dialogue_input`` rewrites finals only, on their way into the dialogue stage: the
    stage before it saw the transcriber's words, the history tap the rewritten ones. A rewrite
    that raises is logged and the words go on as they were."""

    def rewrite(frame: Transcript) -> Transcript:
        if fails:
            raise ValueError("bad rewrite")
        return replace(frame, text=frame.text.replace("five", "5"))

    ctx = CallContext(CallInfo(), clock=VirtualClock())
    ctx.dialogue_input = rewrite
    before, dialogue = Seen(), Listens()
    heard: list[str] = []
    out: list[Frame] = []

    async def sink(frame: Frame) -> None:
        out.append(frame)

    pipeline = Pipeline(
        [before, dialogue], ctx, sink, on_dialogue_input=lambda frame: heard.append(frame.text)
    )
    with capture_logs() as logs:
        await pipeline.start()
        for frame in (Transcript("five", final=False), Transcript("five five")):
            await pipeline.push(frame)
        await pipeline.drain(5.0)
        await pipeline.stop()
    failures = [e for e in logs if e["event"] == "dialogue_input_rewrite_failed"]
    assert len(failures) == (1 if fails else 0)
    said = "five five" if fails else "5 5"
    assert [f.text for f in before.seen] == ["five", "five five"]  # type: ignore[attr-defined]
    assert [f.text for f in dialogue.seen] == ["five", said]  # type: ignore[attr-defined]
    assert heard == ["five", said]
    assert [f.text for f in out] == ["five", said]  # type: ignore[attr-defined]


class Hears(Stage):
    """Takes each utterance and passes on only its length, as a transcriber passes on text."""

    type_name = "hears"

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, SpeechEnded):
            await self.emit(Transcript(f"{len(frame.audio)} samples", final=True))


async def test_a_stage_waiting_for_its_next_frame_holds_no_utterance_audio() -> None:
    """Between turns a call keeps no caller audio alive: the stage's loop lets go of the frame
    it finished (an idle call held its last utterance, tens of KiB, until the next frame)."""
    ctx = CallContext(CallInfo(), clock=VirtualClock())
    out: list[Frame] = []

    async def sink(frame: Frame) -> None:
        out.append(frame)

    pipeline = Pipeline([Hears()], ctx, sink)
    await pipeline.start()
    audio = np.zeros(16000, np.int16)
    held = weakref.ref(audio)
    await pipeline.push(SpeechEnded(at_ms=1000.0, started_ms=0.0, audio=audio))
    await pipeline.wait_idle()
    del audio
    assert [f.text for f in out if isinstance(f, Transcript)] == ["16000 samples"]
    assert held() is None
    await pipeline.stop()
