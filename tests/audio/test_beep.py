"""The beep detector: a steady 400-2000 Hz tone of 150 ms or more, and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from voicebridge.audio.beep import BeepDetector, find_beeps
from voicebridge.sim.signals import silence, speech_like

RATE = 8000
REPO = Path(__file__).resolve().parents[2]


def tone(freq: float, seconds: float, level: float = 8000) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def greeting_then(beep: np.ndarray) -> np.ndarray:
    return np.concatenate([speech_like(3.0, RATE), silence(0.3, RATE), beep, silence(1.0, RATE)])


@pytest.mark.parametrize("freq", [440.0, 1000.0, 1900.0])
def test_a_beep_after_a_greeting_is_found_with_its_pitch_and_end(freq: float):
    [beep] = find_beeps(greeting_then(tone(freq, 0.4)), RATE)
    assert abs(beep.frequency_hz - freq) <= 40
    assert abs(beep.end_s - 3.7) <= 0.05
    assert 0.35 <= beep.duration_s <= 0.45


@pytest.mark.parametrize(
    "audio",
    [
        tone(1000, 0.10),  # too short
        tone(300, 0.5),  # below the band
        tone(2500, 0.5),  # above it
        tone(1000, 0.5, level=50),  # too quiet
        (tone(697, 0.5).astype(np.int32) + tone(1209, 0.5)).clip(-32768, 32767).astype(np.int16),
        speech_like(8.0, RATE),
    ],
    ids=["short", "low", "high", "quiet", "dtmf", "speech"],
)
def test_no_beep(audio: np.ndarray):
    assert find_beeps(greeting_then(audio), RATE) == []


def test_chunked_feeding_finds_the_same_beep_once_it_ends():
    audio = greeting_then(tone(850, 0.3))
    detector = BeepDetector(RATE)
    found = []
    for start in range(0, len(audio), 137):  # odd chunk sizes, smaller than a frame
        found += detector.feed(audio[start : start + 137])
    found += detector.flush()
    assert found == find_beeps(audio, RATE)
    assert len(found) == 1


def test_a_beep_still_sounding_at_the_end_is_flushed():
    detector = BeepDetector(RATE)
    assert detector.feed(tone(1000, 0.5)) == []
    [beep] = detector.flush()
    assert beep.frequency_hz == pytest.approx(1000, abs=40)


def test_the_benchmark_runs(tmp_path: Path):
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from bench import beep

    out = tmp_path / "beep.json"
    assert beep.main(["--cases", "1", "--out", str(out)]) == 0
    summary = out.read_text()
    for key in ("detection_rate", "false_alarms", "false_alarms_per_hour"):
        assert key in summary
