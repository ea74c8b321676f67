"""The simulator and `voicebridge call` hold calls with a service whose protections are on."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import wave
from pathlib import Path

import pytest

from voicebridge.config import load_pipeline
from voicebridge.plivo.formats import StreamFormat
from voicebridge.sim.signals import utterances
from voicebridge.sim.simulate import CallerLine, simulate_call

from .conftest import ENV, ROOT, secured_service


async def test_simulate_follows_the_answer_xml_and_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    """`voicebridge simulate` builds its service from the environment like `serve` does."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    spec = load_pipeline(ROOT / "pipelines" / "echo.yaml")
    fmt = StreamFormat.from_short("l16", 16000)
    audio = utterances([("silence", 0.2), ("speech", 0.6), ("silence", 0.2)], 16000)
    call = await simulate_call(spec, fmt, [CallerLine(None, audio)], fast=True, tail_s=0.5)
    assert call.record.protocol_errors == []
    assert call.record.sent_by_agent("playAudio"), "the agent never answered"
    assert call.end_reason == "socket_closed"  # the caller hung up


def _wav(path: Path) -> None:
    audio = utterances([("silence", 0.2), ("speech", 0.6), ("silence", 0.2)], 16000)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(audio.tobytes())


async def _call(url: str, tmp_path: Path, env: dict[str, str]) -> tuple[int, str, str]:
    _wav(tmp_path / "caller.wav")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebridge.cli", "call", url,
        "--wav", str(tmp_path / "caller.wav"), "--report", str(tmp_path / "call.json"),
        "--gap", "0.5",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_call_command_against_a_secured_service(tmp_path: Path) -> None:
    base_env = {k: v for k, v in os.environ.items() if k not in ENV}
    base_env["PYTHONPATH"] = str(ROOT)
    async with secured_service() as service:
        code, out, err = await _call(
            service.http_base, tmp_path, {**base_env, "PLIVO_AUTH_TOKEN": ENV["PLIVO_AUTH_TOKEN"]}
        )
        assert code == 0, err
        report = json.loads((tmp_path / "call.json").read_text())
        assert report["summary"]["checkpoints_acked"] == 1
        assert "token=" not in json.dumps(report)  # the report names the URL, not its token
        # Without the auth token the answer request is unsigned: a clear refusal, no traceback.
        code, out, err = await _call(service.http_base, tmp_path, base_env)
        assert code == 5  # refused by the server
        assert "answered 403: forbidden: missing signature" in err
        assert "PLIVO_AUTH_TOKEN" in err and "Traceback" not in err
        # A bare ws:// URL has no token: the handshake is refused, and said so.
        code, out, err = await _call(service.ws_url, tmp_path, base_env)
        assert code == 5
        assert "refused the WebSocket (403: stream token refused: missing)" in err
        assert "Traceback" not in err
