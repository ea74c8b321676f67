"""The capacity benchmark's call flow on voicebridge: the real service, zero-latency providers.

decode -> vad (WebRTC, probed: notes when each caller frame has been analysed) -> a transcriber
that says a fixed line at each end of speech -> a dialogue that answers at once -> a speaker that
returns prepared PCM -> encode; barge-in guard 200 ms. Runs ``running_service`` (uvicorn with
websockets-sansio, no compression) on 127.0.0.1, port 0. Prints JSON lines on stdout:
{"type": "ready", "port"}, {"type": "call", "stream_id", "probe"} at each call's end, and
{"type": "lag", "samples"} (event-loop lag). Stops when stdin closes.

    PYTHONPATH=. python bench/vb_server.py [--profile out.prof]
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GUARD_MS = 200
VAD = {"aggressiveness": 2, "min_speech_ms": 120, "min_silence_ms": 500, "pre_roll_ms": 240}


def pipeline_yaml(reply_sentence_s: float) -> str:
    return f"""
name: capacity-bench
session:
  barge_in: {{guard_ms: {GUARD_MS}}}
stages:
  - type: decode
  - type: bench.vb_stages:ProbedVad
    params: {json.dumps(VAD)}
  - type: bench.vb_stages:InstantTranscriber
  - type: bench.vb_stages:InstantDialogue
  - type: bench.vb_stages:PreparedSpeaker
    params: {{seconds: {reply_sentence_s}}}
  - type: encode
"""


def emit(kind: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"type": kind, **fields}) + "\n")
    sys.stdout.flush()


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
    from voicebridge.config import ServiceSettings, load_pipeline_text
    from voicebridge.observe.logs import configure_logging
    from voicebridge.server.run import running_service

    configure_logging("json", "warning")

    def report(stream_id: str, probe: array, starts: list[float], ends: list[float]) -> None:
        emit("call", stream_id=stream_id, probe=probe.tolist(), starts=starts, ends=ends)

    stages.REPORT = report
    spec = load_pipeline_text(pipeline_yaml(args.sentence_s))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    settings = ServiceSettings(host="127.0.0.1", port=0, limits={"max_calls": 5000})
    async with running_service(settings, spec) as svc:
        emit("ready", port=svc.port, affinity=sorted(os.sched_getaffinity(0)))
        lag = loop.create_task(lag_monitor())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.lifetime)
        lag.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentence-s", type=float, default=1.0)
    parser.add_argument("--lifetime", type=float, default=1800.0)
    parser.add_argument("--profile", help="write a cProfile of the whole run here")
    args = parser.parse_args()
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            asyncio.run(serve(args))
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
