"""The README's two set-up commands are contracts: CI must run the test command as written."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", setup)


def test_the_readme_has_exactly_two_setup_commands() -> None:
    main, tests = readme_commands()
    assert "voicebridge simulate" in main and main.endswith("voicebridge serve")
    assert tests.endswith("pytest -q")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    _, tests = readme_commands()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_ci_requires_every_test_to_run() -> None:
    assert "export VOICEBRIDGE_REQUIRE_ALL_TESTS=1" in (REPO / ".ci" / "run").read_text()
