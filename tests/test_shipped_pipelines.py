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
