"""``voicebridge dial --csv leads.csv``: a campaign through the running service's calls API."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from voicebridge.cli_errors import CliError, ExitCode
from voicebridge.cli_parser import non_negative_float, positive_float, positive_int
from voicebridge.clock import MonotonicClock
from voicebridge.telephony.campaign import (
    Campaign,
    CampaignError,
    CampaignOptions,
    ServiceCalls,
    StateFile,
    read_leads,
)
from voicebridge.telephony.dialer import API_KEY_ENV, api_key


def add_campaign_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--csv",
        metavar="FILE",
        help="call every row: a number column, the others are variables (default: none)",
    )
    p.add_argument(
        "--service",
        metavar="URL",
        help="the service whose POST /calls places the campaign's calls (default: --public-url)",
    )
    p.add_argument("--rate", type=positive_float, default=1.0, help="calls placed per second")
    p.add_argument("--concurrency", type=positive_int, default=5, help="calls in flight at most")
    p.add_argument(
        "--retries", type=int, default=2, help="extra attempts for busy and no-answer numbers"
    )
    p.add_argument(
        "--retry-delay", type=non_negative_float, default=300.0, help="seconds before a retry"
    )
    p.add_argument("--poll", type=positive_float, default=2.0, help="seconds between checks")
    p.add_argument(
        "--state", help="resume file: an interrupted run goes on from it (default: FILE.state)"
    )
    p.add_argument("--results", help="JSON lines, one per number (default: FILE.results.jsonl)")


def run_campaign_command(args: argparse.Namespace, public_url: str | None) -> int:
    csv_path = Path(args.csv)
    if not csv_path.is_file():
        raise CliError(ExitCode.FILE, f"dial: --csv {args.csv}: no such file")
    try:
        leads = read_leads(csv_path)
    except CampaignError as exc:
        raise CliError(ExitCode.CONFIG, f"dial: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(ExitCode.FILE, f"dial: --csv {args.csv}: {exc}") from None
    service = args.service or public_url
    if not service:
        raise CliError(ExitCode.USAGE, "dial: pass --service URL (the running voicebridge)")
    key = api_key()
    if not key:
        raise CliError(ExitCode.USAGE, f"dial --csv: set {API_KEY_ENV} (the service's key)")
    if args.retries < 0:
        raise CliError(ExitCode.USAGE, "dial: --retries must be 0 or more")
    options = CampaignOptions(
        rate_per_s=args.rate,
        concurrency=args.concurrency,
        retries=args.retries,
        retry_delay_s=args.retry_delay,
        poll_s=args.poll,
    )
    state = StateFile(Path(args.state or f"{csv_path}.state"))
    results = Path(args.results or f"{csv_path}.results.jsonl")
    done = {"n": 0}
    tty = sys.stderr.isatty()

    def progress(result: dict[str, Any]) -> None:
        done["n"] += 1
        if tty:
            width = 30
            filled = width * done["n"] // max(1, len(leads))
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(f"\r[{bar}] {done['n']}/{len(leads)} {result['number']}")
            sys.stderr.flush()

    async def run() -> list[dict[str, Any]]:
        api = ServiceCalls(service, key)
        try:
            campaign = Campaign(api, options, MonotonicClock(), state, results, progress)
            return await campaign.run(leads)
        finally:
            await api.aclose()

    outcomes = asyncio.run(run())
    if tty:
        sys.stderr.write("\n")
    counts: dict[str, int] = {}
    for result in outcomes:
        counts[str(result["outcome"])] = counts.get(str(result["outcome"]), 0) + 1
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing left to call"
    print(f"{len(outcomes)} numbers done ({summary}); results in {results}")
    return 0
