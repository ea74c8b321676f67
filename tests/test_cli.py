"""The voicebridge command line: validate, stages, xml and serve."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from voicebridge.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "pipelines" / "echo.yaml")]) == 0
    assert "ok (echo: decode -> vad -> echo -> encode)" in capsys.readouterr().out


def test_validate_reports_every_error_with_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\n"
        "stages:\n"
        "  - type: decode\n"
        "  - type: vda\n"
        "  - type: vad\n"
        "    params:\n"
        "      aggressiveness: 9\n"
    )
    assert main(["validate", str(bad), str(ROOT / "pipelines" / "echo.yaml")]) == 3
    err = capsys.readouterr().err
    assert f"{bad}:4" in err and "vda" in err and "did you mean" in err.lower()
    assert f"{bad}:7" in err and "aggressiveness" in err


def test_stages_lists_builtins_with_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stages"]) == 0
    out = capsys.readouterr().out
    for name in ("decode", "vad", "echo", "rules", "encode"):
        assert f"\n{name}  [" in f"\n{out}"
    assert "aggressiveness: int = 2" in out
    assert "min_silence_ms" in out


def test_stages_shows_the_fields_of_nested_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stages"]) == 0
    out = capsys.readouterr().out
    rules = out.split("\nrules  [", 1)[1].split("\n\n", 1)[0]
    lines = rules.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("    rules: list[Rule]"))
    nested = [line.strip() for line in lines[at + 1 :] if line.startswith("        ")]
    names = {line.split(":", 1)[0] for line in nested}
    assert {"keywords", "regex", "dtmf", "reply", "action", "transfer_to"} <= names
    # A nested model's default is its fields, listed beneath it, not one long repr.
    llm = out.split("\nllm  [", 1)[1].split("\n\n", 1)[0]
    assert "    resilience: ResilienceParams = {...}" in llm
    assert "        retries: int = 1" in llm
    assert "            enabled: bool = True" in llm  # breaker, two levels down


def test_xml_prints_a_valid_stream_element(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["xml", "--url", "wss://agent.example/stream", "--codec", "mulaw"]) == 0
    root = ET.fromstring(capsys.readouterr().out)
    stream = root.find("Stream")
    assert stream is not None and stream.text == "wss://agent.example/stream"
    assert stream.get("contentType") == "audio/x-mulaw;rate=8000"
    assert stream.get("bidirectional") == "true" and stream.get("keepCallAlive") == "true"


def test_xml_rejects_a_plain_http_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["xml", "--url", "http://agent.example/stream"]) == 2
    assert capsys.readouterr().err == (
        "voicebridge: xml: url: expected a ws:// or wss:// URL, got 'http://agent.example/stream'\n"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_the_service_on_the_given_port(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicebridge.cli", "serve", "pipelines/echo.yaml",
         "--host", "127.0.0.1", "--port", str(port), "--log-format", "json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert health["status"] == "ok" and health["pipeline"] == "echo"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert b'"event": "service_ready"' in err
