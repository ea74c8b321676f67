"""Fixed-size framing of a PCM stream, plus sample/millisecond conversions.

Network chunks rarely match what a consumer wants (VAD needs exactly 10/20/30 ms, Plivo wants
regular 20 ms media), so :class:`FrameSplitter` re-cuts arbitrary pieces into whole frames and
carries the remainder in a small preallocated buffer.
"""

from __future__ import annotations

import numpy as np

from ._pcm import PCM, as_pcm


def samples_for_ms(rate: int, ms: float) -> int:
    """Samples in ``ms`` milliseconds at ``rate`` Hz, rounded to the nearest whole sample."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if ms < 0:
        raise ValueError(f"ms must not be negative, got {ms}")
    return int(rate * ms / 1000 + 0.5)


def duration_ms(samples: int, rate: int) -> float:
    """Duration of ``samples`` samples at ``rate`` Hz, in milliseconds."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    return samples * 1000.0 / rate


class FrameSplitter:
    """Re-cuts a stream of int16 chunks into frames of exactly ``frame_samples``.

    Frames returned by one :meth:`push` are views of a single fresh array (at most one
    concatenation per push), so they never alias the caller's input or the carried remainder
    and stay valid after later pushes.
    """

    __slots__ = ("_carry", "_frame", "_pending")

    def __init__(self, frame_samples: int) -> None:
        if frame_samples <= 0:
            raise ValueError(f"frame_samples must be positive, got {frame_samples}")
        self._frame = frame_samples
        self._carry: PCM = np.zeros(frame_samples, dtype=np.int16)
        self._pending = 0

    @property
    def frame_samples(self) -> int:
        return self._frame

    @property
    def pending(self) -> int:
        """Samples carried over, waiting for the rest of their frame."""
        return self._pending

    def push(self, pcm: PCM) -> list[PCM]:
        """Add samples; return every frame now complete, oldest first (possibly none)."""
        samples = as_pcm(pcm)
        if samples.ndim != 1:
            raise ValueError(f"pcm must be 1-D, got shape {samples.shape}")
        frame, pending = self._frame, self._pending
        if pending == 0 and samples.size == frame:  # the usual case: one whole frame in
            return [samples.copy()]
        total = pending + samples.size
        if total < frame:
            self._carry[pending:total] = samples
            self._pending = total
            return []
        whole = total - total % frame
        block = np.empty(whole, dtype=np.int16)
        block[:pending] = self._carry[:pending]
        used = whole - pending
        block[pending:] = samples[:used]
        rest = samples.size - used
        self._carry[:rest] = samples[used:]
        self._pending = rest
        return list(block.reshape(-1, frame))

    def flush(self, pad: bool = True) -> list[PCM]:
        """Return the carried remainder as a last frame (zero-padded when ``pad``), then clear.

        Returns an empty list when nothing is pending, so callers can treat it like
        :meth:`push`.
        """
        pending = self._pending
        if pending == 0:
            return []
        self._pending = 0
        if pad:
            last = np.zeros(self._frame, dtype=np.int16)
            last[:pending] = self._carry[:pending]
            return [last]
        return [self._carry[:pending].copy()]

    def reset(self) -> None:
        """Drop any carried samples."""
        self._pending = 0
