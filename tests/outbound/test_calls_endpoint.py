"""``POST /calls`` on the real service, placing calls through the local Plivo REST fake, and the
call's variables carried through ``/answer`` and the stream into the pipeline's greeting."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from voicebridge.clock import StreamClock
from voicebridge.config import load_pipeline_text
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import RunningService, running_service
from voicebridge.sim.caller import PlivoCaller
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.signals import utterances
from voicebridge.telephony.call_vars import SIG_PARAM, VARS_PARAM
from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest
from voicebridge.testing.plivo_rest_fake import FakePlivoRest

from ..server.conftest import settings

KEY = "test-api-key-0123456789"
AUTH_ID = "MAFAKEACCOUNT0000001"
TOKEN = "fake-plivo-token"
GREETING_PIPELINE = """
name: outbound-greeting
stages:
  - type: decode
  - type: vad
    params: {forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: []}
  - type: rules
    params:
      greeting: "Hello {name}, this is about your visit at {time}."
      rules: []
  - type: voicebridge.testing:ToneSpeaker
    params: {ms_per_char: 5}
  - type: encode
"""


@pytest.fixture
async def plivo() -> AsyncIterator[FakePlivoRest]:
    async with FakePlivoRest(AUTH_ID, TOKEN) as fake:
        yield fake


async def service_with(
    plivo: FakePlivoRest, monkeypatch: pytest.MonkeyPatch, key: str | None = KEY
) -> Any:
    if key is None:
        monkeypatch.delenv("VOICEBRIDGE_API_KEY", raising=False)
    else:
        monkeypatch.setenv("VOICEBRIDGE_API_KEY", key)
    monkeypatch.setenv("VOICEBRIDGE_FROM_NUMBER", "+14155550100")
    monkeypatch.delenv("PLIVO_AUTH_TOKEN", raising=False)  # Plivo's signatures off here
    sessions = SessionWatch()
    rest = lambda: PlivoRest(PlivoCredentials(AUTH_ID, TOKEN), base_url=plivo.base_url)  # noqa: E731
    context = running_service(
        settings(public_url="https://agent.example"),
        load_pipeline_text(GREETING_PIPELINE),
        rest_factory=rest,
        clock_factory=StreamClock,
        on_session=sessions,
    )
    return context, sessions


async def post(service: RunningService, body: object, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient() as client:
        return await client.post(f"{service.http_base}/calls", json=body, headers=headers)


async def test_refused_without_or_with_a_wrong_key(plivo, monkeypatch):
    context, _ = await service_with(plivo, monkeypatch)
    async with context as service:
        assert (await post(service, {"to": "+15551234567"}, key=None)).status_code == 401
        assert (await post(service, {"to": "+15551234567"}, key="wrong")).status_code == 403
    assert plivo.created_calls == []


async def test_disabled_without_a_configured_key(plivo, monkeypatch):
    context, _ = await service_with(plivo, monkeypatch, key=None)
    async with context as service:
        response = await post(service, {"to": "+15551234567"})
    assert response.status_code == 503
    assert "VOICEBRIDGE_API_KEY" in response.json()["error"]
    assert plivo.created_calls == []


async def test_bad_numbers_and_vars_are_400_and_reach_no_one(plivo, monkeypatch):
    context, _ = await service_with(plivo, monkeypatch)
    async with context as service:
        bad_number = await post(service, {"to": "5551234567"})
        bad_vars = await post(service, {"to": "+15551234567", "vars": {"1x": "a"}})
        braces = await post(service, {"to": "+15551234567", "vars": {"name": "{evil}"}})
    assert [r.status_code for r in (bad_number, bad_vars, braces)] == [400, 400, 400]
    assert "E.164" in bad_number.json()["error"]
    assert plivo.created_calls == []


async def test_a_placed_call_carries_its_vars_into_the_greeting(plivo, monkeypatch):
    context, sessions = await service_with(plivo, monkeypatch)
    async with context as service:
        response = await post(
            service, {"to": "+15551234567", "vars": {"name": "Ana", "time": "3 pm"}}
        )
        assert response.status_code == 201
        [placed] = plivo.created_calls
        assert response.json() == {"request_uuid": placed.request_uuid, "status": "queued"}
        fields = placed.fields
        assert (fields["to"], fields["from"]) == ("15551234567", "14155550100")
        answer = urlsplit(fields["answer_url"])
        assert (answer.scheme, answer.netloc, answer.path) == ("https", "agent.example", "/answer")
        query = {k: v[0] for k, v in parse_qs(answer.query).items()}
        assert set(query) == {VARS_PARAM, SIG_PARAM}

        # Plivo fetches the answer URL (here at the loopback service); a forged one is refused.
        async with httpx.AsyncClient() as client:
            local = f"{service.http_base}/answer?{answer.query}"
            xml = (await client.post(local, data={"CallUUID": "c-1"})).text
            tampered = local.replace(query[SIG_PARAM], "0" * 64)
            forged = await client.post(tampered, data={"CallUUID": "c-2"})
        assert forged.status_code == 403
        stream = unescape(re.search(r"<Stream[^>]*>([^<]+)</Stream>", xml).group(1)).strip()
        stream_query = urlsplit(stream).query
        assert VARS_PARAM in stream_query

        # The stream Plivo opens carries them on: the greeting is filled.
        caller = PlivoCaller(
            f"{service.ws_url}?{stream_query}",
            StreamFormat.from_short("l16", 8000),
            speed=float("inf"),
            probe=sessions.lockstep,
        )
        await caller.run(utterances([("silence", 0.5)], 8000), tail_s=0.5)
        session = sessions.all[0]
        await session.ended.wait()
    assert session.ctx is not None
    assert session.ctx.info.vars == {"name": "Ana", "time": "3 pm"}
    said = [entry.text for entry in session.ctx.history if entry.role == "agent"]
    assert said and said[0].startswith("Hello Ana, this is about your visit at 3 pm.")
