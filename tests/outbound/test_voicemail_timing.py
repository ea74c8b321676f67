"""When the voicemail is spoken, on a virtual timeline: the callee's audio is fed in 20 ms
chunks with its stream time, and the decision is asked after each chunk."""

from __future__ import annotations

import numpy as np

from voicebridge.call.voicemail import VoicemailTiming
from voicebridge.sim.signals import silence, speech_like

RATE = 8000
CHUNK = 160  # 20 ms


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def run(audio: np.ndarray, **options: float) -> tuple[float | None, str | None, int]:
    """Feed ``audio``; the stream time of the first "speak", why, and how many "speak"s."""
    timing = VoicemailTiming(
        RATE, beep_wait_s=options.get("beep_wait_s", 20.0), silence_s=options.get("silence_s", 2.5)
    )
    first, speaks = None, 0
    for start in range(0, len(audio), CHUNK):
        at = start / RATE
        chunk = audio[start : start + CHUNK]
        timing.audio(chunk, at)
        if timing.decide(at + len(chunk) / RATE) == "speak":
            speaks += 1
            first = first if first is not None else at + len(chunk) / RATE
    return first, timing.reason, speaks


def test_speaks_right_after_the_beep_once():
    greeting = speech_like(4.0, RATE)
    audio = np.concatenate([greeting, silence(0.4, RATE), tone(1000, 0.5), silence(5.0, RATE)])
    at, reason, speaks = run(audio)
    assert reason == "beep" and speaks == 1
    beep_end = 4.0 + 0.4 + 0.5
    assert beep_end <= at <= beep_end + 0.1  # after the beep, never before it


def test_never_during_the_greeting_even_with_pauses_shorter_than_the_fallback():
    parts = [speech_like(1.5, RATE), silence(1.0, RATE)] * 4 + [silence(4.0, RATE)]
    audio = np.concatenate(parts)
    at, reason, speaks = run(audio, silence_s=2.5)
    greeting_end = 4 * 2.5 - 1.0
    assert reason == "silence" and speaks == 1
    assert at >= greeting_end + 2.5


def test_a_person_who_keeps_talking_is_never_talked_over():
    parts = [speech_like(2.0, RATE), silence(0.8, RATE)] * 8
    at, reason, speaks = run(np.concatenate(parts))
    assert (at, reason, speaks) == (None, None, 0)


def test_no_greeting_at_all_waits_for_the_beep_then_speaks():
    at, reason, _ = run(silence(30.0, RATE), beep_wait_s=20.0)
    assert reason == "timeout" and 20.0 <= at <= 20.1


def test_music_without_a_beep_or_silence_never_triggers():
    chords = tone(440, 10.0).astype(np.int32) + tone(554, 10.0) + tone(659, 10.0)
    at, _, _ = run((chords // 3).astype(np.int16))
    assert at is None
