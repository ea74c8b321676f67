"""Scenario files in a user's own pytest suite (a pytest plugin, registered as ``voicebridge``
under the ``pytest11`` entry point, so installing voicebridge is enough).

Two ways in, both documented in docs/testing.md:

- the ``voicebridge_scenario`` fixture: ``voicebridge_scenario("tests/calls/hours.yaml")`` runs
  the scenario and fails the test with every broken expectation;
- ``scenario_files("tests/calls")`` to parametrize a test over a folder of scenarios.

Nothing is collected or run unless a test asks for it: the plugin only adds the fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from voicebridge.scenarios.spec import load_scenario
from voicebridge.scenarios.suite import Outcome, run_one


def scenario_files(folder: str | Path) -> list[Path]:
    """The scenario files in ``folder`` (``*.yaml``, sorted), for ``pytest.mark.parametrize``."""
    base = Path(folder)
    return sorted([*base.glob("*.yaml"), *base.glob("*.yml")])


def run_scenario_file(path: str | Path, html_dir: str | Path | None = None) -> Outcome:
    """Load and run one scenario file; a bad file raises ConfigError (with file:line)."""
    return run_one(load_scenario(path), str(html_dir) if html_dir is not None else None)


@pytest.fixture
def voicebridge_scenario(tmp_path: Path) -> Callable[[str | Path], Outcome]:
    """Run a scenario file and fail the test with its broken expectations; the call page of a
    failing scenario is written into the test's ``tmp_path`` and named in the message."""

    def run(path: str | Path) -> Outcome:
        outcome = run_scenario_file(path, tmp_path)
        if not outcome.passed:
            lines = [f"scenario {outcome.scenario.name} ({path}) failed:"]
            lines += [f"  - {f}" for f in outcome.failures]
            if outcome.page:
                lines.append(f"  call page: {outcome.page}")
            pytest.fail("\n".join(lines), pytrace=False)
        return outcome

    return run
