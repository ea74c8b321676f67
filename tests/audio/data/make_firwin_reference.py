"""Writes firwin_reference.npz: reference low-pass taps from ``scipy.signal.firwin``.

``tests/audio/test_fir.py`` checks voicebridge's numpy design against these, so neither the
package nor its ``dev`` extra needs scipy. Made once, with scipy 1.17.1 and numpy 2 on
Python 3.11, by::

    pip install scipy && python tests/audio/data/make_firwin_reference.py

Each entry is one design the resampler makes (``voicebridge/audio/resample.py``, ``_Design``):
for ``out/in = up/down`` in lowest terms and a quality preset (zero crossings, Kaiser beta,
cutoff as a fraction of the lower Nyquist), the filter has ``2 * half_len + 1`` taps with
``half_len = down * ceil(zero_crossings * max(up, down) / down)`` and its cutoff is
``cutoff / max(up, down)`` of the upsampled Nyquist. The set covers both presets, up- and
downsampling, and one long filter with a tiny cutoff (44.1 kHz -> 48 kHz).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import signal

QUALITIES = {"telephony": (12, 7.0, 0.92), "high": (24, 10.0, 0.95)}
DESIGNS = [(2, 1, "telephony"), (1, 3, "telephony"), (3, 2, "high"), (160, 147, "telephony")]


def main() -> None:
    arrays: dict[str, np.ndarray] = {}
    for up, down, quality in DESIGNS:
        zero_crossings, beta, cutoff = QUALITIES[quality]
        top = max(up, down)
        numtaps = 2 * down * math.ceil(zero_crossings * top / down) + 1
        key = f"{up}_{down}_{quality}"
        arrays[f"{key}_params"] = np.array([numtaps, cutoff / top, beta])
        arrays[f"{key}_taps"] = signal.firwin(numtaps, cutoff / top, window=("kaiser", beta))
    np.savez_compressed(Path(__file__).with_name("firwin_reference.npz"), **arrays)


if __name__ == "__main__":
    main()
