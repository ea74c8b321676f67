"""Expectations checked against a finished call: each failed one is one readable line."""

from __future__ import annotations

import re
from collections.abc import Sequence

from voicebridge.call.events import ActionRequested, CallEvent
from voicebridge.scenarios.spec import CallExpect, Scenario, TurnExpect
from voicebridge.sim.report import CallReport, TurnReport


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_turn(index: int, expect: TurnExpect, turn: TurnReport | None) -> list[str]:
    where = f"turn {index + 1}"
    if turn is None:
        return [f"{where}: the call ended before this turn was spoken"]
    failures: list[str] = []
    heard = turn.heard_text or ""
    if expect.reply_contains is not None and expect.reply_contains.lower() not in heard.lower():
        failures.append(
            f"{where}: reply does not contain {expect.reply_contains!r}; heard {_short(heard)!r}"
        )
    if expect.reply_matches is not None and not re.search(expect.reply_matches, heard, re.I):
        failures.append(
            f"{where}: reply does not match /{expect.reply_matches}/; heard {_short(heard)!r}"
        )
    if expect.reply_within_ms is not None:
        if turn.latency_s is None:
            failures.append(
                f"{where}: no reply was heard (wanted within {expect.reply_within_ms} ms)"
            )
        elif turn.latency_s * 1000 > expect.reply_within_ms:
            failures.append(
                f"{where}: reply started {turn.latency_s * 1000:.0f} ms after the caller stopped "
                f"(limit {expect.reply_within_ms} ms)"
            )
    if expect.interrupted is not None and turn.interrupted != expect.interrupted:
        state = "was" if turn.interrupted else "was not"
        failures.append(f"{where}: reply {state} interrupted")
    return failures


def dead_air(spans: Sequence[tuple[float, float]]) -> float:
    """The longest stretch with nobody speaking between the first and the last sound."""
    longest = 0.0
    end: float | None = None
    for start, stop in sorted(spans):
        if end is not None and start > end:
            longest = max(longest, start - end)
        end = stop if end is None else max(end, stop)
    return longest


def check_call(
    expect: CallExpect,
    report: CallReport,
    events: Sequence[CallEvent],
    played_spans: Sequence[tuple[float, float]],
) -> list[str]:
    failures: list[str] = []
    if expect.heard is not None:
        heard = [str(h["text"]) for h in report.history if h.get("role") == "agent"]
        if [h.strip() for h in heard] != [h.strip() for h in expect.heard]:
            failures.append(f"heard history differs: wanted {expect.heard!r}, heard {heard!r}")
    if expect.actions is not None:
        done = [e.action for e in events if isinstance(e, ActionRequested)]
        if done != list(expect.actions):
            failures.append(f"actions differ: wanted {list(expect.actions)}, got {done}")
    if expect.ended_by is not None and report.closed_by != expect.ended_by:
        failures.append(f"call ended by {report.closed_by or 'nobody'}, wanted {expect.ended_by}")
    if expect.max_dead_air_s is not None:
        spans = [(start, start + length) for start, length in played_spans]
        spans += [
            (t.caller_speech_start_s, t.caller_speech_end_s)
            for t in report.turns
            if t.caller_speech_start_s is not None and t.caller_speech_end_s is not None
        ]
        gap = dead_air(spans)
        if gap > expect.max_dead_air_s:
            failures.append(f"dead air of {gap:.2f} s (limit {expect.max_dead_air_s:g} s)")
    if expect.max_latency_ms is not None:
        for i, t in enumerate(caller_rows(report)):
            if t.latency_s is not None and t.latency_s * 1000 > expect.max_latency_ms:
                failures.append(
                    f"turn {i + 1}: latency {t.latency_s * 1000:.0f} ms "
                    f"(limit {expect.max_latency_ms} ms)"
                )
    if report.protocol_errors:
        failures.append(f"protocol errors: {'; '.join(report.protocol_errors[:3])}")
    return failures


def caller_rows(report: CallReport) -> list[TurnReport]:
    """The report's rows of caller turns, in order (the greeting has a row of its own)."""
    return [t for t in report.turns if t.caller_speech_start_s is not None]


def check_scenario(
    scenario: Scenario,
    report: CallReport,
    events: Sequence[CallEvent],
    played_spans: Sequence[tuple[float, float]],
) -> list[str]:
    """Every failed expectation of ``scenario`` on this call, in the order they were written."""
    failures: list[str] = []
    rows = caller_rows(report)
    for i, turn in enumerate(scenario.turns):
        row = rows[i] if i < len(rows) else None
        failures += check_turn(i, turn.expect, row)
    return failures + check_call(scenario.expect, report, events, played_spans)
