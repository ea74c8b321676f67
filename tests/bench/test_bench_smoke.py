"""Smoke run of the capacity benchmark (bench/capacity.py): a few calls for a few seconds, so the
harness cannot rot. No timing is asserted; the figures of a run this small mean nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import capacity  # noqa: E402

PIPECAT = capacity.PIPECAT_VENV / "bin" / "python"


def run(tmp_path: Path, frameworks: str) -> dict:
    out = tmp_path / "capacity.json"
    plot = tmp_path / "results.png"
    argv = ["--frameworks", frameworks, "--levels-vb", "2", "--levels-pc", "1"]
    argv += [
        "--duration",
        "6",
        "--stagger",
        "0.5",
        "--warmup",
        "0",
        "--out",
        str(out),
        "--plot",
        str(plot),
    ]
    result = capacity.main(argv)
    assert json.loads(out.read_text())["frameworks"]
    assert out.with_suffix(".md").read_text().startswith("## Side by side")
    assert plot.stat().st_size > 0
    return result


def check_level(level: dict) -> None:
    assert level["error_count"] == 0, level["errors"]
    assert level["frames_sent"] == level["frames"]  # every caller streamed its whole track
    assert level["frames_probed"] > 0  # the server reported when it processed them
    assert level["calls_without_probe"] == 0
    assert level["fw_latency_ms"]["n"] > 0  # the agent answered, and the answer was timed
    assert level["latency_ms"]["n"] > 0


def test_voicebridge_smoke(tmp_path: Path) -> None:
    result = run(tmp_path, "voicebridge")
    (fw,) = result["frameworks"]
    assert fw["name"] == "voicebridge"
    (level,) = fw["levels"]
    assert level["n"] == 2
    check_level(level)


@pytest.mark.skipif(not PIPECAT.exists(), reason="bench/.venv-pipecat not made (bench/capacity.py)")
def test_pipecat_smoke(tmp_path: Path) -> None:
    result = run(tmp_path, "pipecat")
    (fw,) = result["frameworks"]
    (level,) = fw["levels"]
    check_level(level)
