"""The ``voicebridge`` command: serve a pipeline, validate files, list stages, print answer XML.

Every failure ends as one line on stderr and an exit code per kind of failure
(``voicebridge.cli_errors``); only ``--debug`` shows a traceback.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

from voicebridge import __version__
from voicebridge.cli_errors import DEBUG_ENV, CliError, ExitCode, config_exit_code
from voicebridge.cli_errors import exit_code_epilog as _epilog
from voicebridge.cli_parser import (
    CODEC_HELP,
    DEBUG_HELP,
    HelpFormatter,
    Parser,
    command,
    port_number,
    positive_int,
)
from voicebridge.config import ConfigError, StageStartError, load_pipeline, load_service_settings
from voicebridge.observe.logs import configure_logging
from voicebridge.runtime.registry import ParamInfo

if TYPE_CHECKING:
    from voicebridge.cli_parser import Subcommands
    from voicebridge.config.service_settings import ServiceSettings

_FROM_SETTINGS = "from the service settings"


def _add_serve(sub: Subcommands) -> None:
    p = command(sub, "serve", "run the agent service (answer URL + WebSocket) for a pipeline")
    p.add_argument(
        "pipeline",
        nargs="?",
        help=f"pipeline YAML (default: {_FROM_SETTINGS}, pipelines/offline.yaml)",
    )
    p.add_argument("--host", help=f"interface to listen on (default: {_FROM_SETTINGS}, 127.0.0.1)")
    p.add_argument(
        "--port", type=port_number, help=f"port to listen on (default: {_FROM_SETTINGS}, 8080)"
    )
    p.add_argument("--config", help="service settings YAML (default: configs/service.yaml)")
    p.add_argument(
        "--public-url",
        help="https URL Plivo reaches this service at (default: derived from each request)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        help=f"worker processes sharing the port (default: {_FROM_SETTINGS}, 1)",
    )
    p.add_argument(
        "--state",
        help="where resumable call state lives: memory or redis://host/db "
        f"(default: {_FROM_SETTINGS}, memory)",
    )
    p.add_argument(
        "--log-format",
        choices=["auto", "console", "json"],
        help=f"log lines for people or machines (default: {_FROM_SETTINGS}, auto: console on a "
        "terminal and JSON otherwise)",
    )
    p.set_defaults(handler=_serve)


def _listen(host: str, port: int) -> socket.socket:
    """Bind the service's port now, before any model loads; a failure says what to do."""
    from voicebridge.server.listen import ListenError, bind_listener

    try:
        return bind_listener(host, port)
    except ListenError as exc:
        hints = {
            "in_use": f"port {port} is in use; pass --port N or stop the other process",
            "denied": f"not allowed to listen on port {port} ({exc.detail}); ports below 1024 "
            "need privileges: pass --port N with N above 1023",
            "no_address": f"cannot listen on {host!r}: this machine has no such address; pass "
            "--host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every interface)",
        }
        message = hints.get(exc.reason, f"cannot listen on {host}:{port}: {exc.detail}")
        raise CliError(ExitCode.PORT, message) from None


def _check_tracing(settings: ServiceSettings) -> None:
    """Tracing asked for (``tracing:`` or ``OTEL_TRACES_EXPORTER``) needs the ``otel`` extra."""
    if not settings.tracing.active(os.environ):
        return
    try:
        import voicebridge.observe.tracing_setup  # noqa: F401
    except ImportError as exc:
        raise CliError(ExitCode.MISSING_EXTRA, str(exc)) from None


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        "host": args.host,
        "port": args.port,
        "public_url": args.public_url,
        "pipeline": args.pipeline,
        "workers": args.workers,
        "state": args.state,
    }
    if args.log_format:
        overrides["log"] = {"format": args.log_format}
    settings = load_service_settings(args.config, overrides=overrides)
    configure_logging(settings.log.format, settings.log.level)
    _check_tracing(settings)
    listener = _listen(settings.host, settings.port)
    if settings.workers > 1:
        listener.close()  # only a check: uvicorn's supervisor binds the port for its workers
    try:
        spec = load_pipeline(
            settings.resolve_pipeline_path(), max_bytes=settings.limits.max_yaml_bytes
        )
        from voicebridge.server.run import ServiceStartError, serve

        try:
            serve(settings, spec, listener=listener if settings.workers == 1 else None)
        except ServiceStartError as exc:
            raise CliError(ExitCode.STARTUP, str(exc)) from None
    finally:
        listener.close()
    return 0


def _add_validate(sub: Subcommands) -> None:
    p = command(sub, "validate", "check pipeline files and list every error with its file and line")
    p.add_argument("pipelines", nargs="+", metavar="PIPELINE", help="pipeline YAML files")
    p.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    kinds: list[str] = []
    for path in args.pipelines:
        try:
            spec = load_pipeline(path)
        except ConfigError as exc:
            kinds += [issue.kind for issue in exc.issues]
            print(str(exc), file=sys.stderr)
            continue
        for warning in spec.warnings:
            print(warning, file=sys.stderr)
        stages = " -> ".join(s.name for s in spec.stages)
        print(f"{path}: ok ({spec.name}: {stages})")
    return int(config_exit_code(kinds)) if kinds else 0


def _add_stages(sub: Subcommands) -> None:
    p = command(sub, "stages", "list every stage type with its parameters")
    p.set_defaults(handler=_stages)


