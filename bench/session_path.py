"""CPU time of voicebridge's media path per caller frame, without sockets (for A/B of changes).

    PYTHONPATH=. python bench/session_path.py [-n 100] [--seconds 20] [--repeat 3]

``-n`` sessions of the capacity benchmark's pipeline (``bench/vb_server.py``: decode, WebRTC
VAD, instant transcriber, dialogue and speaker, encode) each get the same caller track as the
capacity benchmark's callers, one 20 ms ``media`` message at a time, round-robin, through
``Session.handle_message``; the transport only counts what the session sends, and checkpoints
are acknowledged at once. Frames go in as fast as the sessions take them (a session's time
follows the caller's audio when it runs ahead of the clock), so what is measured is CPU time
(``time.process_time``) per caller frame, which other load on the machine barely changes. Not
included: uvicorn and the WebSocket framing, and the timers a call runs in real time
(housekeeping), which fire less often here (see ``capacity.py`` for the whole server).
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


async def run_once(n: int, seconds: float) -> dict[str, float]:
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
    for i in range(n):
        wire = CountingWire()
        # Frames go in faster than real time: lift the fair share (caller audio beyond real time
        # is dropped, then the call closed as a flood), or the figure is of dropping frames.
        session = Session(spec, wire, limits=CallLimits(media_burst_s=1e9))
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
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    sent = sum(w.sent for w in wires)
    for session in sessions:
        await session.end("bench over")
    frames = n * len(messages)
    return {
        "us_per_frame_cpu": cpu / frames * 1e6,
        "us_per_frame_wall": wall / frames * 1e6,
        "sent": sent,
        "frames": frames,
        "replies": float(np.mean([w.sent for w in wires])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [asyncio.run(run_once(args.n, args.seconds)) for _ in range(args.repeat)]
    cpu = [r["us_per_frame_cpu"] for r in runs]
    print(
        f"{args.n} sessions x {args.seconds:.0f} s: CPU per caller frame "
        f"median {statistics.median(cpu):.1f} µs (runs {', '.join(f'{c:.1f}' for c in cpu)}); "
        f"messages sent per session {runs[0]['replies']:.0f}"
    )


if __name__ == "__main__":
    main()
