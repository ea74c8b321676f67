"""``voicebridge simulate PIPELINE --outbound leads.csv``: a campaign on one machine, no account.

The service runs in this process with the pipeline, a ``SimulatedCarrier`` stands in for
Plivo, and the campaign places every row's call through the service's ``POST /calls``. A
``callee`` column says who answers each number: ``person`` (the default), ``machine``,
``no_answer`` or ``busy``. One result line per number is printed (and written with --report).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

from voicebridge.cli_errors import CliError, ExitCode
from voicebridge.clock import MonotonicClock, StreamClock
from voicebridge.config import ServiceSettings, load_pipeline
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.outbound import CalleeKind, SimulatedCarrier
from voicebridge.telephony.campaign import (
    Campaign,
    CampaignError,
    CampaignOptions,
    Lead,
    ServiceCalls,
    StateFile,
    read_leads,
)
from voicebridge.telephony.dialer import API_KEY_ENV, FROM_ENV

_KINDS = get_args(CalleeKind)


def _callees(leads: list[Lead]) -> tuple[list[Lead], dict[str, CalleeKind]]:
    """The leads without their ``callee`` column, and who answers each number."""
    kinds: dict[str, CalleeKind] = {}
    cleaned: list[Lead] = []
    for lead in leads:
        call_vars = dict(lead.vars)
        kind = call_vars.pop("callee", "person")
        if kind not in _KINDS:
            raise CliError(
                ExitCode.CONFIG, f"row {lead.row}: callee must be one of {', '.join(_KINDS)}"
            )
        kinds[lead.number[1:]] = kind  # type: ignore[assignment]
        cleaned.append(replace(lead, vars=call_vars))
    return cleaned, kinds


def run_outbound(args: argparse.Namespace, settings: ServiceSettings) -> int:
    csv_path = Path(args.outbound)
    if not csv_path.is_file():
        raise CliError(ExitCode.FILE, f"simulate --outbound {args.outbound}: no such file")
    try:
        leads, kinds = _callees(read_leads(csv_path))
    except CampaignError as exc:
        raise CliError(ExitCode.CONFIG, f"simulate: {exc}") from None
    spec = load_pipeline(settings.resolve_pipeline_path(), max_bytes=settings.limits.max_yaml_bytes)
    key = secrets.token_urlsafe(24)
    saved = {name: os.environ.get(name) for name in (API_KEY_ENV, FROM_ENV, "PLIVO_AUTH_TOKEN")}
    os.environ[API_KEY_ENV] = key  # the in-process service reads its key at creation
    os.environ[FROM_ENV] = "+15550000000"
    os.environ.pop("PLIVO_AUTH_TOKEN", None)  # no Plivo signatures from the simulated carrier
    try:
        results = asyncio.run(_campaign(spec, settings, leads, kinds, key))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    lines = [json.dumps(result) for result in results]
    print("\n".join(lines))
    if args.report:
        Path(args.report).write_text("\n".join(lines) + "\n")
    return 0


async def _campaign(
    spec: Any,
    settings: ServiceSettings,
    leads: list[Lead],
    kinds: dict[str, CalleeKind],
    key: str,
) -> list[dict[str, Any]]:
    from voicebridge.server.run import running_service
    from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest

    local = settings.model_copy(update={"host": "127.0.0.1", "port": 0, "public_url": None})
    sessions = SessionWatch()
    carrier = SimulatedCarrier(
        "MASIMULATOR", "sim-token", callee=kinds.__getitem__, sessions=sessions
    )
    async with carrier:

        def rest() -> PlivoRest:
            creds = PlivoCredentials("MASIMULATOR", "sim-token")
            return PlivoRest(creds, base_url=carrier.base_url)

        async with running_service(
            local, spec, rest_factory=rest, on_session=sessions, clock_factory=StreamClock
        ) as service:
            api = ServiceCalls(service.http_base, key)
            options = CampaignOptions(rate_per_s=5.0, concurrency=4, retries=1, retry_delay_s=1.0)
            with tempfile.TemporaryDirectory() as tmp:
                state, results = StateFile(Path(tmp) / "state"), Path(tmp) / "results"
                campaign = Campaign(api, options, MonotonicClock(), state, results)
                try:
                    done = await campaign.run(leads)
                finally:
                    await api.aclose()
            await carrier.settle()
    return done
