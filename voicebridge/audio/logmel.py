"""Whisper-style log-mel spectrogram of a fixed-length 16 kHz window, in numpy.

Audio models fine-tuned from Whisper's encoder (the smart-turn end-of-turn model among them) read
80 log-mel bands every 10 ms: a centred 25 ms periodic-Hann STFT, a Slaney-normalised mel bank over
0-8 kHz, ``log10``, a floor 8 decades below the loudest band, then ``(x + 4) / 4``. Computing them
here keeps ``transformers`` and ``torch`` out of the install. The whole window is one strided view
and one batched real FFT: no per-frame Python, so 8 s of audio costs a few milliseconds.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

__all__ = ["HOP", "N_FFT", "N_MELS", "RATE", "log_mel"]

RATE = 16000
N_FFT = 400  # 25 ms window
HOP = 160  # 10 ms step
N_MELS = 80

FloatArray = npt.NDArray[np.float32]


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear (3 per 200 Hz) below 1 kHz, logarithmic above."""
    linear = hz * (3.0 / 200.0)
    log = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz < 1000.0, linear, log)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = mel * (200.0 / 3.0)
    log = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel < 15.0, linear, log)


@functools.cache
def _mel_bank() -> npt.NDArray[np.float64]:
    """``(N_MELS, N_FFT // 2 + 1)``: triangles between neighbouring mel points, each scaled so
    its area is the same (Slaney normalisation)."""
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array(RATE / 2.0)), N_MELS + 2))
    bins = np.linspace(0.0, RATE / 2.0, N_FFT // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    triangles = np.clip(np.minimum(rising, falling), 0.0, None)
    return triangles * (2.0 / (upper - lower))


@functools.cache
def _window() -> npt.NDArray[np.float64]:
    """Periodic Hann: the STFT's windows overlap-add to a constant."""
    n = np.arange(N_FFT)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)


def log_mel(audio: npt.NDArray[np.floating], *, normalize: bool = True) -> FloatArray:
    """Features of ``audio`` (float, 16 kHz, already cut or padded to the model's window):
    ``(N_MELS, len(audio) // HOP)`` float32, roughly in [-1, 1].

    ``normalize`` first scales the waveform to zero mean and unit variance, as the smart-turn
    model's training did (so the caller's level does not matter).
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1 or x.size < N_FFT:
        raise ValueError(f"log_mel: expected 1-D audio of at least {N_FFT} samples, got {x.shape}")
    if normalize:
        x = (x - x.mean()) / np.sqrt(x.var() + np.float32(1e-7))
    half = N_FFT // 2
    padded = np.pad(x.astype(np.float64), half, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _window(), axis=1)) ** 2  # (frames, bins)
    mel = power @ _mel_bank().T  # (frames, mels)
    logs = np.log10(np.maximum(mel, 1e-10))[:-1]  # the centred STFT's extra last frame goes
    logs = np.maximum(logs, logs.max() - 8.0)
    return np.ascontiguousarray(((logs + 4.0) / 4.0).T, dtype=np.float32)
