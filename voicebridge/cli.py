"""The ``voicebridge`` command: serve a pipeline, validate files, list stages, print answer XML."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from voicebridge import __version__
from voicebridge.config import ConfigError, load_pipeline, load_service_settings
from voicebridge.observe.logs import configure_logging


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve", help="run the agent service (answer URL + WebSocket) for a pipeline"
    )
    p.add_argument("pipeline", nargs="?", help="pipeline YAML (default: the configured one)")
    p.add_argument("--host", help="interface to listen on (default from config: 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default from config: 8080)")
    p.add_argument("--config", help="service settings YAML (default: configs/service.yaml)")
    p.add_argument("--public-url", help="https URL Plivo reaches this service at")
    p.add_argument(
        "--workers", type=int, help="worker processes sharing the port (default from config: 1)"
    )
    p.add_argument("--state", help="where resumable call state lives: memory or redis://host/db")
    p.add_argument("--log-format", choices=["auto", "console", "json"])
    p.set_defaults(handler=_serve)


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
    spec = load_pipeline(settings.resolve_pipeline_path(), max_bytes=settings.limits.max_yaml_bytes)
    from voicebridge.server.run import serve

    serve(settings, spec)
    return 0


def _add_validate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="check pipeline files; exit 1 listing every error")
    p.add_argument("pipelines", nargs="+", metavar="PIPELINE")
    p.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.pipelines:
        try:
            spec = load_pipeline(path)
        except ConfigError as exc:
            failed += 1
            print(str(exc), file=sys.stderr)
            continue
        for warning in spec.warnings:
            print(warning, file=sys.stderr)
        stages = " -> ".join(s.name for s in spec.stages)
        print(f"{path}: ok ({spec.name}: {stages})")
    return 1 if failed else 0


def _add_stages(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("stages", help="list every stage type with its parameters")
    p.set_defaults(handler=_stages)


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
        for param in info.params:
            line = f"    {param.name}: {param.type} = {param.default}"
            if param.description:
                line += f"  # {param.description}"
            print(line)
        print()
    return 0


def _add_xml(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("xml", help="print the answer XML that starts a stream")
    p.add_argument("--url", required=True, help="wss:// URL of the /stream endpoint")
    p.add_argument("--codec", choices=["l16", "mulaw"], default="l16")
    p.add_argument("--rate", type=int, choices=[8000, 16000], default=None)
    p.add_argument("--status-url", help="statusCallbackUrl for stream events")
    p.add_argument("--extra-headers", help="k=v,k=v passed back to us in the start event")
    p.set_defaults(handler=_xml)


def _xml(args: argparse.Namespace) -> int:
    from voicebridge.plivo.answer_xml import stream_xml
    from voicebridge.plivo.formats import StreamFormat

    rate = args.rate or (8000 if args.codec == "mulaw" else 16000)
    fmt = StreamFormat.from_short(args.codec, rate)
    print(
        stream_xml(
            args.url,
            content_type=fmt.content_type,
            status_callback_url=args.status_url,
            status_callback_method="POST" if args.status_url else None,
            extra_headers=args.extra_headers,
        ),
        end="",
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicebridge",
        description="Turn a Plivo phone call into a live conversation with a virtual agent.",
    )
    parser.add_argument("--version", action="version", version=f"voicebridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(sub)
    _add_validate(sub)
    _add_stages(sub)
    _add_xml(sub)
    from voicebridge.sim.cli import add_commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"voicebridge: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and friends
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
