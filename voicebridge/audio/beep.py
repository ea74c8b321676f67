"""An answering machine's beep: a narrowband tone (400-2000 Hz) held for 150 ms or more.

After a voicemail greeting, the machine beeps and starts recording; a message spoken before the
beep is lost. Speech and music are broadband or move in pitch, a beep is one steady spectral
line, so each frame's tonality (the share of its energy in the strongest in-band peak) and the
peak's steadiness over consecutive frames tell them apart. Frames are analysed in one vectorised
FFT per chunk of audio fed, so the detector costs little per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from voicebridge.audio._pcm import PCM, as_pcm

BAND_HZ: Final = (400.0, 2000.0)
MIN_BEEP_S: Final = 0.150
WINDOW_S: Final = 0.032
HOP_S: Final = 0.010
# Share of a frame's energy in its peak (3 bins: a Hann window's main lobe) for a "tone" frame.
MIN_TONALITY: Final = 0.80
# Quieter frames are not tones whatever their spectrum: -40 dBFS RMS.
MIN_RMS: Final = 32768 * 10 ** (-40 / 20)
# How far the peak may wander between frames and still be the same tone.
MAX_DRIFT_HZ: Final = 60.0


@dataclass(frozen=True)
class Beep:
    """A detected beep: stream times in seconds (from the first sample fed) and its pitch."""

    start_s: float
    end_s: float
    frequency_hz: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class BeepDetector:
    """Feed mono int16 PCM in any chunk sizes; ``feed`` returns each beep once it has ended
    (the tone stopped after at least ``min_beep_s``). ``flush`` reports a beep still sounding
    when the audio ends."""

    def __init__(self, sample_rate: int, *, min_beep_s: float = MIN_BEEP_S) -> None:
        if sample_rate < 2 * BAND_HZ[1]:
            raise ValueError(f"sample_rate must be at least {2 * BAND_HZ[1]:g} Hz")
        self.rate = sample_rate
        self.min_beep_s = min_beep_s
        self.win = round(WINDOW_S * sample_rate)
        self.hop = round(HOP_S * sample_rate)
        freqs = np.fft.rfftfreq(self.win, 1 / sample_rate)
        self._freqs = freqs
        self._band = np.flatnonzero((freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1]))
        self._window = np.hanning(self.win).astype(np.float32)
        self._buffer = np.zeros(0, np.float32)
        self._consumed = 0  # samples before the buffer's start
        self._run_start: int | None = None  # first sample of the tone run
        self._run_end = 0
        self._run_freqs: list[float] = []

    def feed(self, pcm: PCM) -> list[Beep]:
        samples = as_pcm(pcm).astype(np.float32)
        self._buffer = np.concatenate((self._buffer, samples))
        if len(self._buffer) < self.win:
            return []
        frames = sliding_window_view(self._buffer, self.win)[:: self.hop]
        tonal, peak_hz = self._classify(frames)
        found: list[Beep] = []
        starts = self._consumed + np.arange(len(frames)) * self.hop
        for is_tone, freq, start in zip(
            tonal.tolist(), peak_hz.tolist(), starts.tolist(), strict=True
        ):
            if is_tone and (
                self._run_start is None
                or abs(freq - float(np.median(self._run_freqs))) <= MAX_DRIFT_HZ
            ):
                if self._run_start is None:
                    self._run_start = start
                self._run_end = start + self.win
                self._run_freqs.append(freq)
                continue
            beep = self._close_run()
            if beep is not None:
                found.append(beep)
            if is_tone:  # a new tone right after another: start a run of its own
                self._run_start, self._run_end, self._run_freqs = start, start + self.win, [freq]
        used = len(frames) * self.hop
        self._buffer = self._buffer[used:]
        self._consumed += used
        return found

    def flush(self) -> list[Beep]:
        """The beep still sounding when the audio ended, if it was long enough."""
        beep = self._close_run()
        return [beep] if beep is not None else []

    def _classify(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per frame: is it a loud narrowband in-band tone, and the peak's frequency."""
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        band = power[:, self._band]
        peak = self._band[np.argmax(band, axis=1)]
        rows = np.arange(len(frames))
        lobe = (
            power[rows, peak]
            + power[rows, peak - 1]
            + power[rows, np.minimum(peak + 1, power.shape[1] - 1)]
        )
        total = power[:, 1:].sum(axis=1) + 1e-9
        rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
        tonal = (lobe / total >= MIN_TONALITY) & (rms >= MIN_RMS)
        return tonal, self._freqs[peak]

    def _close_run(self) -> Beep | None:
        start, end, freqs = self._run_start, self._run_end, self._run_freqs
        self._run_start, self._run_freqs = None, []
        if start is None:
            return None
        # Frames overlap: the tone spans from the first tonal frame's start to the last's end,
        # less the part of a window that had to overlap it to look tonal.
        duration = (end - start - self.win + self.hop) / self.rate
        if duration + 1e-9 < self.min_beep_s:
            return None
        return Beep(start / self.rate, end / self.rate, float(np.median(freqs)))


def find_beeps(pcm: PCM, sample_rate: int) -> list[Beep]:
    """Every beep in a whole recording."""
    detector = BeepDetector(sample_rate)
    return detector.feed(pcm) + detector.flush()