def _print_params(
    params: Sequence[ParamInfo], nested: dict[str, list[ParamInfo]], indent: str, prefix: str = ""
) -> None:
    for param in params:
        line = f"{indent}{param.name}: {param.type} = {param.default}"
        if param.description:
            line += f"  # {param.description}"
        print(line)
        path = f"{prefix}{param.name}"
        if path in nested:  # a nested model: its fields beneath it
            _print_params(nested[path], nested, indent + "    ", f"{path}.")


def _stages(args: argparse.Namespace) -> int:
    from voicebridge.runtime.registry import available_stage_types, describe_stage, resolve_stage

    for name, source in sorted(available_stage_types().items()):
        try:
            info = describe_stage(resolve_stage(name))
        except Exception as exc:  # an extra that is not installed
            print(f"{name}  [unavailable]  {exc}\n")
            continue
        print(f"{name}  [{info.role}]  {info.description}")
        if not source.startswith("builtin"):
            print(f"    from: {source}")
        _print_params(info.params, info.nested, "    ")
        print()
    return 0


def _add_xml(sub: Subcommands) -> None:
    p = command(
        sub,
        "xml",
        "print the answer XML that starts a stream (the same XML /answer returns)",
        epilog="The stream settings (codec, rate, streamTimeout, status callback, extra headers)"
        "\ncome from the service settings, as for /answer; the flags override them.",
    )
    p.add_argument(
        "--url",
        help="wss:// URL of the /stream endpoint (default: /stream under --public-url)",
    )
    p.add_argument(
        "--public-url",
        help=f"https base URL of the service (default: {_FROM_SETTINGS})",
    )
    p.add_argument("--config", help="service settings YAML (default: configs/service.yaml)")
    p.add_argument(
        "--codec", choices=["l16", "mulaw"], help=f"{CODEC_HELP} (default: {_FROM_SETTINGS})"
    )
    p.add_argument(
        "--rate",
        type=int,
        choices=[8000, 16000],
        help=f"stream sample rate in Hz (default: 8000 for mulaw, else {_FROM_SETTINGS})",
    )
    p.add_argument(
        "--status-url",
        help="statusCallbackUrl for stream events (default: /status beside the stream URL)",
    )
    p.add_argument(
        "--extra-headers",
        metavar="K=V,K=V",
        help=f"passed back to the service in the start event (default: {_FROM_SETTINGS})",
    )
    p.set_defaults(handler=_xml)


def _xml(args: argparse.Namespace) -> int:
    from voicebridge.cli_parser import stream_format
    from voicebridge.server.stream_answer import answer_xml, status_url_for

    stream: dict[str, object] = {}
    if args.codec is not None or args.rate is not None:
        fmt = stream_format(args.codec or "l16", args.rate)
        stream.update(codec=fmt.codec, sample_rate=fmt.sample_rate)
    if args.extra_headers is not None:
        stream["extra_headers"] = _headers(args.extra_headers)
    settings = load_service_settings(
        args.config, overrides={"public_url": args.public_url, "stream": stream}
    )
    url = args.url or settings.stream_url()
    if url is None:
        raise CliError(
            ExitCode.USAGE,
            "xml: pass --url wss://host/stream or --public-url https://host "
            "(or set public_url in the settings)",
        )
    try:
        xml = answer_xml(settings.stream, url, args.status_url or status_url_for(url))
    except ValueError as exc:
        raise CliError(ExitCode.USAGE, f"xml: {exc}") from None
    print(xml, end="")
    return 0


def _headers(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise CliError(
                ExitCode.USAGE, f"--extra-headers: expected key=value, got {part.strip()!r}"
            )
        pairs[key.strip()] = value.strip()
    return pairs


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="voicebridge",
        description="Turn a Plivo phone call into a live conversation with a virtual agent.",
        epilog=_epilog(),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"voicebridge {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(sub)
    _add_validate(sub)
    _add_stages(sub)
    _add_xml(sub)
    from voicebridge.telephony.dial_cli import add_dial

    add_dial(sub)
    from voicebridge.sim.cli import add_commands

    add_commands(sub)
    from voicebridge.scenarios.cli import add_command as add_test

    add_test(sub)
    return parser


def _fail(code: ExitCode, message: str) -> int:
    print(message, file=sys.stderr)
    return int(code)


def _start_failure(exc: StageStartError) -> ExitCode:
    from voicebridge.stages.offline_models import OfflineModelError

    cause = exc.__cause__
    if isinstance(cause, ImportError | OfflineModelError):
        return ExitCode.MISSING_EXTRA
    return ExitCode.STARTUP


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (see ``voicebridge.cli_errors.ExitCode``)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else int(ExitCode.USAGE)
    debug = bool(args.debug) or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    try:
        return int(args.handler(args))
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stderr.close()
        return 0
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        if debug:
            traceback.print_exc()
        if isinstance(exc, KeyboardInterrupt):
            return _fail(ExitCode.INTERRUPTED, "voicebridge: interrupted")
        if isinstance(exc, CliError):
            return _fail(exc.code, f"voicebridge: {exc.message}")
        if isinstance(exc, ConfigError):  # one line per problem, each with file:line
            return _fail(config_exit_code(issue.kind for issue in exc.issues), str(exc))
        if isinstance(exc, StageStartError):
            return _fail(_start_failure(exc), f"voicebridge: {exc}")
        hint = "" if debug else f"; run with --debug (or {DEBUG_ENV}=1) for the traceback"
        text = " ".join(str(exc).split())[:300]
        return _fail(
            ExitCode.INTERNAL,
            f"voicebridge: internal error: {type(exc).__name__}: {text}{hint}",
        )


if __name__ == "__main__":
    sys.exit(main())
