"""The terminal transcript of a simulated call: who said what, and where each reply's time went.

``simulate`` and ``call`` print the same way from a ``CallReport``; only what the report knows
differs (a call to another process has no service timeline, so its split comes from the wire).
"""

from __future__ import annotations

from typing import TextIO

from voicebridge.sim.report import CallReport, TurnReport

# The service's own split of a reply ("vad+stt" includes the VAD's silence window).
_STAGE_FIGURES = (
    ("vad+stt", "stt_s"),
    ("dialogue", "dialogue_s"),
    ("tts", "tts_s"),
    ("send", "send_s"),
    ("playout", "playout_start_s"),
)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def latency_line(turn: TurnReport) -> str | None:
    """``latency 630 ms (vad+stt 500, dialogue 0, tts 120 ms)``: what is known of the turn,
    interrupted turns included; None for a turn that answers nothing (the greeting)."""
    if turn.caller_speech_end_s is None:
        return None
    parts = [
        f"{name} {_ms(turn.timing[key])}"
        for name, key in _STAGE_FIGURES
        if isinstance(turn.timing.get(key), int | float)
    ]
    if not parts:
        # No service timeline (a remote call): split what the wire shows.
        sent, played = turn.first_audio_sent_s, turn.first_audio_played_s
        if sent is not None:
            parts.append(f"first audio after {_ms(sent - turn.caller_speech_end_s)}")
        if sent is not None and played is not None:
            parts.append(f"playout {_ms(played - sent)}")
    detail = f" ({', '.join(parts)} ms)" if parts else ""
    if turn.latency_s is not None:
        return f"latency {_ms(turn.latency_s)} ms{detail}"
    total = turn.timing.get("latency_s")
    if isinstance(total, int | float):
        return f"latency {_ms(total)} ms{detail}"
    return f"latency unknown{detail}" if parts else None


def print_summary(report: CallReport, out: TextIO) -> None:
    """A transcript of the call for the terminal."""
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
        line = latency_line(turn)
        if line is not None:
            out.write(f"          {line}\n")
    summary = report.summary()
    if summary["latency_p50_s"] is not None:
        out.write(
            f"turn latency p50 {_ms(summary['latency_p50_s'])} ms, "
            f"max {_ms(summary['latency_max_s'])} ms; "
        )
    out.write(
        f"checkpoints acked {summary['checkpoints_acked']}/{summary['checkpoints_sent']}, "
        f"barge-ins {summary['barge_ins']}; ended by {report.closed_by or '?'} "
        f"({report.close_code} {report.close_reason})\n"
    )
    for error in report.protocol_errors:
        out.write(f"  protocol error: {error}\n")
