"""The capacity benchmark's call flow on Pipecat 1.14, for the side-by-side run.

Runs in its own virtualenv (``bench/.venv-pipecat``, made by ``bench/capacity.py``), never imports
voicebridge. One FastAPI app on uvicorn (the same uvicorn version and WebSocket settings as
voicebridge's service: websockets-sansio, no compression, no access log) with a ``/stream``
WebSocket. Each Plivo stream gets a Pipecat pipeline:

    FastAPIWebsocketTransport.input()  (PlivoFrameSerializer: μ-law 8 kHz -> PCM)
    -> ProbedVAD       (Pipecat's VADProcessor with its SileroVADAnalyzer; notes when each
                        caller frame has been analysed)
    -> FakeStt         (at Silero's end of speech: a fixed TranscriptionFrame, at once; at its
                        start of speech: an interruption, as Pipecat's default VAD turn-start
                        strategy does)
    -> FakeDialogue    (a fixed 3-sentence reply, at once)
    -> FakeTts         (prepared PCM per sentence, at once: the same signal as voicebridge's)
    -> FastAPIWebsocketTransport.output()  (playAudio; clearAudio on interruption)

Prints one JSON line per finished call on stdout ({"type": "call", "stream_id", "probe"}),
plus {"type": "ready", "port"} and {"type": "lag", ...}. Stops when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from array import array

import numpy as np
from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    TextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.plivo import PlivoFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)

RATE = 8000


def emit(kind: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"type": kind, **fields}) + "\n")
    sys.stdout.flush()


class ProbedVAD(VADProcessor):
    """Pipecat's VAD processor; notes (frame number, CLOCK_MONOTONIC) once each caller frame has
    been through the VAD: the end of the server's processing of incoming media."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.probe = array("d")
        self.starts: list[int] = []  # frames on which the VAD decided speech began
        self.ends: list[int] = []  # ... and ended
        self._k = 0

    async def broadcast_frame(self, frame_cls: type[Frame], **kwargs: object) -> None:
        if frame_cls is VADUserStartedSpeakingFrame:
            self.starts.append(self._k)
        elif frame_cls is VADUserStoppedSpeakingFrame:
            self.ends.append(self._k)
        await super().broadcast_frame(frame_cls, **kwargs)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.probe.append(self._k)
            self.probe.append(time.monotonic())
            self._k += 1


class FakeStt(FrameProcessor):
    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            await self.broadcast_interruption()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            await self.push_frame(TranscriptionFrame(self._text, "caller", str(time.time())))


class FakeDialogue(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            for i in range(3):
                await self.push_frame(TextFrame(f"This is sentence number {i + 1} of the reply."))
            return
        await self.push_frame(frame, direction)


class FakeTts(FrameProcessor):
    def __init__(self, pcm: bytes) -> None:
        super().__init__()
        self._pcm = pcm

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame) and not isinstance(frame, TranscriptionFrame):
            await self.push_frame(TTSStartedFrame())
            await self.push_frame(TTSAudioRawFrame(self._pcm, RATE, 1))
            await self.push_frame(TTSStoppedFrame())
            return
        await self.push_frame(frame, direction)


def make_app(pcm: bytes, start_secs: float, stop_secs: float) -> FastAPI:
    app = FastAPI()

    @app.websocket("/stream")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        start = json.loads(await websocket.receive_text())
        info = start["start"]
        serializer = PlivoFrameSerializer(
            info["streamId"],
            info["callId"],
            params=PlivoFrameSerializer.InputParams(auto_hang_up=False),
        )
        transport = FastAPIWebsocketTransport(
            websocket,
            FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
                serializer=serializer,
            ),
        )
        vad = ProbedVAD(
            vad_analyzer=SileroVADAnalyzer(
                sample_rate=RATE, params=VADParams(start_secs=start_secs, stop_secs=stop_secs)
            )
        )
        pipeline = Pipeline(
            [
                transport.input(),
                vad,
                FakeStt("I would like to check on my order please"),
                FakeDialogue(),
                FakeTts(pcm),
                transport.output(),
            ]
        )
        task = PipelineTask(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
            enable_rtvi=False,
            idle_timeout_secs=None,
        )

        @transport.event_handler("on_client_disconnected")
        async def on_disconnected(_transport: object, _ws: object) -> None:
            await task.cancel()

        await PipelineRunner(handle_sigint=False).run(task)
        emit(
            "call",
            stream_id=info["streamId"],
            probe=vad.probe.tolist(),
            starts=vad.starts,
            ends=vad.ends,
        )

    return app


async def lag_monitor(period: float = 0.05) -> None:
    """Event-loop lag: how late a periodic timer fires."""
    worst = 0.0
    samples: list[float] = []
    while True:
        t = time.monotonic()
        await asyncio.sleep(period)
        late = time.monotonic() - t - period
        samples.append(late)
        worst = max(worst, late)
        if len(samples) >= 20:
            emit("lag", t=time.monotonic(), samples=[round(s, 5) for s in samples])
            samples = []


async def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--pcm", required=True, help=".npy of the speaker's int16 PCM at 8 kHz")
    parser.add_argument("--start-secs", type=float, default=0.2)
    parser.add_argument("--stop-secs", type=float, default=0.5)
    parser.add_argument("--lifetime", type=float, default=1800.0)
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    pcm = np.load(args.pcm).astype(np.int16).tobytes()
    config = uvicorn.Config(
        make_app(pcm, args.start_secs, args.stop_secs),
        host="127.0.0.1",
        port=0,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=1 << 20,
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    serving = loop.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
        if serving.done():
            raise SystemExit("uvicorn did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    emit("ready", port=port, affinity=sorted(os.sched_getaffinity(0)))
    lag = loop.create_task(lag_monitor())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.lifetime)
    lag.cancel()
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(serving, 10)


if __name__ == "__main__":
    asyncio.run(main())
