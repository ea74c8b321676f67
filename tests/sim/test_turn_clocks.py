"""A turn's latency split, measured where it happens: never a playout that starts before its
audio was sent, and what is known of a turn the caller cut off."""

from __future__ import annotations

import numpy as np

from voicebridge.call.events import TurnCompleted
from voicebridge.config import load_pipeline_text
from voicebridge.plivo.formats import L16_16K
from voicebridge.sim.analysis import build_report
from voicebridge.sim.signals import speech_like
from voicebridge.sim.simulate import CallerLine, simulate_call
from voicebridge.sim.summary import latency_line

RATE = L16_16K.sample_rate


def pipeline(reply: str, greeting: str = "") -> object:
    return load_pipeline_text(
        f"""
name: clocks
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: [one, two, three]}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: {greeting!r}, reply: {reply!r}}}
  - type: voicebridge.testing:ToneSpeaker
    params: {{ms_per_char: 30}}
  - type: encode
"""
    )


def line() -> CallerLine:
    pcm = np.concatenate([speech_like(0.5, RATE), np.zeros(RATE // 10, np.int16)])
    return CallerLine(None, pcm)


async def test_playout_never_starts_before_the_audio_was_sent_in_real_time() -> None:
    """``playout_start_s`` is first played (Plivo's ack less the piece's length) minus first
    sent. The simulated caller used to send each 20 ms frame at the start of its 20 ms, so the
    service's clock of caller audio ran up to a frame ahead of real time, and it started
    playing arriving audio back at its last frame boundary: the two clocks disagreed by up to
    20 ms and the figure came out negative."""
    call = await simulate_call(
        pipeline("Fine, thanks.", greeting="Hello there."),  # type: ignore[arg-type]
        L16_16K,
        [line(), line(), line()],
        fast=False,
        gap_s=0.3,
        first_wait_s=0.3,
        tail_s=0.2,
    )
    played = [e.timing for e in call.events if isinstance(e, TurnCompleted)]
    assert len(played) == 4  # the greeting and three replies
    assert all(t["playout_start_s"] is not None and t["playout_start_s"] >= 0 for t in played)


async def test_an_interrupted_turn_still_reports_its_split() -> None:
    reply = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen."
    call = await simulate_call(
        pipeline(reply),  # type: ignore[arg-type]
        L16_16K,
        [line(), line()],
        fast=True,
        gap_s=0.3,
        interrupt_after_s=0.4,
    )
    report = build_report(call)
    cut = next(t for t in report.turns if t.interrupted)
    assert cut.timing["interrupted"] is True
    assert isinstance(cut.timing["stt_s"], float) and isinstance(cut.timing["tts_s"], float)
    assert cut.timing["duration_s"] is None  # it never played to its end
    text = latency_line(cut)
    assert text is not None and text.startswith(f"latency {cut.latency_s * 1000:.0f} ms (vad+stt ")
    assert "dialogue" in text and "tts" in text
