"""Checks on synthesised speech, shared by the tests of the local voices (hibari, Piper)."""

from __future__ import annotations

import numpy as np

from voicebridge.frames import PCM, AgentAudio, Frame


def rms(pcm: PCM) -> float:
    return float(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))))


def audio_of(frames: list[Frame]) -> list[AgentAudio]:
    return [f for f in frames if isinstance(f, AgentAudio)]


def assert_speech(piece: AgentAudio, rate: int) -> None:
    assert piece.pcm.dtype == np.int16 and piece.pcm.ndim == 1
    seconds = len(piece.pcm) / rate
    assert 0.3 <= seconds <= 5.0, seconds
    assert rms(piece.pcm) > 1000, rms(piece.pcm)  # speech, not silence or a whisper


def spectral_centroid(pcm: PCM, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    band = freqs < 4000  # where the voice's energy is, below the 8 kHz Nyquist of the test rate
    return float(np.sum(freqs[band] * spectrum[band]) / np.sum(spectrum[band]))
