"""Hanging up and transferring through Plivo's REST API, against a local fake of that API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest

from voicebridge.config import ServiceSettings, load_pipeline_text
from voicebridge.server.run import running_service
from voicebridge.sim.signals import speech_like
from voicebridge.telephony.call_control import PlivoCallControl
from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest
from voicebridge.testing.harness import CallHarness
from voicebridge.testing.plivo_rest_fake import FakePlivoRest

AUTH_ID, TOKEN = "MATESTACCOUNT", "test-token-not-a-secret"

PIPELINE = """
name: call-control
session: {chunk_ms: 100, max_lead_ms: 600}
stages:
  - type: decode
  - type: vad
    params: {min_speech_ms: 60, min_silence_ms: 300, forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: [LINE]}
  - type: voicebridge.testing:ScriptedDialogue
    params: {greeting: Hi there.}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""


def spec(line: str):  # type: ignore[no-untyped-def]
    return load_pipeline_text(PIPELINE.replace("LINE", repr(line)))


@pytest.fixture
async def fake() -> AsyncIterator[FakePlivoRest]:
    async with FakePlivoRest(AUTH_ID, TOKEN, live_calls={"harness-call"}) as server:
        yield server


def control(fake: FakePlivoRest) -> PlivoCallControl:
    rest = PlivoRest(
        PlivoCredentials(AUTH_ID, TOKEN), base_url=fake.base_url, backoff_s=0.01, timeout_s=2
    )
    return PlivoCallControl(rest, lambda to: f"https://agent.example/transfer?to={quote(to)}")


async def say_after_greeting(call: CallHarness, seconds: float = 0.6) -> None:
    await call.idle(1.2)  # "Hi there." = 8 characters + 2 gaps = 0.5 s, then quiet
    await call.speak(speech_like(seconds, call.rate))
    await call.until(lambda: call.wire.closed is not None, limit_s=10)


async def test_goodbye_plays_then_rest_hangup_then_socket_closes(fake: FakePlivoRest) -> None:
    async with CallHarness(spec("goodbye"), call_control=control(fake)) as call:
        await say_after_greeting(call)
        assert call.wire.closed == (1000, "agent hung up")
        (request,) = fake.requests
        assert request.method == "DELETE"
        assert request.path == f"/v1/Account/{AUTH_ID}/Call/harness-call/"
        assert request.auth == "ok"
        played = call.timeline("played")[-1]
        hangup = call.timeline("rest_hangup")[0]
        assert played["text"] == "Goodbye." and played["t"] <= hangup["t"]
        assert hangup["outcome"] == "hung_up"
        assert "harness-call" in fake.ended_calls


async def test_call_already_ended_is_fine(fake: FakePlivoRest) -> None:
    fake.end_call("harness-call")
    async with CallHarness(spec("goodbye"), call_control=control(fake)) as call:
        await say_after_greeting(call)
        assert call.timeline("rest_hangup")[0]["outcome"] == "already_ended"
        assert call.wire.closed == (1000, "agent hung up")


async def test_rest_failure_is_retried_then_the_stream_still_closes(fake: FakePlivoRest) -> None:
    fake.fail_next(5, status=503)
    async with CallHarness(spec("goodbye"), call_control=control(fake)) as call:
        await say_after_greeting(call)
        assert len(fake.requests) == 3  # bounded retries
        assert "503" in call.timeline("rest_hangup_failed")[0]["error"]
        assert call.wire.closed == (1000, "agent hung up")


async def test_transfer_after_the_announcement(fake: FakePlivoRest) -> None:
    async with CallHarness(spec("transfer me please"), call_control=control(fake)) as call:
        await say_after_greeting(call)
        (transfer,) = fake.transfers
        assert transfer.legs == "aleg"
        assert transfer.aleg_url == "https://agent.example/transfer?to=%2B15550100"
        assert call.timeline("played")[-1]["text"] == "Transferring you now."
        assert call.session.end_reason == "transferred"


async def test_transfer_without_credentials_keeps_the_call() -> None:
    async with CallHarness(spec("transfer me")) as call:
        await say_after_greeting(call)
        assert call.wire.closed is None
        assert call.timeline("transfer_unavailable")[0]["to"] == "+15550100"


async def test_service_serves_dial_xml_for_transfers() -> None:
    settings = ServiceSettings.model_validate(
        {"host": "127.0.0.1", "port": 0, "security": {"stream_token": "off"}}
    )
    async with (
        running_service(settings, spec("x")) as service,
        httpx.AsyncClient(base_url=service.http_base) as client,
    ):
        ok = await client.post("/transfer?to=%2B15550100", data={"CallUUID": "c1"})
        assert ok.status_code == 200
        assert "<Number>+15550100</Number>" in ok.text and "<Dial" in ok.text
        sip = await client.get("/transfer", params={"to": "sip:desk@example.com"})
        assert "<User>sip:desk@example.com</User>" in sip.text
        bad = await client.get("/transfer", params={"to": "<script>"})
        assert bad.status_code == 400


async def test_service_builds_call_control_from_plivo_credentials(
    fake: FakePlivoRest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLIVO_AUTH_ID", AUTH_ID)
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("PLIVO_API_URL", fake.base_url)
    seen = []
    settings = ServiceSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": 0,
            "public_url": "https://agent.example",
            "security": {"stream_token": "off"},
        }
    )
    async with running_service(settings, spec("x"), on_session=seen.append) as service:
        from websockets.asyncio.client import connect

        async with connect(service.ws_url) as ws:
            await ws.send(
                '{"event": "start", "start": {"callId": "c1", "streamId": "s1", '
                '"mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 8000}}}'
            )
            await ws.recv()
        (session,) = seen
        assert isinstance(session.call_control, PlivoCallControl)
        await session.call_control.transfer("harness-call", "+15550100")
    assert fake.transfers[0].aleg_url == "https://agent.example/transfer?to=%2B15550100"
