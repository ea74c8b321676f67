"""What became of a placed call: ``/hangup`` and ``/machine`` callbacks recorded by request_uuid,
read back with ``GET /calls/{request_uuid}`` under the API key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from voicebridge.config import load_pipeline_text
from voicebridge.server.call_outcomes import CallOutcomes
from voicebridge.server.outcome_store import MemoryOutcomes
from voicebridge.server.run import running_service
from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest
from voicebridge.testing.plivo_rest_fake import FakePlivoRest

from ..server.conftest import settings

KEY = "test-api-key-0123456789"
AUTH_ID = "MAFAKEACCOUNT0000001"
TOKEN = "fake-plivo-token"
PIPELINE = """
name: outcomes
outbound: {on_machine: hangup}
stages:
  - type: decode
  - type: vad
  - type: echo
  - type: encode
"""


@pytest.fixture
async def plivo() -> AsyncIterator[FakePlivoRest]:
    async with FakePlivoRest(AUTH_ID, TOKEN) as fake:
        yield fake


async def test_hangup_and_machine_callbacks_make_the_outcome(plivo, monkeypatch):
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", KEY)
    monkeypatch.setenv("VOICEBRIDGE_FROM_NUMBER", "+14155550100")
    monkeypatch.delenv("PLIVO_AUTH_TOKEN", raising=False)
    rest = lambda: PlivoRest(PlivoCredentials(AUTH_ID, TOKEN), base_url=plivo.base_url)  # noqa: E731
    auth = {"Authorization": f"Bearer {KEY}"}
    async with running_service(
        settings(public_url="https://agent.example"),
        load_pipeline_text(PIPELINE),
        rest_factory=rest,
    ) as service:
        base = service.http_base
        async with httpx.AsyncClient() as client:
            placed = await client.post(f"{base}/calls", json={"to": "+15551234567"}, headers=auth)
            request_uuid = placed.json()["request_uuid"]
            fields = plivo.created_calls[0].fields
            assert fields["hangup_url"] == "https://agent.example/hangup"
            assert fields["hangup_method"] == "POST"

            before = (await client.get(f"{base}/calls/{request_uuid}", headers=auth)).json()
            assert before["status"] == "queued"
            ids = {"RequestUUID": request_uuid, "CallUUID": "call-1"}
            machine = await client.post(f"{base}/machine", data={**ids, "Machine": "true"})
            assert machine.status_code == 404  # the call's stream is gone; the result is kept
            hangup = {**ids, "CallStatus": "completed", "HangupCause": "NORMAL_CLEARING"}
            await client.post(f"{base}/hangup", data={**hangup, "Duration": "17"})
            after = await client.get(f"{base}/calls/{request_uuid}", headers=auth)
            unknown = await client.get(f"{base}/calls/nope", headers=auth)
            no_key = await client.get(f"{base}/calls/{request_uuid}")
    assert after.json() == {
        "request_uuid": request_uuid,
        "call_uuid": "call-1",
        "status": "completed",
        "hangup_cause": "NORMAL_CLEARING",
        "duration_s": 17.0,
        "answered_by": "machine",
        "voicemail": False,
        "report": {},
        "report_pending": False,  # no stream started here: no report to wait for
    }
    assert unknown.status_code == 404
    assert no_key.status_code == 401


async def test_unanswered_statuses_and_bounds():
    outcomes = CallOutcomes(MemoryOutcomes(max_records=2))
    for request in ("r1", "r2", "r3"):
        await outcomes.placed(request)
    assert await outcomes.get("r1") is None  # the oldest is forgotten
    busy = {"ALegRequestUUID": "r2", "CallStatus": "busy", "Duration": "0"}
    assert await outcomes.hung_up(busy) == "busy"
    found = await outcomes.get("r2")
    assert found is not None and (found.status, found.duration_s) == ("busy", 0.0)
    odd = {"RequestUUID": "r3", "CallStatus": "<script>", "Duration": "x"}
    assert await outcomes.hung_up(odd) == "completed"
    found = await outcomes.get("r3")
    assert found is not None and (found.status, found.duration_s) == ("completed", None)
    assert await outcomes.hung_up({"RequestUUID": "unknown"}) is None
