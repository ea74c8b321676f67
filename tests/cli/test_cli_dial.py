"""``voicebridge dial`` against the local Plivo REST fake: the call placed, and its failures as
one line with the documented exit codes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from voicebridge.cli import main
from voicebridge.cli_errors import ExitCode
from voicebridge.config.service_settings import ENV_VARS
from voicebridge.telephony.call_vars import verify_vars
from voicebridge.testing.plivo_rest_fake import FakePlivoRest

AUTH_ID = "MAFAKEACCOUNT0000001"
TOKEN = "fake-plivo-token"
KEY = "service-key-0123456789"


@pytest.fixture
async def plivo(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakePlivoRest]:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    async with FakePlivoRest(AUTH_ID, TOKEN) as fake:
        monkeypatch.setenv("PLIVO_AUTH_ID", AUTH_ID)
        monkeypatch.setenv("PLIVO_AUTH_TOKEN", TOKEN)
        monkeypatch.setenv("PLIVO_API_URL", fake.base_url)
        monkeypatch.setenv("VOICEBRIDGE_API_KEY", KEY)
        monkeypatch.delenv("VOICEBRIDGE_FROM_NUMBER", raising=False)
        yield fake


async def dial(*args: str) -> int:
    """The command in a thread: it runs its own event loop while the fake serves in ours."""
    return await asyncio.to_thread(main, ["dial", *args])


async def test_dial_places_the_call_with_signed_vars(plivo, capsys):
    code = await dial(
        "+1 555 123 4567",
        "--from",
        "+14155550100",
        "--public-url",
        "https://agent.example",
        "--var",
        "name=Ana Lopez",
        "--var",
        "time=3 pm",
    )
    assert code == 0
    [placed] = plivo.created_calls
    out = json.loads(capsys.readouterr().out)
    assert out == {"to": "+15551234567", "request_uuid": placed.request_uuid, "status": "queued"}
    assert (placed.fields["to"], placed.fields["from"]) == ("15551234567", "14155550100")
    answer = urlsplit(placed.fields["answer_url"])
    assert f"{answer.scheme}://{answer.netloc}{answer.path}" == "https://agent.example/answer"
    query = {k: v[0] for k, v in parse_qs(answer.query).items()}
    assert verify_vars(query, KEY) == {"name": "Ana Lopez", "time": "3 pm"}


async def test_a_bad_number_is_a_usage_error_and_calls_no_one(plivo, capsys):
    code = await dial("5551234567", "--from", "+14155550100", "--public-url", "https://a.example")
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "E.164" in err and len(err.strip().splitlines()) == 1
    assert plivo.requests == []


async def test_plivo_refusing_is_a_connect_error(plivo, capsys):
    plivo.fail_next(5, status=503)
    code = await dial("+15551234567", "--from", "+14155550100", "--public-url", "https://a.x")
    assert code == ExitCode.CONNECT
    assert "HTTP 503" in capsys.readouterr().err
    assert plivo.created_calls == []


async def test_missing_pieces_say_what_to_set(plivo, monkeypatch, capsys):
    assert await dial("+15551234567", "--public-url", "https://a.x") == ExitCode.USAGE
    assert "--from" in capsys.readouterr().err
    assert await dial("+15551234567", "--from", "+14155550100") == ExitCode.USAGE
    assert "--public-url" in capsys.readouterr().err
    monkeypatch.delenv("PLIVO_AUTH_TOKEN")
    code = await dial("+15551234567", "--from", "+14155550100", "--public-url", "https://a.x")
    assert code == ExitCode.STARTUP
    assert "PLIVO_AUTH_TOKEN" in capsys.readouterr().err
    monkeypatch.delenv("VOICEBRIDGE_API_KEY")
    code = await dial(
        "+15551234567", "--from", "+1415555010", "--public-url", "https://a.x", "--var", "a=b"
    )
    assert code == ExitCode.USAGE
    assert "VOICEBRIDGE_API_KEY" in capsys.readouterr().err
    assert plivo.requests == []


async def test_a_pipeline_with_an_outbound_section_asks_for_machine_detection(
    plivo, tmp_path, capsys
):
    pipeline = tmp_path / "outbound.yaml"
    pipeline.write_text(
        "name: outbound\n"
        "outbound: {on_machine: hangup, machine_detection: {initial_silence_ms: 3000}}\n"
        "stages:\n  - type: decode\n  - type: vad\n  - type: echo\n  - type: encode\n"
    )
    args = ["+15551234567", "--from", "+14155550100", "--public-url", "https://a.example"]
    assert await dial(*args, "--pipeline", str(pipeline)) == 0
    fields = plivo.created_calls[0].fields
    assert fields["machine_detection"] == "true"
    assert fields["machine_detection_initial_silence"] == "3000"
    assert fields["machine_detection_url"] == "https://a.example/machine"


async def test_a_campaign_from_a_csv_through_the_service(plivo, tmp_path, monkeypatch, capsys):
    import httpx

    from voicebridge.config import load_pipeline_text
    from voicebridge.server.run import running_service
    from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest

    from ..server.conftest import settings

    monkeypatch.setenv("VOICEBRIDGE_FROM_NUMBER", "+14155550100")
    monkeypatch.delenv("PLIVO_AUTH_TOKEN", raising=False)  # the service's signature checks off
    leads = tmp_path / "leads.csv"
    leads.write_text("number,name\n+15550000001,Ana\n+15550000002,Bo\n+15550000003,Cy\n")
    spec = load_pipeline_text(
        "name: p\nstages:\n  - type: decode\n  - type: vad\n  - type: echo\n  - type: encode\n"
    )
    rest = lambda: PlivoRest(PlivoCredentials(AUTH_ID, TOKEN), base_url=plivo.base_url)  # noqa: E731
    async with running_service(settings(), spec, rest_factory=rest) as service:
        args = ["--csv", str(leads), "--service", service.http_base, "--public-url"]
        args += ["https://a.example", "--rate", "50", "--poll", "0.05", "--retry-delay", "0"]
        run = asyncio.ensure_future(dial(*args))
        ended: set[str] = set()
        busy_once = "15550000002"
        async with httpx.AsyncClient() as client:
            while not run.done():  # play Plivo: end each placed call (one number busy once)
                for placed in list(plivo.created_calls):
                    if placed.request_uuid in ended:
                        continue
                    ended.add(placed.request_uuid)
                    first_try = sum(c.fields["to"] == busy_once for c in plivo.created_calls) == 1
                    status = (
                        "busy" if placed.fields["to"] == busy_once and first_try else "completed"
                    )
                    await client.post(
                        f"{service.http_base}/hangup",
                        data={
                            "RequestUUID": placed.request_uuid,
                            "CallStatus": status,
                            "HangupCause": "NORMAL_CLEARING",
                            "Duration": "5",
                        },
                    )
                await asyncio.sleep(0.01)
        assert await run == 0
    dialled = [c.fields["to"] for c in plivo.created_calls]
    assert sorted(dialled) == ["15550000001", "15550000002", "15550000002", "15550000003"]
    results = [json.loads(line) for line in (tmp_path / "leads.csv.results.jsonl").open()]
    assert sorted((r["number"], r["outcome"], r["attempts"]) for r in results) == [
        ("+15550000001", "completed", 1),
        ("+15550000002", "completed", 2),
        ("+15550000003", "completed", 1),
    ]
    assert "3 numbers done (completed: 3)" in capsys.readouterr().out
    # Run again: every number is finished, nobody is called twice.
    assert await dial("--csv", str(leads), "--service", "http://127.0.0.1:9") == 0
    assert len(plivo.created_calls) == 4
