"""A pipeline that falls behind drops its oldest caller audio; the socket and other calls go on."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, ClassVar

from structlog.testing import capture_logs
from websockets.asyncio.client import connect

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.clock import StreamClock
from voicebridge.config.pipeline_config import StageSpec
from voicebridge.frames import CallEnded, Dtmf, Frame, MediaIn
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.server.run import running_service
from voicebridge.sim.signals import utterances

from .conftest import Sessions, echo_spec, fast_caller, settings, until

QUEUE = 256  # the pipeline's queue into its first stage
FRAMES = 800  # 16 s of caller audio


class Gate(Stage):
    """A first stage that stalls on caller audio of calls whose id starts with "slow" (a model
    that hangs, a starved CPU) until the test opens it; it records what got through."""

    type_name = "gate"
    opened: ClassVar[asyncio.Event]
    passed: ClassVar[dict[str, list[float]]]

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, MediaIn):
            call_id = self.ctx.info.call_id
            self.passed.setdefault(call_id, []).append(frame.timestamp_ms)
            if call_id.startswith("slow"):
                await self.opened.wait()
        await self.emit(frame)


def gated_echo() -> Any:
    spec = echo_spec()
    spec.stages.insert(0, StageSpec("gate", "gate", Gate, StageParams()))
    return spec


def media(seq: int) -> str:
    payload = base64.b64encode(b"\0\0" * 160).decode()  # 20 ms of L16 at 8 kHz
    return json.dumps({"event": "media", "media": {"payload": payload, "chunk": seq}})


START = json.dumps(
    {
        "event": "start",
        "start": {
            "callId": "slow-call",
            "streamId": "slow-stream",
            "accountId": "MA1",
            "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 8000},
        },
    }
)


async def test_a_stalled_pipeline_drops_the_oldest_caller_audio_and_nothing_else() -> None:
    Gate.opened = asyncio.Event()
    Gate.passed = {}
    sessions = Sessions()
    async with running_service(
        settings(), gated_echo(), clock_factory=StreamClock, on_session=sessions
    ) as service:
        with capture_logs() as logs:
            async with connect(service.ws_url) as slow_ws:
                await slow_ws.send(START)
                for seq in range(FRAMES):
                    await slow_ws.send(media(seq))
                slow = sessions.all[0]
                # The socket reader never waited for the stalled stage: every frame was taken.
                await until(lambda: slow.core.stats.media == FRAMES)
                assert slow.pipeline is not None
                queued = slow.pipeline._runners[0].queue.qsize()
                held = len(Gate.passed["slow-call"])  # the frame the gate is stuck on

                # Meanwhile another call on the same service runs normally.
                audio = utterances([("silence", 0.2), ("speech", 0.6), ("silence", 1.0)], 8000)
                caller = fast_caller(service.ws_url, sessions)
                record = await caller.run(audio, tail_s=0.8)
                other = sessions.of(caller)

                Gate.opened.set()
                await until(lambda: len(Gate.passed["slow-call"]) == held + queued)
                metrics = service.app.state.metrics

    dropped = FRAMES - held - queued
    assert (held, queued) == (1, QUEUE)
    assert slow.pipeline.dropped_frames == dropped > 0
    assert metrics.value("voicebridge_dropped_frames_total", {"reason": "backpressure"}) == dropped
    # The oldest audio went: what got through is the first frame and the newest ones, in order.
    timestamps = Gate.passed["slow-call"]
    assert timestamps == [0.0] + [20.0 * seq for seq in range(FRAMES - QUEUE, FRAMES)]
    # One log line per 5 s of the call at most: drops began at frame 258 (5.16 s into the call).
    lines = [e for e in logs if e["event"] == "caller_audio_dropped"]
    assert [line["call_id"] for line in lines] == ["slow-call"] * 3
    assert lines[0]["dropped"] == 1 and lines[0]["reason"] == "backpressure"
    assert sum(line["dropped"] for line in lines) <= dropped
    # The other call was untouched: its echo came back whole and it lost no audio.
    assert record.protocol_errors == []
    assert [a.message["name"] for a in record.sent_by_caller("playedStream")] == ["turn-1/piece-1"]
    assert other is not None and other.pipeline is not None
    assert other.pipeline.dropped_frames == 0


async def test_control_frames_are_never_dropped_and_never_wait() -> None:
    """A full head queue makes room for a DTMF digit (or the end of the call) by dropping the
    oldest caller audio, never the control frame, and never keeps the caller waiting."""
    ctx = CallContext(CallInfo())
    gate = asyncio.Event()
    seen: list[Frame] = []

    class Stuck(Stage):
        async def process(self, frame: Frame) -> None:
            seen.append(frame)
            await gate.wait()

    async def sink(frame: Frame) -> None:
        return None

    drops: list[int] = []
    pipeline = Pipeline([Stuck()], ctx, sink, queue_size=4, on_dropped=drops.append)
    await pipeline.start()
    audio = [MediaIn(b"\0\0", 20.0 * i) for i in range(7)]
    await pipeline.push(audio[0])
    await asyncio.sleep(0)  # the stage takes it and stalls
    for frame in audio[1:5]:
        await pipeline.push(frame)  # fills the queue
    # Each push below completes without the stage moving: a wait would hang the test.
    await asyncio.wait_for(pipeline.push(Dtmf("5", at_ms=100.0)), 5)
    await asyncio.wait_for(pipeline.push(audio[5]), 5)
    await asyncio.wait_for(pipeline.push(CallEnded("test")), 5)
    gate.set()
    while len(seen) < 5:
        await asyncio.sleep(0)
    await pipeline.stop()
    assert seen == [audio[0], audio[4], Dtmf("5", at_ms=100.0), audio[5], CallEnded("test")]
    assert pipeline.dropped_frames == 3 and drops == [1, 1, 1]
