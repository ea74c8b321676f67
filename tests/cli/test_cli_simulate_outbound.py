"""``voicebridge simulate PIPELINE --outbound leads.csv``: a campaign on one machine, no account."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicebridge.cli import main
from voicebridge.cli_errors import ExitCode
from voicebridge.config.service_settings import ENV_VARS

PIPELINE = """
name: reminders
outbound:
  on_machine: voicemail
  voicemail: "Hi {name}, this is the clinic. Please call us back."
stages:
  - type: decode
  - type: vad
    params: {forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: []}
  - type: rules
    params: {rules: []}
  - type: voicebridge.testing:ToneSpeaker
    params: {ms_per_char: 5}
  - type: encode
"""


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_a_simulated_campaign(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = tmp_path / "reminders.yaml"
    pipeline.write_text(PIPELINE)
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "number,name,callee\n+15550100001,Ana,person\n+15550100002,Ben,machine\n"
        "+15550100003,Cy,busy\n+15550100004,Di,no_answer\n"
    )
    report = tmp_path / "results.jsonl"
    code = main(["simulate", str(pipeline), "--outbound", str(leads), "--report", str(report)])
    assert code == 0
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == lines
    got = {
        r["number"]: (r["outcome"], r["answered_by"], r["voicemail"], r["attempts"]) for r in lines
    }
    assert got == {
        "+15550100001": ("completed", "human", False, 1),
        "+15550100002": ("completed", "machine", True, 1),
        "+15550100003": ("busy", None, False, 2),
        "+15550100004": ("no-answer", None, False, 2),
    }


def test_a_bad_callee_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    pipeline = tmp_path / "reminders.yaml"
    pipeline.write_text(PIPELINE)
    leads = tmp_path / "leads.csv"
    leads.write_text("number,callee\n+15550100001,robot\n")
    assert main(["simulate", str(pipeline), "--outbound", str(leads)]) == ExitCode.CONFIG
    assert "callee must be one of" in capsys.readouterr().err
