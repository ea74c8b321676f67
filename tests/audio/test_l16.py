from __future__ import annotations

import numpy as np
import pytest

from voicebridge.audio import l16_decode, l16_encode


def test_decode_is_little_endian_and_zero_copy() -> None:
    payload = b"\x01\x00\xff\xff\x00\x80\xff\x7f"
    pcm = l16_decode(payload)
    np.testing.assert_array_equal(pcm, [1, -1, -32768, 32767])
    assert pcm.dtype.kind == "i" and pcm.dtype.itemsize == 2
    assert np.shares_memory(pcm, np.frombuffer(payload, dtype=np.uint8))


def test_decode_bytearray_and_memoryview() -> None:
    buf = bytearray(b"\x02\x00\x03\x00")
    np.testing.assert_array_equal(l16_decode(buf), [2, 3])
    np.testing.assert_array_equal(l16_decode(memoryview(buf)), [2, 3])
    assert l16_decode(b"").size == 0


@pytest.mark.parametrize("size", [1, 3, 321])
def test_decode_odd_length_raises(size: int) -> None:
    message = f"L16 payload has odd length {size}: expected whole 16-bit samples"
    with pytest.raises(ValueError) as info:
        l16_decode(b"\x00" * size)
    assert str(info.value) == message


def test_encode_round_trip_and_byte_order() -> None:
    pcm = np.arange(-32768, 32768, 97, dtype=np.int16)
    payload = l16_encode(pcm)
    assert payload == pcm.astype("<i2").tobytes()
    np.testing.assert_array_equal(l16_decode(payload), pcm)
    assert l16_encode(pcm.astype(">i2")) == payload
    assert l16_encode(pcm[::2]) == pcm[::2].astype("<i2").tobytes()
    assert l16_encode(np.array([1, -2], dtype=np.int16)) == b"\x01\x00\xfe\xff"


def test_encode_rejects_non_int16() -> None:
    with pytest.raises(TypeError):
        l16_encode(np.zeros(3, dtype=np.int32))
