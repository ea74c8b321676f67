"""The real smart-turn model on real synthesized caller speech (Piper), and our features checked
against Pipecat's own pipeline in its environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voicebridge.audio.logmel import log_mel
from voicebridge.stages.end_of_turn.policy import EndOfTurnPolicy, EndOfTurnSettings, StartCheck
from voicebridge.stages.offline_models import OfflineModelError, smart_turn_model_path

ROOT = Path(__file__).resolve().parents[2]
PIPECAT = ROOT / "bench" / ".venv-pipecat" / "bin" / "python"

try:
    MODEL = smart_turn_model_path()
except OfflineModelError as exc:
    pytest.skip(f"the smart-turn model is not installed: {exc}", allow_module_level=True)

from voicebridge.stages.end_of_turn.smart_turn import load_model  # noqa: E402
from voicebridge.stages.tts.piper import synthesize_timed  # noqa: E402

RATE = 8000


def caller(text: str, *, upto_word: int | None = None, rate: int = RATE) -> np.ndarray:
    """``text`` spoken whole, cut after word ``upto_word`` (the prosody of a sentence that goes
    on), with 0.3 s before and the 200 ms pause a check hears after."""
    pcm, ends = synthesize_timed(text, rate, pitch_semitones=-2.0, noise_scale=0.0, noise_w=0.0)
    assert ends is not None
    if upto_word is not None:
        pcm = pcm[: int(ends[upto_word] * rate / 1000)]
    gap = np.zeros(int(0.2 * rate), np.int16)
    return np.concatenate((np.zeros(int(0.3 * rate), np.int16), pcm, gap))


def test_a_finished_question_scores_complete() -> None:
    assert load_model().probability(caller("What time do you open tomorrow?"), RATE) > 0.9


def test_a_clause_cut_off_scores_incomplete() -> None:
    text = "I was wondering if you could tell me when you close."
    assert load_model().probability(caller(text, upto_word=3), RATE) < 0.2


def test_book_a_table_for_is_held_open_by_its_words() -> None:
    """On Piper's voice the model alone hears "I'd like to book a table for" as finished (about
    0.98: the voice gives the cut no continuing intonation); its last word says otherwise, and
    the decision with text cues waits."""
    text = "I'd like to book a table for four people tomorrow evening."
    probability = load_model().probability(caller(text, upto_word=6), RATE)
    policy = EndOfTurnPolicy(EndOfTurnSettings(check_ms=200, text_cues=True, model=True))
    assert policy.silent(0.0, 200.0) == StartCheck(0.0)
    assert policy.words(0.0, "I'd like to book a table for") is None
    assert policy.verdict(0.0, probability) is None  # held open whatever the voice says


@pytest.mark.skipif(not PIPECAT.exists(), reason="bench/.venv-pipecat not made (bench/capacity.py)")
def test_features_and_probability_match_pipecats_own_pipeline(tmp_path: Path) -> None:
    """Same audio through Pipecat's analyzer in its own environment: our numpy features and our
    probability agree (16 kHz, where no resampler differs)."""
    clips = {
        "complete": caller("What time do you open tomorrow?", rate=16000),
        "cut": caller("My order number is five five one two.", upto_word=5, rate=16000),
    }
    np.savez(tmp_path / "clips.npz", **clips)
    script = """
import json, sys, numpy as np
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features
clips = np.load(sys.argv[1]); out = {}
analyzer = LocalSmartTurnAnalyzerV3(sample_rate=16000)
for name in clips.files:
    audio = clips[name].astype(np.float32) / 32768.0
    window = np.pad(audio[-128000:], (128000 - min(audio.size, 128000), 0))
    np.save(sys.argv[2] + name + ".npy", compute_whisper_log_mel_features(window))
    out[name] = analyzer._predict_endpoint(audio)["probability"]
print(json.dumps(out))
"""
    done = subprocess.run(
        [str(PIPECAT), "-c", script, str(tmp_path / "clips.npz"), str(tmp_path) + "/"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    model = load_model()
    for name, pcm in clips.items():
        features = log_mel(model.window(pcm, 16000))
        reference = np.load(tmp_path / f"{name}.npy")
        assert np.abs(features - reference).max() < 1e-4, name
        assert model.probability(pcm, 16000) == pytest.approx(theirs[name], abs=1e-3), name


def test_the_model_file_is_read_from_the_wheel_not_the_repo() -> None:
    assert MODEL.name == "smart-turn-v3.2-cpu.onnx"
    # Inside the installed distribution (site-packages, wherever the venv lives: CI's is inside
    # the clone), never a file of this repository's own.
    assert "site-packages" in MODEL.resolve().parts
    tracked = subprocess.run(
        ["git", "ls-files", "--", "*.onnx"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert tracked.stdout == ""
    assert sys.modules.get("pipecat") is None  # read as data, never imported
