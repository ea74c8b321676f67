"""Linear 16-bit PCM payloads (``audio/x-l16``): signed, little-endian, mono.

Decoding is a zero-copy view of the payload, so the hot path allocates nothing for L16 input.
"""

from __future__ import annotations

import numpy as np

from ._pcm import PCM, as_pcm

_LE_INT16 = np.dtype("<i2")


def l16_decode(payload: bytes | bytearray | memoryview) -> PCM:
    """View an L16 payload as int16 samples without copying.

    The result shares memory with ``payload`` (read-only when it is ``bytes``); copy it before
    mutating.
    """
    size = memoryview(payload).nbytes
    if size % 2:
        raise ValueError(f"L16 payload has odd length {size}: expected whole 16-bit samples")
    return np.frombuffer(payload, dtype=_LE_INT16)


def l16_encode(pcm: PCM) -> bytes:
    """Serialise int16 samples as little-endian bytes (no intermediate copy when already LE)."""
    samples = np.asarray(as_pcm(pcm), dtype=_LE_INT16)
    return samples.tobytes()
