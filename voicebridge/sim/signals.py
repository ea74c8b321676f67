"""Synthetic caller audio that WebRTC VAD takes for speech, for tests and load generation.

A voiced buzz (a harmonic series on a wobbling 140 Hz fundamental with a syllable-rate envelope)
needs no model and no recording, and makes VAD-driven behaviour reproducible.
"""

from __future__ import annotations

import numpy as np

from voicebridge.frames import PCM


def speech_like(duration_s: float, rate: int, *, level: int = 8000, f0: float = 140.0) -> PCM:
    """A voiced, speech-like signal of ``duration_s`` seconds at ``rate`` Hz."""
    n = round(duration_s * rate)
    t = np.arange(n, dtype=np.float64) / rate
    fundamental = f0 + 20.0 * np.sin(2 * np.pi * 3.0 * t)
    phase = 2 * np.pi * np.cumsum(fundamental) / rate
    harmonics = np.arange(1, 20, dtype=np.float64)[:, None]
    buzz = (np.sin(harmonics * phase) / harmonics).sum(axis=0)
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4.0 * t)
    signal = buzz * envelope
    peak = float(np.abs(signal).max()) if n else 1.0
    return (signal / (peak or 1.0) * level).astype(np.int16)


def silence(duration_s: float, rate: int) -> PCM:
    return np.zeros(round(duration_s * rate), np.int16)


def utterances(pattern: list[tuple[str, float]], rate: int) -> PCM:
    """Concatenate ("speech", s) and ("silence", s) parts into one caller track."""
    parts = [speech_like(d, rate) if kind == "speech" else silence(d, rate) for kind, d in pattern]
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)
