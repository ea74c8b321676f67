"""Run one scenario: its pipeline served on loopback, its turns played by the simulated caller
(virtual clock unless ``realtime``), the call report checked against its expectations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicebridge.call.context import HistoryEntry
from voicebridge.config import load_pipeline
from voicebridge.plivo.formats import StreamFormat
from voicebridge.scenarios.checks import check_scenario
from voicebridge.scenarios.spec import JudgeSpec, Scenario, Turn
from voicebridge.sim.analysis import build_report
from voicebridge.sim.caller import Keypress
from voicebridge.sim.report import CallReport
from voicebridge.sim.signals import speech_like
from voicebridge.sim.simulate import CallerLine, SimulatedCall, simulate_call

# The caller's voice: the offline speaker pitched down, as ``voicebridge simulate`` does.
CALLER_PITCH_SEMITONES = -2.0


@dataclass
class ScenarioResult:
    """One scenario's outcome; ``failures`` empty means it passed."""

    scenario: Scenario
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: CallReport | None = None
    call: SimulatedCall | None = None
    verdict: str | None = None  # the judge's verdict and reasons, when the scenario has one

    @property
    def passed(self) -> bool:
        return not self.failures


def stream_format(scenario: Scenario) -> StreamFormat:
    return StreamFormat.from_short(scenario.codec, scenario.rate)


def _turn_audio(
    scenario: Scenario, turn: Turn, rate: int, barge_in_ms: int | None = None
) -> CallerLine:
    barge = None if barge_in_ms is None else barge_in_ms / 1000
    if turn.dtmf is not None:
        keys = Keypress(turn.dtmf)
        return CallerLine(f"(keypad) {turn.dtmf}", np.zeros(0, np.int16), keys, barge)
    if turn.say is not None:
        from voicebridge.stages.tts.hibari import synthesize

        pcm = synthesize(turn.say, rate, pitch_semitones=CALLER_PITCH_SEMITONES)
    elif turn.wav is not None:
        from voicebridge.sim.wav import read_wav_mono

        pcm = read_wav_mono(scenario.resolve(turn.wav), rate)
    else:
        pcm = speech_like((turn.sound_ms or 0) / 1000, rate)
    if turn.pause_ms:
        pcm = np.concatenate([pcm, np.zeros(rate * turn.pause_ms // 1000, np.int16)])
    return CallerLine(turn.say, pcm, interrupt_after_s=barge)


async def run_scenario(scenario: Scenario) -> ScenarioResult:
    """Place the scenario's call and check it. Problems in the files raise (ConfigError etc.);
    a call that goes wrong is a failure of the scenario."""
    began = time.monotonic()
    fmt = stream_format(scenario)
    spec = load_pipeline(scenario.resolve(scenario.pipeline))
    lines = [
        _turn_audio(scenario, turn, fmt.sample_rate, scenario.barge_in_ms(i))
        for i, turn in enumerate(scenario.turns)
    ]
    await spec.preload()
    persona_failures: list[str] = []
    more = _persona(scenario, fmt.sample_rate, persona_failures) if scenario.persona else None
    call = await simulate_call(
        spec,
        fmt,
        lines,
        fast=not scenario.realtime,
        gap_s=scenario.gap_ms / 1000,
        reply_timeout_s=scenario.reply_timeout_ms / 1000,
        more=more,
    )
    report = build_report(call)
    failures = check_scenario(scenario, report, call.events, call.record.played_spans)
    failures += persona_failures
    verdict = None
    if scenario.expect.judge is not None:
        verdict, failed = await _judge(scenario.expect.judge, report)
        failures += failed
    return ScenarioResult(scenario, failures, time.monotonic() - began, report, call, verdict)


def _persona(
    scenario: Scenario, rate: int, failures: list[str]
) -> Callable[[int, Sequence[HistoryEntry]], Awaitable[CallerLine | None]]:
    """The model-played caller's next line, spoken in the offline voice; an endpoint that fails
    ends the caller's part and fails the scenario."""
    import httpx

    from voicebridge.scenarios.persona import next_caller_line

    persona = scenario.persona
    assert persona is not None
    scripted = len(scenario.turns)

    async def more(index: int, history: Sequence[HistoryEntry]) -> CallerLine | None:
        if index - scripted >= persona.max_turns:
            return None
        try:
            text = await next_caller_line(persona, history)
        except httpx.HTTPError as exc:
            reason = " ".join(str(exc).split())[:300]
            failures.append(f"persona: no next line ({type(exc).__name__}: {reason})")
            return None
        return None if text is None else _turn_audio(scenario, Turn(say=text), rate)

    return more


async def _judge(spec: JudgeSpec, report: CallReport) -> tuple[str, list[str]]:
    """The judge's verdict as a line for the report, and the failure it makes (if any)."""
    import httpx

    from voicebridge.scenarios.judge import judge_call

    try:
        verdict = await judge_call(spec, report.history)
    except (httpx.HTTPError, ValueError) as exc:
        line = f"judge: no verdict ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
        return line, [line]
    line = f"judge: {'pass' if verdict.passed else 'fail'}: {verdict.reasons}"
    return line, [] if verdict.passed else [line]


def write_call_page(result: ScenarioResult, folder: Path) -> Path | None:
    """The scenario's HTML call page (both waveforms on one timeline) in ``folder``."""
    from voicebridge.sim.html_report import write_html

    if result.report is None or result.call is None:
        return None
    record = result.call.record
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in result.scenario.name)
    path = folder / f"{safe or 'scenario'}.html"
    write_html(path, result.report, record.caller_audio, record.heard_audio, record.fmt.sample_rate)
    return path


def run_blocking(scenario: Scenario) -> ScenarioResult:
    return asyncio.run(run_scenario(scenario))
