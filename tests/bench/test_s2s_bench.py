"""Smoke run of bench/s2s.py: one call, one turn, through each pipeline (``openai_realtime``,
``gemini_live``, cascaded), so the harness cannot rot. No timing is asserted; the figures of a
run this small mean nothing."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import s2s  # noqa: E402


def test_the_speech_to_speech_bench_runs(tmp_path: Path) -> None:
    rows = s2s.main(["--calls", "1", "--turns", "1", "--out", str(tmp_path / "s2s.json")])
    assert [(r["calls"], r["turns"], r["missed"]) for r in rows] == [(1, 1, 0)] * 3
    assert "gemini_live" in rows[1]["pipeline"]
    assert (tmp_path / "s2s.json").exists()
