"""Inline stages: called directly in the pusher's task, without a queue or a task of their own."""

from __future__ import annotations

import asyncio

import numpy as np

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.frames import AudioIn, Dtmf, Frame, MediaIn, Transcript
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.stage import Stage
from voicebridge.stages.decode import Decode
from voicebridge.stages.encode import Encode
from voicebridge.stages.vad import Vad

PCM = np.zeros(160, np.int16)


class Tagging(Stage):
    """Inline: notes the task it ran in, and passes everything on."""

    inline = True

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[asyncio.Task[object] | None] = []

    async def process(self, frame: Frame) -> None:
        self.tasks.append(asyncio.current_task())
        if isinstance(frame, MediaIn):
            frame = AudioIn(PCM, frame.timestamp_ms)
        await self.emit(frame)


class Stuck(Stage):
    """Queued (not inline): stalls on everything until the gate opens."""

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__()
        self.gate = gate
        self.seen: list[Frame] = []

    async def process(self, frame: Frame) -> None:
        self.seen.append(frame)
        await self.gate.wait()


def test_the_media_path_stages_are_inline() -> None:
    assert Decode.inline and Vad.inline and Encode.inline
    assert not Stage.inline  # a custom stage keeps its own queue and task unless it says so


async def test_an_inline_head_runs_in_the_pushers_task_and_has_no_task() -> None:
    out: list[Frame] = []

    async def sink(frame: Frame) -> None:
        out.append(frame)

    tagging = Tagging()
    pipeline = Pipeline([tagging], CallContext(CallInfo()), sink)
    await pipeline.start()
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert not any(name.startswith("stage-") for name in names)
    await pipeline.push(MediaIn(b"\0\0", 0.0))
    # Done by the time push returns: no queue, no task switch.
    assert tagging.tasks == [asyncio.current_task()]
    assert [type(f) for f in out] == [AudioIn]
    await pipeline.stop()


async def test_caller_audio_after_inline_stages_never_makes_the_reader_wait() -> None:
    """The first queue after an inline head takes the head's part: when it is full the oldest
    caller audio goes (counted), and a control frame still gets in without waiting."""
    gate = asyncio.Event()
    stuck = Stuck(gate)
    drops: list[int] = []
    pipeline = Pipeline(
        [Tagging(), stuck],
        CallContext(CallInfo()),
        lambda f: asyncio.sleep(0),
        queue_size=4,
        on_dropped=drops.append,
    )
    await pipeline.start()
    audio = [MediaIn(b"\0\0", 20.0 * i) for i in range(7)]
    await pipeline.push(audio[0])
    await asyncio.sleep(0)  # the queued stage takes it and stalls
    for frame in audio[1:5]:
        await pipeline.push(frame)  # fills its queue
    # A wait here would hang the test.
    await asyncio.wait_for(pipeline.push(Dtmf("5", at_ms=100.0)), 5)
    await asyncio.wait_for(pipeline.push(audio[5]), 5)
    gate.set()
    while len(stuck.seen) < 5:
        await asyncio.sleep(0)
    await pipeline.stop()
    stamps = [f.timestamp_ms if isinstance(f, AudioIn) else f for f in stuck.seen]
    assert stamps == [0.0, 60.0, 80.0, Dtmf("5", at_ms=100.0), 100.0]
    assert pipeline.dropped_frames == 2 and drops == [1, 1]


async def test_an_inline_stage_that_raises_is_reported_and_stops_seeing_frames() -> None:
    seen: list[Frame] = []

    class Faulty(Stage):
        inline = True

        async def process(self, frame: Frame) -> None:
            seen.append(frame)
            if isinstance(frame, Transcript) and frame.text == "provider":
                raise ProviderError("tts", "fake", "unavailable", "down")
            if isinstance(frame, Transcript) and frame.text == "bug":
                raise RuntimeError("a bug")
            await self.emit(frame)

    errors: list[BaseException] = []
    provider_errors: list[ProviderError] = []
    out: list[Frame] = []

    async def sink(frame: Frame) -> None:
        out.append(frame)

    pipeline = Pipeline(
        [Faulty()],
        CallContext(CallInfo()),
        sink,
        on_error=lambda stage, exc: errors.append(exc),
        on_provider_error=lambda stage, exc: provider_errors.append(exc),
    )
    await pipeline.start()
    for text in ("provider", "after a provider error", "bug", "after a bug"):
        await pipeline.push(Transcript(text))  # never raises into the pusher
    await pipeline.stop()
    # A provider's failure costs the turn; a bug ends the stage (and the call, on_error's).
    assert [e.kind for e in provider_errors] == ["unavailable"]
    assert [str(e) for e in errors] == ["a bug"]
    assert [f.text for f in seen if isinstance(f, Transcript)] == [  # type: ignore[attr-defined]
        "provider",
        "after a provider error",
        "bug",
    ]
    assert [f.text for f in out if isinstance(f, Transcript)] == ["after a provider error"]


