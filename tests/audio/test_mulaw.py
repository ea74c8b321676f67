"""G.711 μ-law: exhaustive checks against an independent pure-Python reference.

The reference below follows the textbook G.711 μ-law algorithm as CPython's ``audioop`` applies
it to 16-bit input (drop the 2 low bits, bias by 33, 8 segments of 16 steps, invert all bits).
It was checked once against ``audioop.lin2ulaw``/``ulaw2lin`` on Python 3.11 for all inputs; the
SHA-256 digests of audioop's output are pinned here so the tests need no audioop.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from voicebridge.audio import mulaw_decode, mulaw_encode, mulaw_encode_bytes

# sha256(audioop.lin2ulaw(int16 -32768..32767 as native bytes, 2))
AUDIOOP_ENCODE_SHA256 = "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a"
# sha256(audioop.ulaw2lin(bytes(range(256)), 2) as little-endian int16)
AUDIOOP_DECODE_SHA256 = "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"

ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


def ref_encode(sample: int) -> int:
    """One int16 sample -> μ-law code, the G.711 way (14-bit magnitude, biased segments)."""
    value = sample >> 2  # 14-bit input; arithmetic shift, so -1..-4 stay negative
    if value < 0:
        magnitude, invert = -value, 0x7F  # sign bit 0 once inverted
    else:
        magnitude, invert = value, 0xFF
    magnitude = min(magnitude, 8159) + 33
    segment = 0
    while segment < 8 and magnitude >= (0x40 << segment):
        segment += 1
    if segment == 8:
        return 0x7F ^ invert
    step = (magnitude >> (segment + 1)) & 0x0F
    return ((segment << 4) | step) ^ invert


def ref_decode(code: int) -> int:
    """One μ-law code -> int16 sample."""
    u = ~code & 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    return -magnitude if u & 0x80 else magnitude


@pytest.fixture(scope="module")
def ref_encoded() -> np.ndarray:
    return np.array([ref_encode(int(s)) for s in ALL_PCM], dtype=np.uint8)


def test_reference_matches_pinned_audioop_output(ref_encoded: np.ndarray) -> None:
    assert hashlib.sha256(ref_encoded.tobytes()).hexdigest() == AUDIOOP_ENCODE_SHA256
    decoded = np.array([ref_decode(c) for c in range(256)], dtype="<i2")
    assert hashlib.sha256(decoded.tobytes()).hexdigest() == AUDIOOP_DECODE_SHA256


def test_encode_all_65536_inputs(ref_encoded: np.ndarray) -> None:
    got = mulaw_encode(ALL_PCM)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, ref_encoded)


def test_decode_all_256_codes() -> None:
    expected = np.array([ref_decode(c) for c in range(256)], dtype=np.int16)
    from_bytes = mulaw_decode(bytes(range(256)))
    from_array = mulaw_decode(ALL_CODES)
    assert from_bytes.dtype == np.int16
    np.testing.assert_array_equal(from_bytes, expected)
    np.testing.assert_array_equal(from_array, expected)


def test_known_values() -> None:
    np.testing.assert_array_equal(
        mulaw_encode(np.array([0, -1, 32767, -32768, 100, -100, 1000, -1000], dtype=np.int16)),
        [255, 126, 128, 0, 242, 114, 206, 78],
    )
    np.testing.assert_array_equal(
        mulaw_decode(b"\xff\x7f\x80\x00\xe6\x66"), [0, 0, 32124, -32124, 276, -276]
    )


def test_decoded_values_are_fixed_points() -> None:
    decoded = mulaw_decode(ALL_CODES)
    np.testing.assert_array_equal(mulaw_decode(mulaw_encode(decoded)), decoded)


def test_encode_bytes_and_out_buffers() -> None:
    pcm = np.array([0, 1000, -1000, 32767], dtype=np.int16)
    assert mulaw_encode_bytes(pcm) == mulaw_encode(pcm).tobytes()
    codes_out = np.empty(4, dtype=np.uint8)
    assert mulaw_encode(pcm, out=codes_out) is codes_out
    np.testing.assert_array_equal(codes_out, mulaw_encode(pcm))
    pcm_out = np.empty(4, dtype=np.int16)
    assert mulaw_decode(codes_out, out=pcm_out) is pcm_out
    np.testing.assert_array_equal(pcm_out, mulaw_decode(codes_out.tobytes()))


def test_shapes_strides_and_byte_order() -> None:
    pcm = ALL_PCM[::7]
    expected = mulaw_encode(np.ascontiguousarray(pcm))
    np.testing.assert_array_equal(mulaw_encode(pcm), expected)  # non-contiguous view
    np.testing.assert_array_equal(mulaw_encode(pcm.astype(">i2")), expected)
    assert mulaw_encode(ALL_PCM.reshape(256, 256)).shape == (256, 256)
    assert mulaw_encode(np.empty(0, dtype=np.int16)).size == 0
    assert mulaw_decode(b"").size == 0


def test_rejects_wrong_dtypes() -> None:
    with pytest.raises(TypeError, match="int16"):
        mulaw_encode(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="uint8"):
        mulaw_decode(np.zeros(4, dtype=np.int16))
