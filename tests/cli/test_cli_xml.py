"""``voicebridge xml`` prints exactly what ``/answer`` returns for the same settings."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from voicebridge.cli import main
from voicebridge.config import load_pipeline, load_service_settings
from voicebridge.config.service_settings import ENV_VARS
from voicebridge.server.app import create_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


async def answer(config: Path) -> str:
    settings = load_service_settings(config)
    app = create_app(settings, load_pipeline(ROOT / "pipelines" / "echo.yaml"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8080") as client:
        response = await client.post("/answer", data={"CallUUID": "call-1", "From": "+1555"})
    response.raise_for_status()
    return response.text


@pytest.mark.parametrize(
    "stream",
    [
        "{}",
        "{codec: mulaw, sample_rate: 8000, stream_timeout_s: 600, extra_headers: {team: sales}}",
        "{status_callback: false, keep_call_alive: false, noise_cancellation: true}",
    ],
)
async def test_xml_equals_what_answer_returns(
    stream: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "service.yaml"
    config.write_text(
        "public_url: https://agent.example.com/voice\n"
        f"stream: {stream}\n"
        "security: {stream_token: 'off', verify_signatures: 'off'}\n"
    )
    answered = await answer(config)
    capsys.readouterr()  # the service's log line
    assert main(["xml", "--config", str(config)]) == 0
    assert capsys.readouterr().out == answered


async def test_xml_has_the_attributes_answer_has(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["xml", "--url", "wss://agent.example.com/stream", "--codec", "mulaw"]) == 0
    stream = ET.fromstring(capsys.readouterr().out).find("Stream")
    assert stream is not None
    assert stream.get("contentType") == "audio/x-mulaw;rate=8000"
    assert stream.get("streamTimeout") == "86400"
    assert stream.get("statusCallbackUrl") == "https://agent.example.com/status"
    assert stream.get("statusCallbackMethod") == "POST"
