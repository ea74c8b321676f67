"""The capacity benchmark's call flow on voicebridge: the real service, zero-latency providers.

decode -> vad (WebRTC, probed: notes when each caller frame has been analysed) -> a transcriber
that says a fixed line at each end of speech -> a dialogue that answers at once -> a speaker that
returns prepared PCM -> encode; barge-in guard 200 ms. Runs ``running_service`` (uvicorn with
websockets-sansio, no compression) on 127.0.0.1, port 0. Prints JSON lines on stdout:
{"type": "ready", "port"}, {"type": "call", "stream_id", "probe"} at each call's end, and
{"type": "lag", "samples"} (event-loop lag). Stops when stdin closes.

    PYTHONPATH=. python bench/vb_server.py [--sentences 3] [--pieces 1] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from array import array
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import child_service, emit  # noqa: E402

GUARD_MS = 200
VAD = {"aggressiveness": 2, "min_speech_ms": 120, "min_silence_ms": 500, "pre_roll_ms": 240}


def pipeline_yaml(
    reply_sentence_s: float, *, sentences: int = 3, pieces: int = 1, probed: bool = True
) -> str:
    """The call flow: each reply is ``sentences`` sentences of ``reply_sentence_s`` of audio,
    each spoken in ``pieces`` pieces. ``probed``: the VAD notes when it finished each frame
    (``ProbedVad``); otherwise it is the plain ``vad`` stage."""
    vad = "bench.vb_stages:ProbedVad" if probed else "vad"
    return f"""
name: capacity-bench
session:
  barge_in: {{guard_ms: {GUARD_MS}}}
stages:
  - type: decode
  - type: {vad}
    params: {json.dumps(VAD)}
  - type: bench.vb_stages:InstantTranscriber
  - type: bench.vb_stages:InstantDialogue
    params: {{sentences: {sentences}}}
  - type: bench.vb_stages:PreparedSpeaker
    params: {{seconds: {reply_sentence_s}, pieces: {pieces}}}
  - type: encode
"""


async def lag_monitor(period: float = 0.05) -> None:
    """Event-loop lag: how late a periodic timer fires."""
    samples: list[float] = []
    while True:
        t = time.monotonic()
        await asyncio.sleep(period)
        samples.append(time.monotonic() - t - period)
        if len(samples) >= 20:
            emit("lag", t=time.monotonic(), samples=[round(s, 5) for s in samples])
            samples = []


async def serve(args: argparse.Namespace) -> None:
    import bench.vb_stages as stages
    from voicebridge.config import load_pipeline_text
    from voicebridge.observe.logs import configure_logging

    configure_logging("json", "warning")

    def report(stream_id: str, probe: array, starts: list[float], ends: list[float]) -> None:
        emit("call", stream_id=stream_id, probe=probe.tolist(), starts=starts, ends=ends)

    stages.REPORT = report
    spec = load_pipeline_text(
        pipeline_yaml(args.sentence_s, sentences=args.sentences, pieces=args.pieces)
    )
    async with child_service(spec, args.lifetime, max_calls=5000, max_pending=5000) as child:
        child.ready()
        lag = asyncio.get_running_loop().create_task(lag_monitor())
        await child.wait()
        lag.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentence-s", type=float, default=1.0, help="reply audio per sentence")
    parser.add_argument("--sentences", type=int, default=3, help="sentences per reply")
    parser.add_argument("--pieces", type=int, default=1, help="pieces (AgentAudio) per sentence")
    parser.add_argument("--lifetime", type=float, default=1800.0)
    parser.add_argument("--profile", help="write a cProfile of the whole run here")
    args = parser.parse_args()
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            run(serve(args))
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)
    else:
        run(serve(args))


def run(main: Any) -> None:
    """Run on the event loop ``voicebridge serve`` would: uvicorn's own choice, which is uvloop
    when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


if __name__ == "__main__":
    main()
