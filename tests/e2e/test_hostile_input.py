"""Hostile input against the real service: each gets a specific reason, no call disturbs another."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voicebridge.config import load_pipeline
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import RunningService, running_service
from voicebridge.sim.caller import PlivoCaller
from voicebridge.sim.signals import utterances

from .conftest import ROOT, settings


def start(encoding: str = "audio/x-l16", rate: Any = 8000, **extra: Any) -> str:
    message = {
        "sequenceNumber": 0,
        "event": "start",
        "start": {
            "callId": "hostile-call",
            "streamId": "hostile-stream",
            "accountId": "MA1",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": encoding, "sampleRate": rate},
        },
        "extra_headers": "{}",
    }
    message.update(extra)
    return json.dumps(message)


def media(payload: bytes | str, seq: int = 1) -> str:
    text = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
    return json.dumps(
        {
            "sequenceNumber": seq,
            "streamId": "hostile-stream",
            "event": "media",
            "media": {"track": "inbound", "timestamp": "1", "chunk": seq, "payload": text},
        }
    )


HOSTILE_MESSAGES: dict[str, list[str | bytes]] = {
    "non_json": [start(), "this is not json", "{broken"],
    "not_an_object": [start(), "[1, 2, 3]", "null", "42", '"text"'],
    "missing_fields": [start(), json.dumps({"event": "media"}), json.dumps({"sequenceNumber": 3})],
    "mistyped_fields": [start(), json.dumps({"event": 5}), media("AAAA").replace('"1"', "[]")],
    "binary_frames": [start(), b"\x00\x01\x02", b"RIFF...."],
    "events_before_start": [media(b"\0\0" * 160),
                            json.dumps({"event": "dtmf", "dtmf": {"digit": "1"}}), start()],
    "second_start": [start(), start(rate=16000)],
    "invalid_base64": [start(), media("!!!not base64!!!")],
    "odd_l16_payload": [start(), media(b"\0" * 321)],
    "unknown_events": [start(), json.dumps({"event": "surprise", "x": 1})],
    "acks_never_sent": [start(), json.dumps({"event": "playedStream", "name": "turn-9/piece-9"}),
                        json.dumps({"event": "played", "name": "nope"}),
                        json.dumps({"event": "clearedAudio"})],
}  # fmt: skip


async def send_all(url: str, messages: list[str | bytes]) -> tuple[int | None, str]:
    async with connect(url, compression=None) as ws:
        for message in messages:
            await ws.send(message)
        await ws.send(media(b"\0\0" * 160, seq=99))
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=0.3)
        await ws.close()
        return ws.close_code, ws.close_reason or ""


@pytest.fixture
async def service() -> Any:
    spec = load_pipeline(ROOT / "pipelines" / "echo.yaml")
    async with running_service(settings(limits={"max_message_bytes": 64 * 1024}), spec) as svc:
        yield svc


@pytest.mark.parametrize("case", sorted(HOSTILE_MESSAGES))
async def test_hostile_messages_are_survived(service: RunningService, case: str) -> None:
    code, _ = await send_all(service.ws_url, HOSTILE_MESSAGES[case])
    assert code == 1000  # the stream stayed usable; we closed it normally
    async with httpx.AsyncClient(base_url=service.http_base) as client:
        assert (await client.get("/health")).json()["status"] == "ok"


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [("audio/x-mulaw", 16000), ("audio/x-l16", 44100), ("audio/opus", 8000)],
)
async def test_unsupported_format_closes_with_1003(
    service: RunningService, encoding: str, rate: Any
) -> None:
    async with connect(service.ws_url) as ws:
        await ws.send(start(encoding, rate))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)
    assert ws.close_code == 1003
    assert "unsupported_format" in (ws.close_reason or "")


async def test_unusable_start_closes_with_1008(service: RunningService) -> None:
    async with connect(service.ws_url) as ws:
        await ws.send(start("audio/x-l16", "fast"))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)
    assert ws.close_code == 1008
    assert "invalid_start" in (ws.close_reason or "")
    assert "sampleRate" in (ws.close_reason or "")


async def test_oversize_message_is_refused_by_size_limit(service: RunningService) -> None:
    async with connect(service.ws_url, max_size=None) as ws:
        await ws.send(start())
        await ws.send(media(b"\0" * (2 * 1024 * 1024)))  # megabytes of "audio"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)
    assert ws.close_code == 1009


async def test_stop_event_ends_the_call_normally(service: RunningService) -> None:
    async with connect(service.ws_url) as ws:
        await ws.send(start())
        await ws.send(json.dumps({"event": "stop", "streamId": "hostile-stream"}))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)
    assert ws.close_code == 1000


async def test_a_flood_of_garbage_closes_that_call_with_policy_violation(
    service: RunningService,
) -> None:
    async with connect(service.ws_url) as ws:
        await ws.send(start())
        for _ in range(60):
            await ws.send("garbage")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), timeout=5)
    assert ws.close_code == 1008
    assert "too_many_bad_messages" in (ws.close_reason or "")


async def test_hostile_calls_do_not_disturb_a_healthy_call(service: RunningService) -> None:
    fmt = StreamFormat.from_short("l16", 8000)
    audio = utterances([("silence", 0.2), ("speech", 0.6), ("silence", 1.0)], 8000)
    healthy = PlivoCaller(service.ws_url, fmt, speed=1.0).run(audio, tail_s=0.8)  # real time
    hostile = [send_all(service.ws_url, messages) for messages in HOSTILE_MESSAGES.values()]
    record, *_ = await asyncio.gather(healthy, *hostile)
    assert record.protocol_errors == []
    assert [a.message["name"] for a in record.sent_by_caller("playedStream")] == ["turn-1/piece-1"]


async def test_a_client_faster_than_real_time_still_gets_paced_audio() -> None:
    """Pacing follows the caller's stream time, so a peer streaming at 10x real time hears the
    whole echo and acknowledges every checkpoint, with no spurious barge-in. Its 5.5 s of audio
    arrive in about 0.55 s: the fair share's burst allows that much here (the default, 2 s,
    would drop the rest: ``tests/abuse/test_media_flood.py``)."""
    fmt = StreamFormat.from_short("mulaw", 8000)
    audio = utterances([("silence", 0.3), ("speech", 1.2), ("silence", 3.0)], 8000)
    spec = load_pipeline(ROOT / "pipelines" / "echo.yaml")
    limits = {"max_message_bytes": 64 * 1024, "media_burst_s": 10.0}
    async with running_service(settings(limits=limits), spec) as service:
        caller = PlivoCaller(service.ws_url, fmt, speed=10.0)
        record = await caller.run(audio, tail_s=1.0)
        assert (
            service.app.state.metrics.value("voicebridge_dropped_frames_total", {"reason": "flood"})
            == 0
        )
    assert record.protocol_errors == [] and record.sent_by_agent("clearAudio") == []
    assert [a.message["name"] for a in record.sent_by_caller("playedStream")] == ["turn-1/piece-1"]