class Buffering(Stage):
    """Takes caller audio inline (buffers it); anything else may wait, here on ``gate``."""

    inline = (AudioIn,)

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__()
        self.gate = gate
        self.seen: list[tuple[object, asyncio.Task[object] | None]] = []

    async def process(self, frame: Frame) -> None:
        label = frame.timestamp_ms if isinstance(frame, AudioIn) else type(frame).__name__
        self.seen.append((label, asyncio.current_task()))
        if isinstance(frame, Transcript):
            await self.gate.wait()
        await self.emit(frame)


async def test_frames_of_the_inline_types_are_taken_directly_while_the_stage_is_idle() -> None:
    gate = asyncio.Event()
    stage = Buffering(gate)
    out: list[Frame] = []

    async def sink(frame: Frame) -> None:
        out.append(frame)

    pipeline = Pipeline([Tagging(), stage], CallContext(CallInfo()), sink)
    await pipeline.start()
    [task] = [t for t in asyncio.all_tasks() if t.get_name() == f"stage-{stage.name}"]
    me = asyncio.current_task()
    await pipeline.push(MediaIn(b"\0\0", 0.0))
    assert stage.seen == [(0.0, me)]  # idle: called in the pusher's task, done on return
    await pipeline.push(Transcript("wait"))  # queued: the stage's own task takes it and waits
    while len(stage.seen) < 2:
        await asyncio.sleep(0)
    for stamp in (20.0, 40.0):
        await pipeline.push(MediaIn(b"\0\0", stamp))  # busy: queued behind it, in order
    assert [label for label, _ in stage.seen] == [0.0, "Transcript"]
    gate.set()
    while len(stage.seen) < 4:
        await asyncio.sleep(0)
    await pipeline.stop()
    assert stage.seen[1:] == [("Transcript", task), (20.0, task), (40.0, task)]
    stamps = [f.timestamp_ms if isinstance(f, AudioIn) else "T" for f in out]
    assert stamps == [0.0, "T", 20.0, 40.0]


async def test_a_queued_frame_waits_for_a_direct_call_still_under_way() -> None:
    """A direct call held up in ``emit`` (a full queue after it) came first: the stage's task
    does not start the next frame before it ends."""
    release = asyncio.Event()
    stage = Buffering(asyncio.Event())
    after = Stuck(release)
    pipeline = Pipeline(
        [stage, after], CallContext(CallInfo()), lambda f: asyncio.sleep(0), queue_size=1
    )
    await pipeline.start()
    await pipeline.push(AudioIn(PCM, 0.0))  # the stage after takes it and stalls
    await asyncio.sleep(0)
    await pipeline.push(AudioIn(PCM, 20.0))  # fills the queue after the stage
    # Not from the reader side: this direct call waits in emit for room.
    direct = asyncio.get_running_loop().create_task(
        pipeline.push_to("processor", AudioIn(PCM, 40.0))
    )
    while len(stage.seen) < 3:
        await asyncio.sleep(0)
    await pipeline.push(Dtmf("1", at_ms=60.0))  # the stage is not idle: queued
    runner = pipeline._runners[0]
    while runner.free is None:  # its task took the DTMF and waits for the direct call
        await asyncio.sleep(0)
    assert [label for label, _ in stage.seen] == [0.0, 20.0, 40.0]  # Dtmf not yet: 40 is under way
    release.set()
    await direct
    while len(stage.seen) < 4:
        await asyncio.sleep(0)
    await pipeline.stop()
    assert [label for label, _ in stage.seen] == [0.0, 20.0, 40.0, "Dtmf"]
