# ruff: noqa: E501  (table rows read better on one line)
"""Speech to speech: what voicebridge adds around a realtime voice model, and its CPU per call,
beside the cascaded pipeline's (issue 17).

    PYTHONPATH=. python bench/s2s.py            # 1 and 50 calls, 3 turns, each pipeline (~3 min)
    PYTHONPATH=. python bench/s2s.py --quick    # 1 and 50 calls, 1 turn each (under a minute)
    PYTHONPATH=. python bench/s2s.py --calls 1 10 --turns 2

The service runs as ``voicebridge serve`` in a child process on 127.0.0.1. The model is a
wire-level fake in this process, answering at once: ``tests/providers/openai_realtime_fake.py``
for ``openai_realtime`` (plain WebSocket, the ``openai`` SDK) and
``tests/providers/gemini_live_fake.py`` for ``gemini_live`` (WebSocket over TLS, the
``google-genai`` SDK; the service trusts the fake's certificate through ``SSL_CERT_FILE``). Each
endpointer ends the caller's turn after exactly 500 ms of appended silence, then sends the whole
reply. The ``gemini_live`` pipeline has the ``vad`` stage before the model, as it must (barge-in),
and its audio is resampled (8 kHz μ-law in, 16 kHz PCM to the model, 24 kHz back). Each caller (this process too) streams 20 ms μ-law frames in real time: 1 s of
speech-like audio, then silence until the agent's first ``playAudio``, acknowledging each
checkpoint once its audio would have played. For every turn:

* latency = the caller's last speech frame sent -> the first ``playAudio`` of the reply received;
* framework-added = latency - 500 ms (the model's silence window; the fake model itself takes
  no time): the caller audio's way in (socket, session, decode, the stage, the SDK's socket) and
  the reply's way out (SDK, stage, pieces, encode, pacing, socket).

The cascaded pipeline is the same service with ``decode -> vad (500 ms silence) -> scripted
transcriber -> scripted dialogue -> tone speaker -> encode``: zero-latency stand-ins for the
providers, so both columns are the framework alone. CPU per call is the service process's CPU
time (user + system, /proc) over the level, divided by the calls' total duration.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import websockets

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "tests" / "providers"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import gemini_live_fake  # noqa: E402
from openai_realtime_fake import FakeRealtime, Reply  # noqa: E402

from voicebridge.audio.mulaw import mulaw_encode_bytes  # noqa: E402
from voicebridge.sim.answer import answer_call  # noqa: E402
from voicebridge.sim.signals import speech_like  # noqa: E402

OUT = REPO / "bench" / "out"
SILENCE_S = 0.5
FRAME = 160  # 20 ms of μ-law at 8 kHz

S2S = """
name: s2s-bench
stages:
  - type: decode
  - type: openai_realtime
    params: {{base_url: "{base_url}", verify_at_start: false, input_transcription: null}}
  - type: encode
"""
GEMINI = """
name: s2s-gemini-bench
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 120, min_silence_ms: 500, pre_roll_ms: 240, forward_audio: true}}
  - type: gemini_live
    params: {{base_url: "{base_url}", verify_at_start: false, silence_ms: 500}}
  - type: encode
"""
GEMINI_KEY = "gm-bench"
CASCADE = """
name: cascade-bench
stages:
  - type: decode
  - type: vad
    params: {aggressiveness: 2, min_speech_ms: 120, min_silence_ms: 500, pre_roll_ms: 240, forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: [hello, hello, hello, hello, hello, hello]}
  - type: voicebridge.testing:ScriptedDialogue
    params: {reply: I see.}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""


def progress(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Service:
    """``voicebridge serve`` in a child process."""

    def __init__(self, pipeline: Path, env: dict[str, str]) -> None:
        self.pipeline = pipeline
        self.env = env
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Service:
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO)}
        env.update({"VOICEBRIDGE_LOG_LEVEL": "warning"})
        log = open(self.pipeline.with_suffix(".log"), "w")  # noqa: SIM115
        # Every bench caller comes from 127.0.0.1: lift the per-peer admission cap.
        config = self.pipeline.with_suffix(".service.yaml")
        config.write_text(
            "limits: {max_calls: 500, max_pending_streams: 500, max_pending_per_peer: 500}\n"
        )
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voicebridge",
            "serve",
            str(self.pipeline),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            env=env,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return self
            except OSError:
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the service did not start; see {log.name}")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


