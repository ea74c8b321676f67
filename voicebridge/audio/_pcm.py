"""Shared PCM typing and input checks for the audio package."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]
"""Mono 16-bit PCM samples in native byte order."""

_INT16 = np.dtype(np.int16)


def as_pcm(pcm: Any, what: str = "pcm") -> PCM:
    """Return ``pcm`` as a native int16 ndarray without copying when it already is one.

    Other dtypes are refused instead of cast: silently truncating float or int32 audio would
    turn a caller's bug into noise on the line.
    """
    arr = pcm if isinstance(pcm, np.ndarray) else np.asarray(pcm)
    dt = arr.dtype
    if dt == _INT16:
        return arr
    if dt.kind == "i" and dt.itemsize == 2:  # int16 in the other byte order
        return arr.astype(_INT16)
    raise TypeError(f"{what} must be int16 samples, got dtype {dt}")
