"""A normal call's reply latency alone and beside each attack on the real service (issue 13).

    PYTHONPATH=. python bench/abuse.py                 # offline pipeline, 3 calls per scenario
    PYTHONPATH=. python bench/abuse.py --calls 1 --scenarios alone,media_flood   # quick

``voicebridge serve`` runs as a child process on 127.0.0.1 with Plivo request signatures and
stream tokens on (as in production). This process plays Plivo for a normal caller (signed
``/answer``, the stream URL with its token, real-time audio: two spoken questions per call,
Piper's voice) and, beside it, one attack at a time:

* ``silent_sockets``: 200 WebSockets that complete the handshake and never send ``start``;
* ``takeover``: sockets that ``start`` with the normal call's own call id, without a token and
  with a token minted by a second ``/answer`` for the same call;
* ``replayed_answer``: the normal call's signed ``/answer`` request sent again, 50 times;
* ``log_flood``: a second call sending 100 acks with 200 KB checkpoint names and 3000 bad
  messages;
* ``slow_loris``: 100 connections sending half a request head, and one dribbling a body;
* ``media_flood``: a second call streaming caller audio at 20x real time.

Per scenario: the normal call's turn latency (caller's end of speech to the first agent audio
played, as ``voicebridge call`` measures it) p50/p99, and what happened to the attack. Writes
``bench/out/abuse.json`` and prints a markdown table. Every connection goes to 127.0.0.1 only,
and every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SCENARIOS = (
    "alone",
    "silent_sockets",
    "takeover",
    "replayed_answer",
    "log_flood",
    "slow_loris",
    "media_flood",
)
QUESTIONS = ("What time do you open tomorrow?", "Where are you located?")
AUTH_ID, AUTH_TOKEN = "MABENCHABUSE000000000", "bench-auth-token-not-a-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """``voicebridge serve`` in a child process, with signatures and tokens on."""

    def __init__(self, pipeline: Path, log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PLIVO_AUTH_ID": AUTH_ID,
            "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
            "VOICEBRIDGE_STREAM_SECRET": "bench-stream-secret-0123456789abcdef",
            "VOICEBRIDGE_LOG_FORMAT": "json",
            "VOICEBRIDGE_LOG_LEVEL": "info",
            "PYTHONPATH": str(REPO),
        }
        self.pipeline = pipeline
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 (kept open for the child's lifetime)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicebridge.cli", "serve", str(self.pipeline),
             "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=log, stderr=log, cwd=REPO,
        )  # fmt: skip
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(600):  # models load first: up to 60 s
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base}/health")).status_code == 200:
                        return self
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the service exited; see {self.log_path}")
                await asyncio.sleep(0.1)
        raise RuntimeError("the service did not start in 60 s")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
            if self.proc.poll() is None:
                self.proc.kill()

    def log_bytes(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0


# --- the normal call ------------------------------------------------------------------------
async def normal_call(
    service: Service, lines: list[Any], victim: asyncio.Future[str] | None = None
) -> dict[str, Any]:
    """One call as Plivo makes it (signed ``/answer``, then the stream); its turns' latency.
    ``victim`` learns the call id as soon as it is known (the takeover and replay attacks)."""
    from voicebridge.sim.analysis import report_from_parts
    from voicebridge.sim.answer import answer_call
    from voicebridge.sim.caller import PlivoCaller

    answered = await answer_call(f"{service.base}/answer", environ=service.env)
    if victim is not None and not victim.done():
        victim.set_result(answered.call_uuid)
    caller = PlivoCaller(answered.url, answered.fmt, speed=1.0, call_id=answered.call_uuid)
    record = await caller.run_turns([line.pcm for line in lines], gap_s=0.8, reply_timeout_s=15.0)
    report = report_from_parts(pipeline="bench", record=record, lines=lines, mode="realtime")
    latencies = [t.latency_s for t in report.turns if t.caller_said and t.latency_s is not None]
    answered_turns = len(latencies)
    return {
        "call_id": answered.call_uuid,
        "latencies": latencies,
        "turns": len([t for t in report.turns if t.caller_said]),
        "answered": answered_turns,
        "protocol_errors": list(record.protocol_errors),
        "closed": (record.close_code, record.close_reason),
    }


# --- the attacks ------------------------------------------------------------------------------
def start_json(call_id: str, stream_id: str = "attack-stream") -> str:
    from voicebridge.testing import start_message

    return start_message(call_id, stream_id, account_id=AUTH_ID)


async def silent_sockets(service: Service, stop: asyncio.Event, state: dict[str, Any]) -> None:
    from websockets.asyncio.client import connect

    async def one(index: int) -> None:
        try:
            async with connect(
                f"ws://127.0.0.1:{service.port}/stream", open_timeout=5, close_timeout=1
            ) as ws:
                state["opened"] = state.get("opened", 0) + 1
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.wait_closed(), 60)
                state.setdefault("closed_by_service", []).append(ws.close_code)
        except Exception as exc:
            state.setdefault("refused", []).append(type(exc).__name__)

    await asyncio.gather(*(one(i) for i in range(200)))
    codes = state.pop("closed_by_service", [])
    state["closes"] = {str(c): codes.count(c) for c in set(codes)}
    refused = state.pop("refused", [])
    state["refused"] = len(refused)


async def takeover(service: Service, stop: asyncio.Event, state: dict[str, Any]) -> None:
    from websockets.asyncio.client import connect

    from voicebridge.sim.answer import answer_call

    call_id = await state["victim"]
    tries: list[str] = []
    for attempt in range(10):
        if stop.is_set():
            break
        url = f"ws://127.0.0.1:{service.port}/stream"
        if attempt % 2:  # a token minted by a second /answer for the same live call
            try:
                url = (await answer_call(f"{service.base}/answer", call_uuid=call_id,
                                         environ=service.env)).url  # fmt: skip
            except Exception as exc:
                tries.append(f"answer refused: {type(exc).__name__}")
                continue
        try:
            async with connect(url, open_timeout=5, close_timeout=1) as ws:
                await ws.send(start_json(call_id, f"thief-{attempt}"))
                got_audio = False
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(3):
                        async for message in ws:
                            if '"playAudio"' in str(message)[:40]:
                                got_audio = True
                                break
                tries.append(f"closed {ws.close_code} audio={got_audio}")
        except Exception as exc:
            tries.append(f"refused: {type(exc).__name__}")
        await asyncio.sleep(0.5)
    state["attempts"] = tries


async def replayed_answer(service: Service, stop: asyncio.Event, state: dict[str, Any]) -> None:
    from voicebridge.sim.answer import plivo_headers

    call_id = await state["victim"]
    url = f"{service.base}/answer"
    params = {"CallUUID": call_id, "From": "sim", "Direction": "inbound"}
    headers = plivo_headers("POST", url, params, AUTH_TOKEN)  # one signature, replayed
    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(50):
            if stop.is_set():
                break
            statuses.append((await client.post(url, data=params, headers=headers)).status_code)
            await asyncio.sleep(0.1)
    state["statuses"] = {str(s): statuses.count(s) for s in set(statuses)}


async def second_call(service: Service) -> tuple[Any, str]:
    from websockets.asyncio.client import connect

    from voicebridge.sim.answer import answer_call

    answered = await answer_call(f"{service.base}/answer", environ=service.env)
    ws = await connect(answered.url, open_timeout=5, close_timeout=1, max_size=None)
    await ws.send(start_json(answered.call_uuid, "attacker-stream"))
    return ws, answered.call_uuid


async def log_flood(service: Service, stop: asyncio.Event, state: dict[str, Any]) -> None:
    before = service.log_bytes()
    ws, _ = await second_call(service)
    big = "x" * 200_000
    frame = base64.b64encode(bytes(320)).decode()
    media = json.dumps({"event": "media", "media": {"track": "inbound", "payload": frame}})
    sent = 0
    with contextlib.suppress(Exception):
        for _ in range(100):
            await ws.send(json.dumps({"event": "playedStream", "name": big}))
            await ws.send(media)
            sent += 2
        for i in range(3000):
            await ws.send("{not json" if i % 2 else '{"event": "nope"}')
            if i % 50 == 0:
                await ws.send(media)
                await asyncio.sleep(0.02)
            sent += 1
        await ws.close()
    await asyncio.sleep(1.0)
    state["messages_sent"] = sent
    state["log_bytes_written"] = service.log_bytes() - before


async def slow_loris(service: Service, stop: asyncio.Event, state: dict[str, Any]) -> None:
    async def partial_head() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        writer.write(b"POST /answer HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
        await writer.drain()
        started = time.monotonic()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(), 60)
        writer.close()
        return f"{time.monotonic() - started:.1f}"

    async def dribble() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        writer.write(
            b"POST /answer HTTP/1.1\r\nHost: agent\r\nContent-Type: "
            b"application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n"
        )
        started = time.monotonic()
        with contextlib.suppress(Exception):
            while time.monotonic() - started < 60 and not reader.at_eof():
                writer.write(b"a")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(1), 1.0)
        writer.close()
        return f"{time.monotonic() - started:.1f}"

    heads = await asyncio.gather(*(partial_head() for _ in range(100)), dribble())
    seconds = sorted(float(h) for h in heads[:-1])
    state["partial_heads_closed_after_s"] = {"min": seconds[0], "max": seconds[-1]}
    state["dribble_closed_after_s"] = float(heads[-1])


async def media_flood(service: Service, stop: asyncio.Event, state: dict[str, Any]) -> None:
    from websockets.exceptions import ConnectionClosed

    ws, _ = await second_call(service)
    frame = base64.b64encode(bytes(320)).decode()
    media = json.dumps({"event": "media", "media": {"track": "inbound", "payload": frame}})
    sent = 0
    try:
        while sent < 20_000 and not stop.is_set():
            for _ in range(20):  # 400 ms of audio every 20 ms: 20x real time
                await ws.send(media)
                sent += 1
            await asyncio.sleep(0.02)
    except ConnectionClosed:
        pass
    with contextlib.suppress(Exception):
        await ws.close()
    state["frames_sent"] = sent
    state["closed"] = [ws.close_code, (ws.close_reason or "")[:60]]


ATTACKS = {
    "silent_sockets": silent_sockets,
    "takeover": takeover,
    "replayed_answer": replayed_answer,
    "log_flood": log_flood,
    "slow_loris": slow_loris,
    "media_flood": media_flood,
}


# --- running ----------------------------------------------------------------------------------
async def scenario(name: str, service: Service, lines: list[Any], calls: int) -> dict[str, Any]:
    latencies: list[float] = []
    results: list[dict[str, Any]] = []
    attack_state: dict[str, Any] = {}
    for index in range(calls):
        stop = asyncio.Event()
        victim: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        attack_state["victim"] = victim
        attack = None
        if name != "alone" and index == 0:
            attack = asyncio.ensure_future(ATTACKS[name](service, stop, attack_state))
        result = await normal_call(service, lines, victim)
        stop.set()
        if attack is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(attack, 90)
        results.append(result)
        latencies += result["latencies"]
    attack_state.pop("victim", None)
    arr = np.asarray(latencies) * 1000.0
    return {
        "scenario": name,
        "turns": sum(r["turns"] for r in results),
        "answered": sum(r["answered"] for r in results),
        "latency_ms_p50": round(float(np.percentile(arr, 50)), 1) if arr.size else None,
        "latency_ms_p99": round(float(np.percentile(arr, 99)), 1) if arr.size else None,
        "protocol_errors": sum(len(r["protocol_errors"]) for r in results),
        "attack": attack_state,
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    from voicebridge.sim.simulate import CallerLine
    from voicebridge.stages.tts.hibari import synthesize

    lines = [CallerLine(q, synthesize(q, 16000, pitch_semitones=-2.0)) for q in QUESTIONS]
    rows = []
    for name in args.scenarios.split(","):
        async with Service(
            Path(args.pipeline), REPO / "bench" / "out" / f"abuse-{name}.log"
        ) as svc:
            await normal_call(svc, lines[:1])  # warm-up: models loaded, caches warm
            row = await scenario(name, svc, lines, args.calls)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default=str(REPO / "pipelines" / "offline.yaml"))
    parser.add_argument("--calls", type=int, default=3, help="normal calls per scenario")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "abuse.json"))
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    print("| scenario | turns answered | latency p50 ms | latency p99 ms | the attack |")
    print("|---|---|---|---|---|")
    for row in rows:
        attack = json.dumps(row["attack"])[:160]
        print(
            f"| {row['scenario']} | {row['answered']}/{row['turns']} | {row['latency_ms_p50']} "
            f"| {row['latency_ms_p99']} | {attack} |"
        )


if __name__ == "__main__":
    main()
