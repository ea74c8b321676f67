"""Streaming sample-rate conversion with a polyphase FIR that carries state across chunks.

A stateless resampler (``scipy.signal.resample_poly``, say) called per 20 ms frame restarts the
filter at every join and clicks. :class:`StreamResampler` keeps the input history and the
polyphase position between calls, so feeding a signal in any pieces gives the same samples as
feeding it whole (to within 1 LSB: BLAS may sum in a different order for a different block shape).

How it works, for ``out/in = up/down`` in lowest terms: conceptually the input is upsampled by
``up`` (zero stuffing), low-pass filtered by one Kaiser-windowed FIR ``h``
(:func:`.fir.kaiser_lowpass`), and every ``down``-th sample is kept. Output ``n`` therefore needs
only the ``taps`` inputs ending at ``floor(n*down/up)`` and one of ``up`` sub-filters (phase
``n*down mod up``). Both the phase sequence and the input offsets repeat every ``up`` outputs, so
the tables are built once per rate pair and shared. A chunk then costs a handful of numpy calls,
no per-sample Python: for small ``up`` (8k/16k/24k/48k pairs) one matmul of strided history
windows against a dense per-cycle matrix, otherwise (22.05k/44.1k pairs) one gather of per-output
windows and a row-wise dot product against a precomputed coefficient table.

The filter is linear phase and its centre is aligned to an integer number of output samples
(:attr:`StreamResampler.delay_samples`). Those first outputs are never emitted, so the output is
time-aligned with the input (sample ``n`` of the output sits at input time ``n*in/out``, like
``resample_poly``) and lags in *count* by the delay; :meth:`StreamResampler.flush` drains it.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt

from ._pcm import PCM, as_pcm
from .fir import kaiser_lowpass

_F32 = npt.NDArray[np.float32]
_I64 = npt.NDArray[np.int64]

_BLOCK: Final = 1024
"""Outputs computed per vectorised step; bounds scratch memory for long one-shot inputs."""
_MAX_PIECE: Final = 8192
"""Input samples taken into the history buffer per step, for the same reason."""
_CYCLE_MAX_UP: Final = 8
"""Largest ``up`` for which the dense per-cycle matmul kernel beats the per-output gather."""


@dataclass(frozen=True, slots=True)
class _Quality:
    zero_crossings: int  # filter half-length, in periods of the lower of the two rates
    beta: float  # Kaiser window shape: ~7 gives ~70 dB stopband, ~10 gives ~100 dB
    cutoff: float  # -6 dB point as a fraction of the lower Nyquist frequency


_QUALITIES: Final = {
    # Flat (<0.05 dB) to 3 kHz at 8 kHz, -1.5 dB at 3.4 kHz; images/aliases from 110 % of the
    # lower Nyquist (4.4 kHz at 8 kHz) are down > 60 dB, from 5 kHz > 75 dB.
    "telephony": _Quality(zero_crossings=12, beta=7.0, cutoff=0.92),
    # Wideband/music: flat (<0.05 dB) to 85 % of the lower Nyquist, ~100 dB down from 110 %;
    # twice the taps.
    "high": _Quality(zero_crossings=24, beta=10.0, cutoff=0.95),
}


class _Design:
    """Polyphase tables for one (up, down, quality); immutable and shared by all streams."""

    def __init__(self, up: int, down: int, quality: _Quality) -> None:
        self.up = up
        self.down = down
        top = max(up, down)
        # Half-length in upsampled samples, rounded up to a multiple of ``down`` so the group
        # delay is a whole number of output samples and the output lands exactly on the grid.
        half_len = down * math.ceil(quality.zero_crossings * top / down)
        self.delay = half_len // down
        length = 2 * half_len + 1
        h = kaiser_lowpass(length, quality.cutoff / top, quality.beta)
        h *= up  # zero stuffing divides the level by ``up``
        h.flags.writeable = False
        self.prototype: npt.NDArray[np.float64] = h  # kept for inspection and tests
        self.taps = taps = -(-length // up)
        padded = np.zeros(taps * up)
        padded[:length] = h
        # phases[p, t] multiplies x[i0 - (taps-1) + t], i.e. the window read oldest first.
        phases = padded.reshape(taps, up).T[:, ::-1]
        k = np.arange(up + _BLOCK, dtype=np.int64)
        # Row k of the block tables serves output n = q*up + k (any q): its input window ends at
        # q*down + offsets[k] and it uses sub-filter (k*down) % up.
        self.offsets: _I64 = (k * down) // up
        self.coefs: _F32 = np.ascontiguousarray(phases[(k * down) % up], dtype=np.float32)
        self.offsets.flags.writeable = False
        self.coefs.flags.writeable = False
        # Small ``up`` (8k/16k/24k/48k pairs): one cycle of ``up`` outputs reads one window of
        # ``width`` inputs, so a block is a single dense matmul over a strided view of the
        # history, cheaper than gathering one window per output.
        self.cycle_matrix: _F32 | None = None
        self.width = taps
        if up <= _CYCLE_MAX_UP:
            self.width = width = taps + int(self.offsets[up - 1])
            matrix = np.zeros((width, up), dtype=np.float32)
            for r in range(up):  # design time only
                start = int(self.offsets[r])
                matrix[start : start + taps, r] = self.coefs[r]
            matrix.flags.writeable = False
            self.cycle_matrix = matrix
            self.coefs = self.coefs[:up]  # the per-output table is not used by this kernel


def _positive_rate(label: str, rate: int) -> int:
    try:
        value = operator.index(rate)  # accepts numpy integers, refuses floats
    except TypeError:
        value = 0
    if value <= 0 or isinstance(rate, bool):
        raise ValueError(f"{label} must be a positive integer, got {rate!r}")
    return value


@lru_cache(maxsize=64)
def _design(up: int, down: int, quality: str) -> _Design:
    return _Design(up, down, _QUALITIES[quality])


class StreamResampler:
    """Stateful int16 resampler for one direction of one call.

    Feed chunks of any length (0 and 1 included) to :meth:`process`; call :meth:`flush` at the
    end of the stream to drain the filter. Not thread-safe; use one instance per stream.
    """

    __slots__ = (
        "_base",
        "_buf",
        "_design",
        "_in_rate",
        "_len",
        "_n_in",
        "_n_out",
        "_out_rate",
        "_windows",
    )

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "telephony") -> None:
        in_rate = _positive_rate("in_rate", in_rate)
        out_rate = _positive_rate("out_rate", out_rate)
        if quality not in _QUALITIES:
            raise ValueError(f"unknown quality {quality!r}; supported: {', '.join(_QUALITIES)}")
        self._in_rate = in_rate
        self._out_rate = out_rate
        g = math.gcd(in_rate, out_rate)
        self._design: _Design | None = (
            None if in_rate == out_rate else _design(out_rate // g, in_rate // g, quality)
        )
        self._buf: _F32 = np.zeros(0, dtype=np.float32)
        self._windows: _F32 = self._buf
        self.reset()

    @property
    def in_rate(self) -> int:
        return self._in_rate

    @property
    def out_rate(self) -> int:
        return self._out_rate

    @property
    def delay_samples(self) -> int:
        """Filter group delay in output samples: how far the emitted count lags the input."""
        return 0 if self._design is None else self._design.delay

    def reset(self) -> None:
        """Forget all history, as if freshly constructed (e.g. a new utterance or call)."""
        d = self._design
        if d is None:
            return
        # Inputs before the stream start are zeros: keep taps-1 of them as history.
        self._ensure_capacity(d.taps - 1 + d.down + _BLOCK)
        self._buf[: d.taps - 1] = 0.0
        self._len = d.taps - 1
        self._base = -(d.taps - 1)  # absolute input index of _buf[0]
        self._n_in = 0  # inputs received
        self._n_out = d.delay  # next output index in the filter's causal numbering

    def process(self, chunk: PCM) -> PCM:
        """Resample the next chunk and return every output sample it completes.

        After ``N`` input samples in total, ``max(0, ceil(N * out/in) - delay_samples)`` output
        samples have been returned. With equal rates the chunk itself is returned (no copy).
        """
        pcm = as_pcm(chunk, "chunk")
        if pcm.ndim != 1:
            raise ValueError(f"chunk must be 1-D, got shape {pcm.shape}")
        d = self._design
        if d is None:
            return pcm
        total = self._n_in + pcm.size
        n_end = -(-total * d.up // d.down)  # outputs whose newest input index is < total
        out = np.empty(max(0, n_end - self._n_out), dtype=np.int16)
        filled = 0
        for start in range(0, pcm.size, _MAX_PIECE):
            piece = pcm[start : start + _MAX_PIECE]
            filled = self._consume(piece, out, filled, None)
        return out

    def flush(self) -> PCM:
        """Drain the filter with zeros, then reset.

        The total output of the stream becomes ``round(total_in * out_rate / in_rate)`` samples.
        """
        d = self._design
        if d is None:
            return np.empty(0, dtype=np.int16)
        target = (2 * self._n_in * d.up + d.down) // (2 * d.down)  # round half up
        remaining = target - (self._n_out - d.delay)
        if remaining <= 0:
            self.reset()
            return np.empty(0, dtype=np.int16)
        n_stop = self._n_out + remaining
        last_input = ((n_stop - 1) * d.down) // d.up
        zeros = np.zeros(max(0, last_input + 1 - self._n_in), dtype=np.int16)
        out = np.empty(remaining, dtype=np.int16)
        filled = 0
        for start in range(0, max(1, zeros.size), _MAX_PIECE):
            filled = self._consume(zeros[start : start + _MAX_PIECE], out, filled, n_stop)
        self.reset()
        return out

    # -- internals -----------------------------------------------------------------------------

    def _ensure_capacity(self, needed: int) -> None:
        d = self._design
        assert d is not None
        # The cycle kernel may read up to ``down`` samples past the data (for outputs it then
        # discards), so keep that much slack; stale values there are finite and harmless.
        needed += d.down + 1
        if self._buf.size >= needed:
            return
        grown = np.zeros(max(needed, 2 * self._buf.size), dtype=np.float32)
        grown[: self._buf.size] = self._buf
        self._buf = grown
        self._windows = np.lib.stride_tricks.sliding_window_view(grown, d.width)

    def _consume(self, piece: PCM, out: PCM, filled: int, n_limit: int | None) -> int:
        """Append ``piece`` to the history, write the outputs it completes, trim the history."""
        d = self._design
        assert d is not None
        up, down, history = d.up, d.down, d.taps - 1
        size = piece.size
        self._ensure_capacity(self._len + size)
        self._buf[self._len : self._len + size] = piece
        self._len += size
        self._n_in += size
        n_end = -(-self._n_in * up // down)
        if n_limit is not None:
            n_end = min(n_end, n_limit)
        n = self._n_out
        cycle = d.cycle_matrix
        while n < n_end:
            count = min(_BLOCK, n_end - n)
            q, r = divmod(n, up)
            first = q * down - history - self._base  # buffer index of cycle q's first input
            if cycle is not None:
                cycles = (r + count + up - 1) // up
                rows = self._windows[first : first + (cycles - 1) * down + 1 : down]
                acc = (np.ascontiguousarray(rows) @ cycle).reshape(-1)[r : r + count]
            else:
                starts = d.offsets[r : r + count] + first
                acc = np.einsum("ij,ij->i", self._windows[starts], d.coefs[r : r + count])
            np.rint(acc, out=acc)
            np.minimum(acc, 32767.0, out=acc)
            np.maximum(acc, -32768.0, out=acc)
            out[filled : filled + count] = acc
            filled += count
            n += count
        self._n_out = n
        # Keep only what the next call's first window can still reach.
        anchor = n - n % up if cycle is not None else n
        keep_from = min(max((anchor * down) // up - history - self._base, 0), self._len)
        if keep_from:
            kept = self._len - keep_from
            self._buf[:kept] = self._buf[keep_from : self._len]
            self._len = kept
            self._base += keep_from
        return filled


def resample(pcm: PCM, in_rate: int, out_rate: int, *, quality: str = "telephony") -> PCM:
    """Resample a whole signal: :meth:`StreamResampler.process` then ``flush``.

    Output length is ``round(len(pcm) * out_rate / in_rate)``, time-aligned with the input; with
    equal rates ``pcm`` itself is returned.
    """
    rs = StreamResampler(in_rate, out_rate, quality=quality)
    head = rs.process(pcm)
    if in_rate == out_rate:
        return head
    tail = rs.flush()
    return np.concatenate((head, tail)) if tail.size else head
