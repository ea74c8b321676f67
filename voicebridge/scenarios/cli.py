"""``voicebridge test``: run scenario files, print a pytest-like summary, write JUnit XML and
the call page of each failure, exit 1 when any scenario failed."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from voicebridge.cli_errors import CliError, ExitCode
from voicebridge.cli_parser import command, positive_int

if TYPE_CHECKING:
    from voicebridge.cli_parser import Subcommands
    from voicebridge.scenarios.suite import Outcome


def add_command(sub: Subcommands) -> None:
    p = command(
        sub,
        "test",
        "run scenario files: a scripted caller against a pipeline, with expectations",
        epilog="Exit status 0 when every scenario passed, 1 when any failed, 3 when a scenario "
        "or pipeline file is invalid. Scenario format: docs/testing.md.",
    )
    p.add_argument(
        "scenarios", nargs="+", metavar="SCENARIO", help="scenario YAML files or folders"
    )
    p.add_argument("--junit", metavar="XML", help="write JUnit XML of the results (default: none)")
    p.add_argument(
        "--html",
        metavar="DIR",
        help="write each failing scenario's call page into DIR (default: none)",
    )
    p.add_argument(
        "-k",
        dest="keyword",
        metavar="NAME",
        help="run only scenarios whose name contains NAME (default: all)",
    )
    p.add_argument(
        "--jobs", type=positive_int, default=1, metavar="N", help="run N scenarios at once"
    )
    p.add_argument(
        "--realtime",
        action="store_true",
        help="play every call in real time (default: each scenario's own setting, virtual time)",
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error", "critical"],
        default="error",
        help="service log lines shown",
    )
    p.set_defaults(handler=run_test)


def _check_outputs(args: argparse.Namespace) -> None:
    if args.html:
        folder = Path(args.html)
        if folder.exists() and not folder.is_dir():
            raise CliError(ExitCode.FILE, f"--html {args.html}: not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(ExitCode.FILE, f"--html {args.html}: {exc.strerror or exc}") from None
    if args.junit:
        parent = Path(args.junit).parent
        if Path(args.junit).is_dir() or not (parent if str(parent) else Path(".")).is_dir():
            raise CliError(ExitCode.FILE, f"--junit {args.junit}: cannot write a file there")


def print_results(outcomes: list[Outcome], seconds: float, out: TextIO) -> None:
    """One line per scenario, then each failure's reasons, then the counts."""
    for o in outcomes:
        status = "PASSED" if o.passed else "FAILED"
        print(f"{o.scenario.source}::{o.scenario.name} {status} ({o.seconds:.1f} s)", file=out)
        if o.verdict and o.passed:
            print(f"  {o.verdict}", file=out)
    failed = [o for o in outcomes if not o.passed]
    if failed:
        print("=" * 30 + " FAILURES " + "=" * 30, file=out)
        for o in failed:
            print(f"{o.scenario.name} ({o.scenario.source}):", file=out)
            for line in o.failures:
                print(f"  - {line}", file=out)
            if o.page:
                print(f"  call page: {o.page}", file=out)
    counts = [f"{len(failed)} failed"] if failed else []
    counts.append(f"{len(outcomes) - len(failed)} passed")
    print(f"{'=' * 20} {', '.join(counts)} in {seconds:.1f} s {'=' * 20}", file=out)


def run_test(args: argparse.Namespace) -> int:
    from voicebridge.observe.logs import configure_logging
    from voicebridge.scenarios.junit import junit_xml
    from voicebridge.scenarios.suite import load_all, run_all

    configure_logging("auto", args.log_level)
    _check_outputs(args)
    scenarios = load_all(args.scenarios, args.keyword)
    if not scenarios:
        raise CliError(ExitCode.USAGE, f"no scenario matches -k {args.keyword!r}")
    began = time.monotonic()
    outcomes = run_all(scenarios, jobs=args.jobs, html_dir=args.html, realtime=args.realtime)
    print_results(outcomes, time.monotonic() - began, sys.stdout)
    if args.junit:
        try:
            Path(args.junit).write_text(junit_xml(outcomes), encoding="utf-8")
        except OSError as exc:
            raise CliError(ExitCode.FILE, f"--junit {args.junit}: {exc.strerror or exc}") from None
    return int(ExitCode.OK if all(o.passed for o in outcomes) else ExitCode.FAILED)
