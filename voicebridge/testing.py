"""Test helpers: drive one stage or a chain of stages with frames on a virtual clock.

The one way to test a stage, built-in or custom::

    out = await run_stages([Vad()], frames, info=CallInfo(sample_rate=8000))
    assert any(isinstance(f, SpeechStarted) for f in out.frames)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from voicebridge.clock import VirtualClock
from voicebridge.context import CallContext, CallInfo
from voicebridge.frames import AgentText, CallStarted, Frame
from voicebridge.pipeline import Pipeline
from voicebridge.stage import Stage


@dataclass
class StageRun:
    """What came out of the stages, and the context they ran in."""

    frames: list[Frame] = field(default_factory=list)
    ctx: CallContext | None = None
    errors: list[BaseException] = field(default_factory=list)

    def of(self, kind: type[Frame]) -> list[Frame]:
        return [f for f in self.frames if isinstance(f, kind)]

    def of_text(self) -> list[AgentText]:
        """The agent's reply pieces, in order."""
        return [f for f in self.frames if isinstance(f, AgentText)]


def call_started(info: CallInfo) -> CallStarted:
    return CallStarted(
        call_id=info.call_id,
        stream_id=info.stream_id,
        account_id=info.account_id,
        encoding=info.encoding,
        sample_rate=info.sample_rate,
        extra_headers=dict(info.extra_headers),
    )


async def run_stages(
    stages: Sequence[Stage],
    frames: Iterable[Frame],
    *,
    info: CallInfo | None = None,
    clock: VirtualClock | None = None,
    start_call: bool = True,
    frame_interval_s: float = 0.0,
    settle_s: float = 0.0,
) -> StageRun:
    """Run frames through ``stages`` as a pipeline and collect what comes out of the last one.

    ``frame_interval_s`` moves the virtual clock between input frames (0.02 for live audio);
    ``settle_s`` lets time pass at the end so timers (silence windows, timeouts) can fire.
    """
    info = info or CallInfo(call_id="test-call", stream_id="test-stream")
    clock = clock or VirtualClock()
    ctx = CallContext(info, clock=clock)
    run = StageRun(ctx=ctx)

    async def sink(frame: Frame) -> None:
        run.frames.append(frame)

    pipeline = Pipeline(list(stages), ctx, sink, on_error=lambda stage, exc: run.errors.append(exc))
    await pipeline.start()
    try:
        if start_call:
            await pipeline.push(call_started(info))
        for frame in frames:
            await pipeline.push(frame)
            if frame_interval_s:
                await clock.advance(frame_interval_s)
            else:
                await clock.settle()
        await clock.settle()
        if settle_s:
            await clock.advance(settle_s, step=0.01)
        await pipeline.drain()
    finally:
        await pipeline.stop()
    return run
