"""``voicebridge call`` against a real service on a loopback port shows the conversation as
``simulate`` does: the caller's lines, the agent's replies as heard, each turn's latency."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from voicebridge.cli import main
from voicebridge.config import ServiceSettings, load_pipeline_text
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.server.run import running_service

PIPELINE = """
name: bakery
stages:
  - type: decode
  - type: vad
    params: {min_speech_ms: 60, min_silence_ms: 300, forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: ["what time do you open"]}
  - type: voicebridge.testing:ScriptedDialogue
    params: {greeting: "Hello there.", reply: "We open at nine."}
  - type: hibari
    params: {seed: 0}  # the same audio every run
  - type: encode
"""


@contextmanager
def service_in_a_thread(spec: PipelineSpec) -> Iterator[str]:
    """The real service (stream tokens on, as deployed) on its own event loop; yields its URL."""
    ready = threading.Event()
    box: dict[str, object] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        box["stop"] = (asyncio.get_running_loop(), stop)
        try:
            settings = ServiceSettings(host="127.0.0.1", port=0)
            async with running_service(settings, spec) as service:
                box["url"] = service.http_base
                ready.set()
                await stop.wait()
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            raise

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(120), "the service did not start"
    assert "error" not in box, box["error"]
    try:
        yield str(box["url"])
    finally:
        loop, stop = box["stop"]  # type: ignore[misc]
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def test_call_prints_and_reports_the_agents_replies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLIVO_AUTH_TOKEN", raising=False)
    report = tmp_path / "call.json"
    with service_in_a_thread(load_pipeline_text(PIPELINE)) as url:
        args = ["call", url, "--say", "What time do you open?", "--gap", "0.5"]
        code = main([*args, "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    agent = [words(line.split("agent:", 1)[1]) for line in lines if "agent:" in line]
    assert len(agent) == 2 and "hello there" in agent[0], out
    assert "open at" in agent[1], out  # Whisper tiny may hear "we'll open at 9"
    assert "  caller: What time do you open?" in lines
    latency = [line.strip() for line in lines if line.strip().startswith("latency ")]
    assert len(latency) == 1 and "first audio after" in latency[0] and "playout" in latency[0]

    data = json.loads(report.read_text())
    reply = data["turns"][1]
    assert reply["caller_said"] == "What time do you open?"
    assert reply["agent_text"] and "open at" in words(" ".join(reply["agent_text"]))
    assert "open at" in words(reply["heard_text"])
    assert [h["role"] for h in data["history"]] == ["agent", "caller", "agent"]
    assert [h["turn"] for h in data["history"] if h["role"] == "agent"] == [1, 2]
