"""Low-pass FIR design: a Kaiser-windowed sinc, in numpy.

The resampler needs one filter design per rate pair, made once and cached. A textbook windowed
sinc is a few lines of numpy, so the service does not carry a 140 MB signal-processing library
(and half a second of import at every start) for it. The taps equal ``scipy.signal.firwin``'s
for the same length, cutoff and ``("kaiser", beta)`` window to about 1e-15
(``tests/audio/test_fir.py`` checks them against stored reference taps).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def kaiser_lowpass(numtaps: int, cutoff: float, beta: float) -> npt.NDArray[np.float64]:
    """Linear-phase low-pass taps with unit gain at DC.

    ``cutoff`` is the -6 dB point as a fraction of the Nyquist frequency (0 < cutoff < 1);
    ``beta`` shapes the Kaiser window (larger: lower stopband, wider transition).
    """
    if numtaps < 1:
        raise ValueError(f"numtaps must be at least 1, got {numtaps}")
    if not 0.0 < cutoff < 1.0:
        raise ValueError(f"cutoff must be a fraction of Nyquist in (0, 1), got {cutoff}")
    # Ideal low-pass impulse response (sinc), centred on the middle tap, then windowed.
    m = np.arange(numtaps, dtype=np.float64) - (numtaps - 1) / 2
    taps = cutoff * np.sinc(cutoff * m)
    taps *= np.kaiser(numtaps, beta)
    # Windowing changes the DC gain slightly; normalise it back to exactly 1.
    taps /= taps.sum()
    return taps
