"""A batch of scenario files: load them all first (a bad file stops the run before any call),
run them one by one or in worker processes, and keep what the summary and JUnit need."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from voicebridge.scenarios.spec import Scenario, load_scenario


@dataclass(frozen=True)
class Outcome:
    """What is kept of a finished scenario (picklable: it comes back from a worker process)."""

    scenario: Scenario
    failures: tuple[str, ...]
    seconds: float
    page: str | None = None  # the call page written for a failure, if asked for
    verdict: str | None = None  # the judge's verdict and reasons, when there is a judge

    @property
    def passed(self) -> bool:
        return not self.failures


def load_all(paths: Sequence[str | Path], keyword: str | None = None) -> list[Scenario]:
    """Every scenario in ``paths`` (files, or folders searched for ``*.yaml``), validated; with
    ``keyword`` only those whose name contains it (case-insensitive). Raises ConfigError with
    the problems of every bad file."""
    from voicebridge.config.errors import ConfigError, ConfigIssue

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        else:
            files.append(path)
    scenarios: list[Scenario] = []
    issues: list[ConfigIssue] = []
    for file in files:
        try:
            scenarios.append(load_scenario(file))
        except ConfigError as exc:
            issues += exc.issues
    if issues:
        raise ConfigError(issues)
    if keyword:
        scenarios = [s for s in scenarios if keyword.lower() in s.name.lower()]
    return scenarios


def run_one(scenario: Scenario, html_dir: str | None = None, realtime: bool = False) -> Outcome:
    """Run one scenario to completion (in this process); the call page is written on failure."""
    from voicebridge.scenarios.run import run_scenario, write_call_page

    if realtime:
        scenario = scenario.model_copy(update={"realtime": True})
    result = asyncio.run(run_scenario(scenario))
    page = None
    if result.failures and html_dir is not None:
        written = write_call_page(result, Path(html_dir))
        page = str(written) if written else None
    return Outcome(result.scenario, tuple(result.failures), result.seconds, page, result.verdict)


def run_all(
    scenarios: Sequence[Scenario],
    *,
    jobs: int = 1,
    html_dir: str | None = None,
    realtime: bool = False,
) -> list[Outcome]:
    """Run them all, in order; ``jobs`` above 1 runs that many at once in worker processes
    (each call has its own service and models, as a CI machine's cores allow)."""
    if jobs <= 1 or len(scenarios) <= 1:
        return [run_one(s, html_dir, realtime) for s in scenarios]
    workers = min(jobs, len(scenarios))
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_one, s, html_dir, realtime) for s in scenarios]
        return [f.result() for f in futures]
