"""Smoke run of the capacity benchmark (bench/capacity.py): a few calls for a few seconds, so the
harness cannot rot. No timing is asserted; the figures of a run this small mean nothing."""

from __future__ import annotations

import json
import subprocess
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


def test_media_path_smoke(tmp_path: Path) -> None:
    """The goals run of issue 16 (bench/media_path.py), tiny: the ramp, the piece count, the
    codec and the before/after parts (before = this very commit, from a worktree), the load
    generator in two worker processes, and the figure."""
    from bench import media_path

    out = tmp_path / "media_path.json"
    argv = ["--parts", "ramp,pieces,codec,before", "--before", "HEAD"]
    argv += ["--levels", "2", "--compare-n", "2"]
    argv += ["--duration", "6", "--stagger", "0.5", "--warmup", "0", "--gen-procs", "2"]
    argv += ["--soak-json", str(tmp_path / "no-soak.json"), "--out", str(out)]
    try:
        result = media_path.main(argv)
    finally:  # the before part's checkout of HEAD: not kept between test runs
        tree, _ = media_path.before_tree("HEAD")
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
        )
    assert json.loads(out.read_text())["goals"] == result["goals"]
    report = out.with_suffix(".md").read_text()
    assert report.startswith("## The media path at the limit")
    assert "CPU per call" in report and "-> " in report  # the before/after line
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [fw["which"] for fw in result["parts"]["before"]["runs"]] == ["before", "after"]
    parts = result["parts"]
    levels = parts["ramp"]["levels"] + parts["codec"]["levels"]
    levels += [row for fw in parts["pieces"] for row in fw["levels"]]
    levels += [row for fw in parts["before"]["runs"] for row in fw["levels"]]
    assert [fw["pieces"] for fw in parts["pieces"]] == [1, 20]
    assert sorted(row["codec"] for row in parts["codec"]["levels"]) == ["l16", "mulaw"]
    for level in levels:
        check_level(level)
        assert level["status"] in ("pass", "fail", "invalid")
        gen = level["gen"]
        assert gen["procs"] == 2 and not gen["in_process"]
        assert sum(w["calls"] for w in gen["workers"]) == 2
        assert all(w["send_late_ms"]["n"] > 0 for w in gen["workers"])
    goals = {g["goal"]: g for g in result["goals"]}
    assert len(goals) == 9
    assert all(g["met"] is None for g in goals.values() if "soak" in g["goal"])  # none run


def test_soak_loadgen_smoke(tmp_path: Path) -> None:
    """bench/soak.py with the load generator's callers (--driver loadgen), calls back to back."""
    from bench import soak

    out = tmp_path / "soak.json"
    argv = ["--driver", "loadgen", "--calls", "2", "--duration", "8", "--call-s", "6"]
    argv += ["--sample-s", "1", "--stagger-s", "0.5", "--gen-procs", "2", "--out", str(out)]
    assert soak.main(argv) == 0  # no call failed
    result = json.loads(out.read_text())
    assert result["calls"]["total"] == 4  # two slots, two calls each
    assert result["generator"]["procs"] == 2
    assert "flatness" in result["summary"]
    assert result["health_end"]["active_calls"] == 0
