"""The answering-machine beep detector (``voicebridge.audio.beep``) on a corpus made here.

Every case is synthesised from a seed, so the corpus is reproducible and needs no recordings:

* beeps: a greeting (speech-like voice of a random pitch and length, line noise), a short gap,
  then a beep of one of several frequencies and lengths, then silence. Detected when a beep is
  reported whose end is within 0.1 s of the true end; any beep reported earlier (inside the
  greeting) is also a false alarm.
* no beep: speech (several voices), hold-music-like audio (chords changing every half second,
  with and without a melody line; a solo instrument), DTMF key tones, and noise. Every beep
  reported is a false alarm. The solo instrument (one steady note at a time) is the detector's
  known blind spot.

Prints a JSON summary (``--out`` writes it too): detection rate per beep frequency and length,
false alarms per kind of audio, and per hour of audio without beeps.

    PYTHONPATH=. python bench/beep.py --cases 40
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicebridge.audio.beep import find_beeps
from voicebridge.sim.signals import speech_like

RATE = 8000
BEEP_HZ = (440.0, 600.0, 850.0, 1000.0, 1400.0, 1800.0)
BEEP_S = (0.15, 0.25, 0.5, 1.0)
DTMF = ((697, 1209), (770, 1336), (852, 1477), (941, 1633))


@dataclass(frozen=True)
class Case:
    kind: str
    audio: np.ndarray
    beep_end_s: float | None = None  # None: the case has no beep
    beep_hz: float | None = None
    beep_s: float | None = None


def _tone(freq: float, seconds: float, level: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)  # 5 ms edges, as real beeps have
    return level * ramp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))


def _noise(n: int, rng: np.random.Generator, dbfs: float = -55.0) -> np.ndarray:
    return rng.normal(0, 32768 * 10 ** (dbfs / 20), n)


def _speech(seconds: float, rng: np.random.Generator) -> np.ndarray:
    voice = speech_like(seconds, RATE, level=int(rng.uniform(4000, 12000)), f0=rng.uniform(90, 240))
    return voice.astype(np.float64)


def _music(seconds: float, rng: np.random.Generator, melody: bool) -> np.ndarray:
    """Chords of three notes with a few harmonics, a new chord every 0.5 s; ``melody`` adds a
    louder single line on top, a new note every 0.25 s."""
    out = np.zeros(round(seconds * RATE))
    step = round(0.5 * RATE)
    for start in range(0, len(out), step):
        root = 220.0 * 2 ** (rng.integers(0, 12) / 12)
        for ratio in (1.0, 1.26, 1.5):
            for harmonic, gain in ((1, 1.0), (2, 0.5), (3, 0.3)):
                part = _tone(root * ratio * harmonic, step / RATE, 1500 * gain, rng)
                out[start : start + step] += part[: len(out) - start]
    if melody:
        step = round(0.25 * RATE)
        for start in range(0, len(out), step):
            note = 440.0 * 2 ** (rng.integers(0, 15) / 12)
            out[start : start + step] += _tone(note, step / RATE, 3000, rng)[: len(out) - start]
    return out


def _flute(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A solo instrument: one note at a time, 0.25-0.6 s each, a weak second harmonic. This is
    what a beep detector on pitch alone cannot tell from a beep; it is in the corpus to show it."""
    parts, total = [], 0
    while total < seconds * RATE:
        note = 440.0 * 2 ** (rng.integers(0, 15) / 12)
        length = rng.uniform(0.25, 0.6)
        part = _tone(note, length, 6000, rng) + _tone(2 * note, length, 1200, rng)
        parts.append(part)
        total += len(part)
    return np.concatenate(parts)[: round(seconds * RATE)]


def _dtmf(seconds: float, rng: np.random.Generator) -> np.ndarray:
    parts = []
    for _ in range(round(seconds / 0.2)):
        low, high = DTMF[rng.integers(0, len(DTMF))]
        parts += [_tone(low, 0.1, 5000, rng) + _tone(high, 0.1, 5000, rng), np.zeros(800)]
    return np.concatenate(parts)


def _pcm(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = signal + _noise(len(signal), rng)
    return np.clip(noisy, -32768, 32767).astype(np.int16)


def corpus(cases_per_kind: int, seed: int = 18) -> Iterator[Case]:
    rng = np.random.default_rng(seed)
    for freq in BEEP_HZ:
        for length in BEEP_S:
            for _ in range(cases_per_kind):
                greeting = _speech(rng.uniform(2.0, 6.0), rng)
                gap = np.zeros(round(rng.uniform(0.0, 0.6) * RATE))
                beep = _tone(freq, length, rng.uniform(3000, 12000), rng)
                end = (len(greeting) + len(gap) + len(beep)) / RATE
                audio = np.concatenate((greeting, gap, beep, np.zeros(2 * RATE)))
                yield Case("beep", _pcm(audio, rng), end, freq, length)
    for _ in range(cases_per_kind * 4):
        yield Case("speech", _pcm(_speech(10.0, rng), rng))
        yield Case("hold_music", _pcm(_music(10.0, rng, melody=False), rng))
        yield Case("hold_music_melody", _pcm(_music(10.0, rng, melody=True), rng))
        yield Case("dtmf", _pcm(_dtmf(4.0, rng), rng))
        yield Case("solo_flute", _pcm(_flute(10.0, rng), rng))
        yield Case("noise", _pcm(_noise(10 * RATE, rng, dbfs=-30.0), rng))


def evaluate(cases: Sequence[Case]) -> dict[str, object]:
    detected: dict[str, list[bool]] = defaultdict(list)
    false_alarms: dict[str, int] = defaultdict(int)
    clean_seconds: dict[str, float] = defaultdict(float)
    audio_s = 0.0
    started = time.process_time()
    for case in cases:
        beeps = find_beeps(case.audio, RATE)
        audio_s += len(case.audio) / RATE
        if case.beep_end_s is None:
            false_alarms[case.kind] += len(beeps)
            clean_seconds[case.kind] += len(case.audio) / RATE
            continue
        hit = any(abs(b.end_s - case.beep_end_s) <= 0.1 for b in beeps)
        early = sum(1 for b in beeps if b.end_s < case.beep_end_s - 0.1 - (case.beep_s or 0))
        false_alarms["beep_greetings"] += early
        clean_seconds["beep_greetings"] += case.beep_end_s - (case.beep_s or 0)
        detected[f"{case.beep_hz:g} Hz"].append(hit)
        detected[f"{case.beep_s:g} s"].append(hit)
        detected["all"].append(hit)
    cpu_s = time.process_time() - started
    hours = sum(clean_seconds.values()) / 3600
    return {
        "detection_rate": {k: round(sum(v) / len(v), 3) for k, v in detected.items()},
        "beeps": len(detected["all"]),
        "false_alarms": dict(false_alarms),
        "audio_without_beeps_s": {k: round(v, 1) for k, v in clean_seconds.items()},
        "false_alarms_per_hour": round(sum(false_alarms.values()) / hours, 2) if hours else None,
        "cpu_s_per_audio_s": round(cpu_s / audio_s, 5) if audio_s else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10, help="cases per beep (freq, length)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--out", type=Path, help="write the JSON summary here too")
    args = parser.parse_args(argv)
    summary = evaluate(list(corpus(args.cases, args.seed)))
    summary["cases_per_kind"] = args.cases
    summary["seed"] = args.seed
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
