"""A Plivo-protocol caller holds an echo call with the real service, in every codec."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest

from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import RunningService
from voicebridge.sim.caller import PlivoCaller
from voicebridge.sim.signals import utterances

from .conftest import ROOT

FORMATS = [("mulaw", 8000), ("l16", 8000), ("l16", 16000)]


def fast_caller(service: RunningService, fmt: StreamFormat) -> PlivoCaller:
    """A caller in lockstep with the service: exact timing, as fast as the CPU allows."""
    watch = service.app.state.watch
    return PlivoCaller(service.ws_url, fmt, speed=float("inf"), probe=watch.lockstep)


@pytest.mark.parametrize(("codec", "rate"), FORMATS)
async def test_echo_call_in_each_codec(echo_service: RunningService, codec: str, rate: int) -> None:
    fmt = StreamFormat.from_short(codec, rate)
    caller_audio = utterances(
        [("silence", 0.3), ("speech", 0.8), ("silence", 2.8), ("speech", 0.6), ("silence", 0.2)],
        rate,
    )
    caller = fast_caller(echo_service, fmt)
    record = await caller.run(caller_audio, tail_s=1.0)

    assert record.protocol_errors == []
    plays = record.sent_by_agent("playAudio")
    assert plays, "the agent never spoke"
    for play in plays:
        media = play.message["media"]
        assert media["contentType"] == fmt.encoding and media["sampleRate"] == rate
        assert play.message["streamId"] == record.stream_id
    checkpoints = record.sent_by_agent("checkpoint")
    assert [c.message["name"] for c in checkpoints] == ["turn-1/piece-1", "turn-2/piece-1"]
    acks = [a.message["name"] for a in record.sent_by_caller("playedStream")]
    assert acks == ["turn-1/piece-1", "turn-2/piece-1"]
    # Each checkpoint came after its turn's audio, and its ack after the audio's duration.
    first_ck = checkpoints[0]
    first_play = plays[0]
    assert first_play.t <= first_ck.t
    echo_s = sum(p.message["media"]["payload_bytes"] for p in plays) / fmt.bytes_per_ms / 1000
    # Each echo: pre-roll (240 ms) + speech + VAD hangover + the 500 ms silence window.
    assert 0.8 + 0.6 + 2 * 0.24 + 2 * 0.5 <= echo_s <= 0.8 + 0.6 + 2 * 0.24 + 2 * 0.5 + 0.4
    # The caller heard audio (the echo) after speaking, not silence.
    heard = record.heard_audio.astype(np.float64)
    assert np.sqrt(np.mean(heard**2)) > 100
    assert record.closed_by == "caller" and record.sent_by_agent("clearAudio") == []


async def test_health_and_answer_xml(echo_service: RunningService) -> None:
    async with httpx.AsyncClient(base_url=echo_service.http_base) as client:
        health = (await client.get("/health")).json()
        assert health["status"] == "ok" and health["pipeline"] == "echo"
        response = await client.post("/answer", data={"CallUUID": "abc", "From": "123"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/xml")
        xml = response.text
        host = f"{echo_service.host}:{echo_service.port}"
        assert f">ws://{host}/stream</Stream>" in xml
        assert 'bidirectional="true"' in xml and 'contentType="audio/x-l16;rate=16000"' in xml
        proxied = await client.get(
            "/answer", headers={"x-forwarded-proto": "https", "x-forwarded-host": "agent.example"}
        )
        assert ">wss://agent.example/stream</Stream>" in proxied.text
        assert 'statusCallbackUrl="https://agent.example/status"' in proxied.text
        status = await client.post("/status", data={"Event": "StartStream", "StreamID": "s1"})
        assert status.status_code == 200


async def test_caller_talking_over_the_echo_barges_in(echo_service: RunningService) -> None:
    fmt = StreamFormat.from_short("l16", 8000)
    # The echo of the first utterance starts ~0.6 s after it ends; the caller talks over it.
    caller_audio = utterances(
        [("silence", 0.3), ("speech", 1.5), ("silence", 1.0), ("speech", 0.8), ("silence", 3.0)],
        8000,
    )
    record = await fast_caller(echo_service, fmt).run(caller_audio, tail_s=1.0)
    assert record.protocol_errors == []
    clears = record.sent_by_agent("clearAudio")
    assert len(clears) == 1 and clears[0].message["streamId"] == record.stream_id
    # Caller speech restarted at 2.8 s; the guard (200 ms) and the VAD onset come first.
    assert 2.8 + 0.2 - 0.04 <= clears[0].t <= 2.8 + 0.2 + 0.3
    assert [c.message["event"] for c in record.sent_by_caller("clearedAudio")] == ["clearedAudio"]
    # The interrupted echo's checkpoint is never acknowledged; the next echo's is.
    acks = [a.message["name"] for a in record.sent_by_caller("playedStream")]
    assert acks == ["turn-2/piece-1"]


async def test_call_command_against_a_running_service(
    echo_service: RunningService, tmp_path: Path
) -> None:
    """`voicebridge call http://…` fetches the answer XML like Plivo, then holds the call."""
    wav_path = tmp_path / "caller.wav"
    audio = utterances([("silence", 0.2), ("speech", 0.6), ("silence", 0.2)], 16000)
    with wave.open(str(wav_path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(audio.tobytes())
    report_path = tmp_path / "call.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebridge.cli", "call", echo_service.http_base,
        "--wav", str(wav_path), "--report", str(report_path), "--gap", "0.5",
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    report = json.loads(report_path.read_text())
    assert report["codec"] == "l16" and report["sample_rate"] == 16000  # from the answer XML
    assert report["summary"]["checkpoints_acked"] == 1
    assert report["turns"][0]["latency_s"] is not None
    assert "checkpoints acked 1/1" in out.decode()
