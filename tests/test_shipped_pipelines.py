"""Every pipeline shipped in pipelines/ (and the examples) loads and validates."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from voicebridge.config import load_pipeline

ROOT = Path(__file__).resolve().parents[1]
FILES = [*sorted((ROOT / "pipelines").glob("*.yaml")), ROOT / "examples/custom_stage/pipeline.yaml"]
REQUIRED_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_shipped_pipeline_validates(path: Path) -> None:
    # Variables a pipeline requires (no default) are the ones its README section lists;
    # give them placeholder values, as a deployment would give real ones.
    needed = set(REQUIRED_VAR.findall(path.read_text()))
    environ = {**os.environ, **{name: "placeholder" for name in needed}}
    spec = load_pipeline(path, environ=environ)
    assert spec.warnings == []  # every stage declares its frames, and their order works
    roles = [s.cls.role for s in spec.stages]
    assert roles[0] == "decode" and roles[-1] == "encode"
    assert spec.create_stages()  # instances can be made for a call


def test_default_pipeline_is_offline() -> None:
    from voicebridge.config import ServiceSettings

    assert ServiceSettings().pipeline == "pipelines/offline.yaml"


PIPELINES = sorted((ROOT / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_the_end_of_turn_decision_is_on_wherever_a_transcriber_can_feed_it(path: Path) -> None:
    """Issue 15: every pipeline in pipelines/ with a transcriber ends turns from the caller's
    words at a pause (docs/turns.md), and its transcriber passes them on."""
    needed = set(REQUIRED_VAR.findall(path.read_text()))
    environ = {**os.environ, **{name: "placeholder" for name in needed}}
    stages = load_pipeline(path, environ=environ).stages
    transcribers = [s for s in stages if s.cls.role == "stt"]
    if not transcribers:
        return  # echo: nothing to judge words with
    (vad,) = (s for s in stages if s.cls.role == "vad")
    assert vad.params.end_of_turn.text_cues and vad.params.pause_ms > 0
    for stt in transcribers:
        params = stt.params.model_dump()
        assert params.get("early_words", params.get("speculative")) is True, stt.type
