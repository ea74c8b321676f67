"""Whole calls through the offline default pipeline, simulated over the real service."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest

from voicebridge.cli import main
from voicebridge.config import load_pipeline
from voicebridge.plivo.formats import StreamFormat
from voicebridge.sim.analysis import build_report
from voicebridge.sim.html_report import render_html
from voicebridge.sim.simulate import CallerLine, simulate_call
from voicebridge.stages.tts.hibari import synthesize

from .conftest import ROOT

FORMATS = [("mulaw", 8000), ("l16", 8000), ("l16", 16000)]


@pytest.fixture(scope="module")
def offline_spec():  # type: ignore[no-untyped-def]
    return load_pipeline(ROOT / "pipelines" / "offline.yaml")


def line(text: str, rate: int) -> CallerLine:
    pcm = synthesize(text, rate, pitch_semitones=-2.0)
    return CallerLine(text, pcm)


@pytest.mark.parametrize(("codec", "rate"), FORMATS)
async def test_two_turn_offline_conversation(  # type: ignore[no-untyped-def]
    offline_spec, codec: str, rate: int
) -> None:
    fmt = StreamFormat.from_short(codec, rate)
    lines = [line("What time do you open tomorrow?", rate), line("Thanks, goodbye.", rate)]
    call = await simulate_call(offline_spec, fmt, lines, fast=True)
    report = build_report(call)

    assert report.protocol_errors == []
    greeting, hours, goodbye = report.turns
    # Each row carries the call's own turn numbers, those in its checkpoints' names.
    assert [t.agent_turns for t in report.turns] == [[1], [2], [3]]
    assert {c.name.split("/")[0] for c in report.checkpoints} == {"turn-1", "turn-2", "turn-3"}
    assert greeting.caller_said is None and "Harbor Street Bakery" in greeting.heard_text
    assert hours.transcript is not None and "open tomorrow" in hours.transcript.lower()
    assert "seven in the morning" in hours.heard_text
    assert goodbye.transcript is not None and "goodbye" in goodbye.transcript.lower()
    assert goodbye.heard_text == "Thanks for calling. Goodbye!"
    # Every checkpoint was acknowledged by the playout model, none cleared.
    assert report.checkpoints and all(c.acked_s is not None for c in report.checkpoints)
    assert not any(c.cleared for c in report.checkpoints)
    # The agent hung up once its goodbye had played.
    assert report.closed_by == "agent" and report.close_code == 1000
    assert call.end_reason == "hangup:rules"
    last_ack = max(c.acked_s for c in report.checkpoints if c.acked_s is not None)
    assert report.duration_s >= last_ack
    # The dialogue history holds what the caller heard, in order.
    roles = [h["role"] for h in report.history]
    assert roles == ["agent", "caller", "agent", "caller", "agent"]
    # Virtual time: latency is the end-of-turn check (200 ms of silence: whisper's words at the
    # pause are a question and a closing "goodbye", complete) and the VAD's hangover, not
    # compute time; the old silence timer alone took 500 ms or more.
    for turn in (hours, goodbye):
        assert turn.latency_s is not None and 0.2 <= turn.latency_s < 0.5


async def test_html_report_shows_the_call(offline_spec) -> None:  # type: ignore[no-untyped-def]
    fmt = StreamFormat.from_short("l16", 8000)
    call = await simulate_call(offline_spec, fmt, [line("Where are you located?", 8000)], fast=True)
    report = build_report(call)
    html = render_html(report, call.record.caller_audio, call.record.heard_audio, 8000)
    assert 'id="lane-caller"' in html and 'id="lane-heard"' in html
    assert "Where are you located?" in html
    assert "42 Harbor Street" in html
    assert html.count('data-kind="checkpoint"') >= 3
    assert html.count("<audio") == 3


def test_simulate_cli_writes_wav_json_and_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, rep, page = tmp_path / "call.wav", tmp_path / "call.json", tmp_path / "call.html"
    code = main(
        ["simulate", str(ROOT / "pipelines" / "offline.yaml"), "--say", "Goodbye.", "--fast",
         "--codec", "mulaw", "--out", str(out), "--report", str(rep), "--html", str(page)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "caller: Goodbye." in printed and "agent hung up" in printed
    with wave.open(str(out)) as wav:
        assert wav.getnchannels() == 2 and wav.getframerate() == 8000
        assert wav.getnframes() > 8000
    data = json.loads(rep.read_text())
    assert data["summary"]["checkpoints_acked"] == data["summary"]["checkpoints_sent"] > 0
    assert "<svg" in page.read_text()


async def test_barge_in_through_the_real_service(offline_spec) -> None:  # type: ignore[no-untyped-def]
    fmt = StreamFormat.from_short("l16", 16000)
    lines = [line("What time do you open tomorrow?", 16000), line("Where are you located?", 16000)]
    call = await simulate_call(offline_spec, fmt, lines, fast=True, interrupt_after_s=1.5)
    report = build_report(call)
    assert report.protocol_errors == []
    hours = report.turns[1]
    assert hours.interrupted
    full = " ".join(hours.agent_text)
    assert hours.heard_text and full.startswith(hours.heard_text)
    assert len(hours.heard_text.split()) < len(full.split())
    (barge,) = [b for b in report.barge_ins if b["cause"] == "speech"]
    speech_start = report.turns[2].caller_speech_start_s
    assert speech_start is not None
    assert speech_start + 0.2 - 0.04 <= float(barge["t"]) <= speech_start + 0.2 + 0.1  # type: ignore[arg-type]
    # The dialogue was told the caller heard only part of the reply.
    agent_entries = [h for h in report.history if h["role"] == "agent"]
    assert agent_entries[1]["interrupted"] is True
    assert agent_entries[1]["text"] == hours.heard_text
    # Checkpoints dropped by the clear were never acknowledged.
    assert all(c.acked_s is None for c in report.checkpoints if c.cleared)
    # The reply to the caller's last line has no next line to cut it off: it plays to the end.
    address = report.turns[2]
    assert not address.interrupted and address.heard_text == " ".join(address.agent_text)
    assert agent_entries[2]["interrupted"] is False
