"""``voicebridge simulate`` and ``voicebridge call``: a caller without a phone number."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.exceptions import InvalidStatus

from voicebridge.observe.logs import configure_logging
from voicebridge.plivo.formats import StreamFormat
from voicebridge.sim.answer import answer_call
from voicebridge.sim.caller import CallRecord, PlivoCaller
from voicebridge.sim.report import CallReport
from voicebridge.sim.simulate import CallerLine

# Per-turn figures printed after each latency ("vad+stt" includes the VAD's silence window).
_STAGE_FIGURES = (("vad+stt", "stt_s"), ("dialogue", "dialogue_s"), ("tts", "tts_s"))

# The caller's voice: the offline speaker, pitched down so the two sides sound different.
CALLER_PITCH_SEMITONES = -2.0


def add_caller_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--say", action="append", metavar="TEXT", help="a caller line (repeatable)")
    what.add_argument("--wav", action="append", metavar="FILE", help="caller audio (repeatable)")
    p.add_argument("--codec", choices=["mulaw", "l16"], default="l16")
    p.add_argument("--rate", type=int, choices=[8000, 16000], default=None)
    p.add_argument("--out", metavar="WAV", help="stereo recording: caller left, agent right")
    p.add_argument("--report", metavar="JSON", help="full JSON report of the call")
    p.add_argument("--html", metavar="HTML", help="an HTML report with both waveforms")
    p.add_argument("--gap", type=float, default=0.8, help="silence that means the agent is done")
    p.add_argument("--reply-timeout", type=float, default=15.0)
    p.add_argument(
        "--interrupt-after",
        type=float,
        metavar="SECONDS",
        help="barge in: say each next line this long after the reply starts playing",
    )
    p.add_argument("--log-level", default="warning", help="service logs shown (default warning)")


def stream_format(args: argparse.Namespace) -> StreamFormat:
    rate = args.rate or (8000 if args.codec == "mulaw" else 16000)
    return StreamFormat.from_short(args.codec, rate)


def caller_lines(args: argparse.Namespace, rate: int) -> list[CallerLine]:
    if args.say:
        from voicebridge.stages.tts.hibari import synthesize

        return [
            CallerLine(text, synthesize(text, rate, pitch_semitones=CALLER_PITCH_SEMITONES))
            for text in args.say
        ]
    from voicebridge.sim.wav import read_wav_mono

    return [CallerLine(None, read_wav_mono(path, rate)) for path in args.wav]


def write_outputs(args: argparse.Namespace, report: CallReport, record: CallRecord) -> None:
    rate = record.fmt.sample_rate
    if args.out:
        from voicebridge.sim.wav import write_stereo_wav

        write_stereo_wav(args.out, record.caller_audio, record.heard_audio, rate)
    if args.report:
        report.write_json(args.report)
    if args.html:
        from voicebridge.sim.html_report import write_html

        write_html(args.html, report, record.caller_audio, record.heard_audio, rate)


def print_summary(report: CallReport) -> None:
    """A transcript of the call for the terminal."""
    out = sys.stdout
    out.write(
        f"call through {report.pipeline} ({report.codec} {report.sample_rate} Hz, {report.mode}),"
        f" {report.duration_s:.1f} s\n"
    )
    for turn in report.turns:
        if turn.caller_said or turn.transcript:
            heard_as = f"  (transcribed: {turn.transcript})" if turn.transcript else ""
            out.write(f"  caller: {turn.caller_said or '(audio)'}{heard_as}\n")
        if turn.heard_text or turn.agent_text:
            flag = " [interrupted]" if turn.interrupted else ""
            out.write(f"  agent:  {turn.heard_text or ' '.join(turn.agent_text)}{flag}\n")
        if turn.latency_s is not None:
            parts = [
                f"{name} {turn.timing[key] * 1000:.0f}"
                for name, key in _STAGE_FIGURES
                if isinstance(turn.timing.get(key), int | float)
            ]
            detail = f" ({', '.join(parts)} ms)" if parts else ""
            out.write(f"          latency {turn.latency_s * 1000:.0f} ms{detail}\n")
    summary = report.summary()
    if summary["latency_p50_s"] is not None:
        out.write(
            f"turn latency p50 {summary['latency_p50_s'] * 1000:.0f} ms, "
            f"max {summary['latency_max_s'] * 1000:.0f} ms; "
        )
    out.write(
        f"checkpoints acked {summary['checkpoints_acked']}/{summary['checkpoints_sent']}, "
        f"barge-ins {summary['barge_ins']}; ended by {report.closed_by or '?'} "
        f"({report.close_code} {report.close_reason})\n"
    )
    for error in report.protocol_errors:
        out.write(f"  protocol error: {error}\n")


def run_simulate(args: argparse.Namespace, settings: Any) -> int:
    from voicebridge.config import load_pipeline
    from voicebridge.sim.analysis import build_report
    from voicebridge.sim.simulate import simulate_call

    spec = load_pipeline(settings.resolve_pipeline_path(), max_bytes=settings.limits.max_yaml_bytes)
    fmt = stream_format(args)
    lines = caller_lines(args, fmt.sample_rate)

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
    print_summary(report)
    return 0 if not report.protocol_errors else 1


async def resolve_target(
    url: str, fmt: StreamFormat | None
) -> tuple[str, StreamFormat, str | None]:
    """(stream URL, format, call UUID). A ws(s) URL is used as is; an http(s) URL is asked for
    its answer XML like Plivo does, and the call must then start with the UUID it was asked for
    (a service with stream tokens admits only that call)."""
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss"):
        return url, fmt or StreamFormat.from_short("l16", 16000), None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"call: expected a ws://, wss://, http:// or https:// URL, got {url!r}")
    answer_url = url if parts.path not in ("", "/") else url.rstrip("/") + "/answer"
    try:
        answered = await answer_call(answer_url)
    except httpx.HTTPStatusError as exc:
        status, text = exc.response.status_code, exc.response.text.strip()[:200]
        hint = " (set PLIVO_AUTH_TOKEN to sign like Plivo)" if status == 403 else ""
        raise ValueError(f"call: {answer_url} answered {status}: {text}{hint}") from None
    except ValueError as exc:
        raise ValueError(f"call: {exc}") from None
    return answered.url, fmt or answered.fmt, answered.call_uuid


def run_call(args: argparse.Namespace) -> int:
    from voicebridge.sim.analysis import report_from_parts

    configure_logging("auto", args.log_level)

    async def go() -> CallReport:
        explicit = stream_format(args) if args.rate or args.codec != "l16" else None
        ws_url, fmt, call_uuid = await resolve_target(args.url, explicit)
        lines = caller_lines(args, fmt.sample_rate)
        caller = PlivoCaller(ws_url, fmt, speed=1.0, call_id=call_uuid)
        try:
            record = await caller.run_turns(
                [line.pcm for line in lines],
                gap_s=args.gap,
                reply_timeout_s=args.reply_timeout,
                interrupt_after_s=args.interrupt_after,
            )
        except InvalidStatus as exc:  # e.g. a ws:// URL without the stream token
            body = exc.response.body.decode(errors="replace").strip()[:200]
            where = ws_url.split("?", 1)[0]
            raise ValueError(
                f"call: {where} refused the WebSocket ({exc.response.status_code}: {body})"
            ) from None
        report = report_from_parts(
            pipeline=ws_url.split("?", 1)[0], record=record, lines=lines, mode="realtime"
        )
        write_outputs(args, report, record)
        return report

    report = asyncio.run(go())
    print_summary(report)
    return 0 if not report.protocol_errors else 1


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="simulate a call against a pipeline (no phone needed)")
    p.add_argument("pipeline", nargs="?", help="pipeline YAML (default: the configured one)")
    add_caller_arguments(p)
    p.add_argument("--fast", action="store_true", help="virtual time: as fast as computing allows")
    p.add_argument("--config", help="service settings YAML")
    p.set_defaults(handler=_simulate)

    p = sub.add_parser("call", help="call a running voicebridge (or any Plivo-protocol server)")
    p.add_argument("url", help="its http(s) base URL (answer XML is fetched) or its ws(s) URL")
    add_caller_arguments(p)
    p.set_defaults(handler=run_call)


def _simulate(args: argparse.Namespace) -> int:
    from voicebridge.config import load_service_settings

    settings = load_service_settings(args.config, overrides={"pipeline": args.pipeline})
    configure_logging(settings.log.format, args.log_level)
    return run_simulate(args, settings)
