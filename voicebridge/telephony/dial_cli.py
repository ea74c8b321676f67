"""``voicebridge dial``: place one outbound call into a running voicebridge service.

The call is placed straight through Plivo's Call API (``PLIVO_AUTH_ID``/``PLIVO_AUTH_TOKEN``,
``PLIVO_API_URL`` for a fake or staging API), with the service's public ``/answer`` as the answer
URL; the service answering it runs its own pipeline. Variables (``--var``) are signed with
``VOICEBRIDGE_API_KEY``, the key the service checks them with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING

from voicebridge.cli_errors import CliError, ExitCode
from voicebridge.cli_parser import command
from voicebridge.config import load_pipeline, load_service_settings
from voicebridge.observe.logs import configure_logging
from voicebridge.telephony.call_vars import InvalidVars, parse_var_args
from voicebridge.telephony.campaign_cli import add_campaign_arguments, run_campaign_command
from voicebridge.telephony.dialer import API_KEY_ENV, FROM_ENV, api_key, call_request, default_from
from voicebridge.telephony.numbers import InvalidNumber
from voicebridge.telephony.plivo_rest import PlivoRest, PlivoRestError

if TYPE_CHECKING:
    from voicebridge.cli_parser import Subcommands


def add_dial(sub: Subcommands) -> None:
    p = command(
        sub,
        "dial",
        "place an outbound call; the service at --public-url answers it with its pipeline",
        epilog="Needs PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN (PLIVO_API_URL overrides Plivo's API"
        f"\nURL), and {API_KEY_ENV} when --var is given. Prints the call's request_uuid.",
    )
    p.add_argument(
        "number", nargs="?", help="the number to call, E.164 (e.g. +15551234567); or --csv"
    )
    add_campaign_arguments(p)
    p.add_argument(
        "--from",
        dest="from_",
        metavar="NUMBER",
        help=f"caller id, one of your Plivo numbers (default: {FROM_ENV})",
    )
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a call variable for the pipeline's {KEY} placeholders, repeatable (default: none)",
    )
    p.add_argument(
        "--public-url",
        help="https base URL Plivo reaches the service at (default: from the service settings)",
    )
    p.add_argument(
        "--pipeline",
        help="the pipeline the service runs: its outbound: section turns on Plivo's machine "
        "detection (default: none, no machine detection)",
    )
    p.add_argument("--config", help="service settings YAML (default: configs/service.yaml)")
    p.set_defaults(handler=_dial)


def _dial(args: argparse.Namespace) -> int:
    settings = load_service_settings(args.config, overrides={"public_url": args.public_url})
    configure_logging(settings.log.format, settings.log.level)  # stderr; the result: stdout
    if args.csv:
        if args.number:
            raise CliError(ExitCode.USAGE, "dial: give a NUMBER or --csv FILE, not both")
        return run_campaign_command(args, settings.public_url)
    if not args.number:
        raise CliError(ExitCode.USAGE, "dial: give the NUMBER to call, or --csv FILE")
    if not settings.public_url:
        raise CliError(
            ExitCode.USAGE,
            "dial: pass --public-url https://host (where Plivo reaches the service's /answer)",
        )
    from_ = args.from_ or default_from()
    if not from_:
        raise CliError(ExitCode.USAGE, f"dial: pass --from NUMBER (or set {FROM_ENV})")
    secret = api_key()
    machine_detection = None
    if args.pipeline:
        from voicebridge.server.outbound_call import machine_detection_for

        spec = load_pipeline(args.pipeline)
        url = f"{settings.public_url.rstrip('/')}/machine"
        machine_detection = machine_detection_for(spec.outbound, url)
    try:
        call_vars = parse_var_args(args.var)
        if call_vars and not secret:
            raise CliError(ExitCode.USAGE, f"dial: --var needs {API_KEY_ENV} (the service's key)")
        request = call_request(
            settings.public_url,
            to=args.number,
            from_=from_,
            call_vars=call_vars,
            secret=secret,
            machine_detection=machine_detection,
        )
    except (InvalidNumber, InvalidVars, ValueError) as exc:
        raise CliError(ExitCode.USAGE, f"dial: {exc}") from None
    rest = PlivoRest.from_env()
    if rest is None:
        raise CliError(ExitCode.STARTUP, "dial: set PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN")

    async def place() -> str:
        async with rest:
            return (await rest.create_call(request)).request_uuid

    try:
        request_uuid = asyncio.run(place())
    except PlivoRestError as exc:
        raise CliError(ExitCode.CONNECT, f"dial: {exc}") from None
    print(json.dumps({"to": request.to, "request_uuid": request_uuid, "status": "queued"}))
    return 0