async def caller(base: str, turns: int, offset_s: float) -> list[float]:
    """One call: ``turns`` times 1 s of speech then silence until the reply starts; the
    latencies (s) from the last speech frame sent to the reply's first playAudio."""
    await asyncio.sleep(offset_s)
    answered = await answer_call(f"{base}/answer")
    speech = mulaw_encode_bytes(speech_like(1.0, 8000))
    silence = bytes([0xFF]) * FRAME
    latencies: list[float] = []
    acks: list[tuple[float, str]] = []  # (when its audio has played, checkpoint name)
    playhead = 0.0
    async with websockets.connect(answered.url, compression=None, max_size=None) as ws:
        start = {
            "event": "start",
            "start": {
                "callId": answered.call_uuid,
                "streamId": f"s-{offset_s}",
                "accountId": "MA1",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
        }
        await ws.send(json.dumps(start))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sent = 0
        waiting_since: float | None = None

        def media(payload: bytes) -> str:
            return json.dumps(
                {
                    "event": "media",
                    "media": {"track": "inbound", "payload": base64.b64encode(payload).decode()},
                }
            )

        async def send_frame(payload: bytes) -> None:
            nonlocal sent
            due = t0 + sent * 0.02
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(media(payload))
            sent += 1

        async def drain() -> bool:
            """Read what arrived; True when a reply began."""
            nonlocal playhead
            began = False
            while True:
                try:
                    text = await asyncio.wait_for(ws.recv(), 0.0001)
                except TimeoutError:
                    break
                message = json.loads(text)
                event = message.get("event")
                now = loop.time()
                if event == "playAudio":
                    began = True
                    samples = len(base64.b64decode(message["media"]["payload"]))
                    playhead = max(playhead, now) + samples / 8000
                elif event == "checkpoint":
                    acks.append((playhead, message["name"]))
                elif event == "clearAudio":
                    acks.clear()
                    playhead = now
            for due, name in [a for a in acks if a[0] <= loop.time()]:
                acks.remove((due, name))
                await ws.send(json.dumps({"event": "playedStream", "name": name}))
            return began

        for _ in range(turns):
            for index in range(0, len(speech), FRAME):
                await send_frame(speech[index : index + FRAME])
                await drain()
            waiting_since = loop.time()
            got = False
            for _ in range(250):  # at most 5 s for the reply
                await send_frame(silence)
                if await drain():
                    latencies.append(loop.time() - waiting_since)
                    got = True
                    break
            if not got:
                latencies.append(float("nan"))
            for _ in range(100):  # let the reply play out
                await send_frame(silence)
                await drain()
    return latencies


def pct(values: list[float], q: float) -> float:
    data = sorted(v for v in values if v == v)
    if not data:
        return float("nan")
    index = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
    return data[index]


async def level(service: Service, calls: int, turns: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{service.port}"
    cpu0, wall0 = cpu_seconds(service.pid), time.monotonic()
    outcomes = await asyncio.gather(
        *(caller(base, turns, i * 2.0 / max(1, calls)) for i in range(calls)),
        return_exceptions=True,
    )
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        progress(f"{len(failed)} call(s) failed, the first: {failed[0]!r}")
    results = [o if not isinstance(o, BaseException) else [float("nan")] * turns for o in outcomes]
    cpu1, wall1 = cpu_seconds(service.pid), time.monotonic()
    latencies = [x for r in results for x in r]
    added = [(x - SILENCE_S) * 1000 for x in latencies if x == x]
    return {
        "calls": calls,
        "turns": len(latencies),
        "missed": sum(1 for x in latencies if x != x),
        "added_p50_ms": round(pct(added, 50), 1),
        "added_p99_ms": round(pct(added, 99), 1),
        "latency_p50_ms": round(pct([x * 1000 for x in latencies], 50), 1),
        "cpu_s": round(cpu1 - cpu0, 2),
        "wall_s": round(wall1 - wall0, 1),
        "cpu_pct_per_call": round(100 * (cpu1 - cpu0) / (wall1 - wall0) / calls, 2),
    }


async def run(calls: list[int], turns: int, out: Path) -> list[dict[str, Any]]:
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    async with (
        FakeRealtime(api_key=None) as fake,
        gemini_live_fake.FakeGemini(api_key=GEMINI_KEY) as gemini,
    ):
        fake.default_reply = Reply(text="I see, thanks.", chunk_ms=200)
        gemini.default_reply = gemini_live_fake.Reply(text="I see, thanks.", chunk_ms=200)
        s2s = out.parent / "s2s-realtime.yaml"
        s2s.write_text(S2S.format(base_url=fake.base_url))
        live = out.parent / "s2s-gemini.yaml"
        live.write_text(GEMINI.format(base_url=gemini.base_url))
        cascade = out.parent / "s2s-cascade.yaml"
        cascade.write_text(CASCADE)
        pipelines = (
            ("speech to speech (openai_realtime + fake model)", s2s),
            ("speech to speech (gemini_live + fake model)", live),
            ("cascaded (vad, stt, dialogue, tts stand-ins)", cascade),
        )
        env = {
            "OPENAI_API_KEY": "sk-bench",
            "GEMINI_API_KEY": GEMINI_KEY,
            "SSL_CERT_FILE": gemini.cafile,  # trust the Gemini fake's certificate
        }
        for name, path in pipelines:
            async with Service(path, env) as service:
                for count in calls:
                    progress(f"{name}: {count} call(s)")
                    row = await level(service, count, turns)
                    row["pipeline"] = name
                    rows.append(row)
                    progress(json.dumps(row))
    out.write_text(json.dumps(rows, indent=2))
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="one turn a call (1 and 50 calls unless --calls)"
    )
    parser.add_argument("--out", type=Path, default=OUT / "s2s.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.turns = 1
    rows = asyncio.run(run(args.calls, args.turns, args.out))
    print(
        "| pipeline | calls | turns | framework-added p50 | p99 | caller latency p50 | service CPU per call |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['pipeline']} | {r['calls']} | {r['turns']} (missed {r['missed']}) | {r['added_p50_ms']} ms | {r['added_p99_ms']} ms | {r['latency_p50_ms']} ms | {r['cpu_pct_per_call']} % |"
        )
    return rows


if __name__ == "__main__":
    main()
