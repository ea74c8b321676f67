"""`voicebridge serve --workers 2` as a real process tree with Redis state: calls are served by
both workers, and a call whose socket drops resumes on whichever worker Plivo's retry reaches."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from voicebridge.sim.answer import answer_call
from voicebridge.testing.redis_server import REDIS_SERVER, RedisServer, free_port, redis_available

from .conftest import ROOT
from .plivo_leg import Leg
from .test_resume import GREETING

PIPELINE = f"""
name: workers-test
session: {{chunk_ms: 100, max_lead_ms: 600}}
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: {GREETING!r}}}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""
GREETING_S = 3.3  # ToneSpeaker: 50 ms a character and 50 ms a word gap
SPEED = 2.0  # the caller streams at twice real time; the service's time follows its audio


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[str, RedisServer]]:
    if not redis_available():
        pytest.skip(f"redis-server is not installed ({REDIS_SERVER}); .ci/run installs it")
    redis = RedisServer()
    redis.start()
    pipeline = tmp_path / "workers.yaml"
    pipeline.write_text(PIPELINE)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VOICEBRIDGE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "voicebridge.cli", "serve", str(pipeline),
            "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
            "--state", redis.url, "--log-format", "json",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}", redis
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        redis.stop()


async def worker_pids(base: str, want: int = 2, timeout_s: float = 60.0) -> set[int]:
    """Health checks on fresh connections until ``want`` workers answered (start-up included)."""
    pids: set[int] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=f"http://{base}", limits=limits, timeout=2) as client:
        while len(pids) < want and loop.time() < deadline:
            try:
                health = (await client.get("/health")).json()
            except httpx.TransportError:
                await asyncio.sleep(0.1)  # still starting
                continue
            assert health["state"] == "redis"
            pids.add(health["pid"])
    return pids


async def test_workers_share_calls_and_resume_through_redis(
    workers: tuple[str, RedisServer],
) -> None:
    base, _ = workers
    assert len(await worker_pids(base)) == 2
    # Stream tokens are on by default and no secret is set: `serve` made one for both workers,
    # so a token minted by either worker opens a stream on either.
    urls = {
        call_id: (await answer_call(f"http://{base}/answer", call_uuid=call_id, environ={})).url
        for call_id in ("w-call-1", "w-call-2", "w-call-3")
    }

    async def dropped_call() -> tuple[Leg, Leg]:
        url = urls["w-call-1"]
        async with Leg(url, None, "w-call-1", "w-stream-1", speed=SPEED) as first:
            await first.idle(1.2)  # piece 1 (1.8 s) is playing
            await first.drop()
        for attempt in range(20):  # Plivo retries: the worker may not have seen the drop yet
            try:
                second = Leg(url, None, "w-call-1", "w-stream-2", speed=SPEED)
                await second.__aenter__()
                break
            except InvalidStatus as refused:
                assert b"in_use" in refused.response.body and attempt < 19
                await asyncio.sleep(0.1)
        try:  # entered above: ``async with`` would connect once more
            await second.idle(3.0)
        finally:
            await second.__aexit__(None, None, None)
        return first, second

    async def plain_call(call_id: str) -> Leg:
        url = urls[call_id]
        async with Leg(url, None, call_id, f"{call_id}-stream", speed=SPEED) as leg:
            await leg.idle(4.5)
        return leg

    (first, second), *plain = await asyncio.gather(
        dropped_call(), plain_call("w-call-2"), plain_call("w-call-3")
    )
    for leg in plain:
        assert leg.checkpoints() == ["turn-1/piece-1", "turn-1/piece-2"]
        assert abs(leg.audio_s() - GREETING_S) < 0.01
    # The retry resumed the call: no greeting from the top (turn 1) but the rest of it (turn 2),
    # and only what the caller had not heard: together about one greeting's worth of audio.
    assert second.checkpoints() and second.checkpoints()[0] == "turn-2/piece-1"
    heard_first = sum(len(seg.pcm) for seg in first.playout.heard) / 8000
    assert 0.5 < heard_first < 1.5
    assert second.audio_s() < GREETING_S - 0.5
    assert abs(heard_first + second.audio_s() - GREETING_S) < 0.45  # a word's worth at most


async def test_workers_drain_on_sigterm_then_exit_cleanly(tmp_path: Path) -> None:
    """SIGTERM to `serve --workers 2`: every worker drains (503 on /health, the live call keeps
    going until the drain deadline, then closes with 1001), and the process exits 0."""
    import json

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    if not redis_available():
        pytest.skip(f"redis-server is not installed ({REDIS_SERVER}); .ci/run installs it")
    redis = RedisServer()
    redis.start()
    pipeline = tmp_path / "workers.yaml"
    pipeline.write_text(PIPELINE)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VOICEBRIDGE_LOG_LEVEL": "info",
        "VOICEBRIDGE_DRAIN_DEADLINE_S": "2",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebridge.cli", "serve", str(pipeline),
        "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
        "--state", redis.url, "--log-format", "json",
        cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    base = f"127.0.0.1:{port}"
    try:
        assert len(await worker_pids(base)) == 2
        start = {
            "event": "start",
            "start": {
                "callId": "drain-call",
                "streamId": "drain-stream",
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
        }
        answered = await answer_call(f"http://{base}/answer", call_uuid="drain-call", environ={})
        async with connect(answered.url) as ws:
            await ws.send(json.dumps(start))
            await ws.recv()  # the greeting is being played: the call is live
            proc.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            async with httpx.AsyncClient(base_url=f"http://{base}", timeout=2) as client:
                deadline = loop.time() + 20
                while (await client.get("/health")).status_code != 503:
                    assert loop.time() < deadline, "no worker reported draining"
                    await asyncio.sleep(0.05)
            with pytest.raises(ConnectionClosed):
                while True:  # the call goes on until the drain deadline ends it
                    await asyncio.wait_for(ws.recv(), 30)
            assert ws.close_code == 1001
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        redis.stop()
    assert proc.returncode == 0, err.decode()[-2000:]
    # Each worker drained. (Two processes share stderr, so a line may be cut by another's.)
    assert err.decode().count('"drain_started"') == 2
