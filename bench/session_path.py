"""CPU time of voicebridge's media path per caller frame, without sockets (for A/B of changes).

    PYTHONPATH=. python bench/session_path.py [-n 100] [--seconds 20] [--repeat 3] [--tracing]

``-n`` sessions of the capacity benchmark's pipeline (``bench/vb_server.py``: decode, WebRTC
VAD, instant transcriber, dialogue and speaker, encode) each get the same caller track as the
capacity benchmark's callers, one 20 ms ``media`` message at a time, round-robin, through
``Session.handle_message``; the transport only counts what the session sends, and checkpoints
are acknowledged at once. Frames go in as fast as the sessions take them (a session's time
follows the caller's audio when it runs ahead of the clock), so what is measured is CPU time
(``time.process_time``) per caller frame, which other load on the machine barely changes. Not
included: uvicorn and the WebSocket framing, and the timers a call runs in real time
(housekeeping), which fire less often here (see ``capacity.py`` for the whole server).

``--tracing`` measures each mode, tracing off then on (docs/tracing.md): every session gets a
``CallTracer``, and its spans go through the SDK's batch processor to an exporter that encodes
them as OTLP protobuf (what the OTLP/HTTP exporter sends) and drops the bytes, so the figure
holds span building, batching and encoding but no network. The timed part then runs to the end
of the calls (their last spans) and the processor's flush; it reports CPU per frame and per call.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import capacity, vb_server  # noqa: E402


class CountingWire:
    """A transport that counts messages and answers checkpoints at once."""

    def __init__(self) -> None:
        self.sent = 0
        self.acks: list[str] = []

    async def send_text(self, text: str) -> None:
        self.sent += 1
        if '"checkpoint"' in text[:30]:
            self.acks.append(json.loads(text)["name"])

    async def close(self, code: int = 1000, reason: str = "") -> None:
        return None


class EncodingSink:
    """A span exporter that encodes each batch as the OTLP exporter would, then drops it."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.spans += len(spans)
        self.bytes += len(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def call_tracing(spec: Any) -> tuple[Any, EncodingSink]:
    """Tracing as the service sets it up, into an ``EncodingSink``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from voicebridge.observe.tracing_setup import CallTracing

    sink = EncodingSink()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(sink))  # duck-typed SpanExporter
    return CallTracing.for_pipeline(provider, spec), sink


async def run_once(
    n: int, seconds: float, tracing: bool = False, ends: bool = False
) -> dict[str, float]:
    """One run; ``ends``: time the calls' ends too (as a traced run must, to compare)."""
    import numpy as np

    from voicebridge.call.state import CallLimits
    from voicebridge.config import load_pipeline_text
    from voicebridge.observe.logs import configure_logging
    from voicebridge.session import Session

    configure_logging("json", "warning")
    spec = load_pipeline_text(vb_server.pipeline_yaml(capacity.SENTENCE_S))
    speech = capacity.caller_speech()
    track = capacity.tracks_for(1, 6, seconds, speech)[0]
    sessions = []
    wires = []
    traced, sink = call_tracing(spec) if tracing else (None, None)
    # Audio goes in faster than real time on purpose: no fair-share drops or flood closes.
    unlimited = CallLimits(media_burst_s=1e6, media_flood_s=1e6)
    for i in range(n):
        wire = CountingWire()
        # Made in this task just before its start, as the service makes it in the call's task.
        subscribers = [traced.call_tracer()] if traced is not None else []
        session = Session(spec, wire, limits=unlimited, subscribers=subscribers)
        start = {
            "event": "start",
            "start": {
                "callId": f"call-{i}",
                "streamId": f"stream-{i}",
                "accountId": "MA",
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
        }
        await session.handle_message(json.dumps(start))
        sessions.append(session)
        wires.append(wire)
    messages = [
        json.dumps(
            {
                "sequenceNumber": k + 2,
                "streamId": "stream",
                "event": "media",
                "media": {"track": "inbound", "timestamp": str(k * 20), "chunk": k, "payload": p},
                "extra_headers": "{}",
            }
        )
        for k, p in enumerate(track.payloads)
    ]
    assert base64  # the payloads are already base64
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for message in messages:
        for session, wire in zip(sessions, wires, strict=True):
            await session.handle_message(message)
            while wire.acks:
                name = wire.acks.pop()
                await session.handle_message(
                    json.dumps({"event": "playedStream", "name": name, "streamId": "s"})
                )
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    if tracing or ends:  # the calls' ends (their root spans) and the last export, timed
        for session in sessions:
            await session.end("bench over")
        if traced is not None:
            await asyncio.to_thread(traced.provider.force_flush)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    sent = sum(w.sent for w in wires)
    for session in sessions:
        await session.end("bench over")
    frames = n * len(messages)
    result = {
        "us_per_frame_cpu": cpu / frames * 1e6,
        "us_per_frame_wall": wall / frames * 1e6,
        "ms_per_call_cpu": cpu / n * 1e3,
        "sent": sent,
        "frames": frames,
        "replies": float(np.mean([w.sent for w in wires])),
    }
    if traced is not None and sink is not None:
        traced.shutdown()
        result["spans_per_call"] = sink.spans / n
        result["otlp_bytes_per_call"] = sink.bytes / n
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tracing", action="store_true", help="tracing off, then on")
    args = parser.parse_args()
    modes = [False, True] if args.tracing else [False]
    for mode in modes:
        runs = [
            asyncio.run(run_once(args.n, args.seconds, tracing=mode, ends=args.tracing))
            for _ in range(args.repeat)
        ]
        cpu = [r["us_per_frame_cpu"] for r in runs]
        label = ("tracing on: " if mode else "tracing off: ") if args.tracing else ""
        line = (
            f"{label}{args.n} sessions x {args.seconds:.0f} s: CPU per caller frame "
            f"median {statistics.median(cpu):.1f} µs (runs {', '.join(f'{c:.1f}' for c in cpu)}); "
            f"CPU per call {statistics.median(r['ms_per_call_cpu'] for r in runs):.1f} ms; "
            f"messages sent per session {runs[0]['replies']:.0f}"
        )
        if mode:
            line += (
                f"; spans per call {runs[0]['spans_per_call']:.1f}, "
                f"OTLP bytes per call {runs[0]['otlp_bytes_per_call']:.0f}"
            )
        print(line)


if __name__ == "__main__":
    main()
