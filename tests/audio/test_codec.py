from __future__ import annotations

import numpy as np
import pytest

from voicebridge.audio import Codec, L16Codec, MulawCodec, codec_for, mulaw_decode


@pytest.mark.parametrize(
    ("encoding", "cls"),
    [
        ("audio/x-mulaw", MulawCodec),
        ("mulaw", MulawCodec),
        ("ulaw", MulawCodec),
        ("pcmu", MulawCodec),
        ("PCMU", MulawCodec),
        ("audio/x-mulaw;rate=8000", MulawCodec),
        ("audio/x-l16", L16Codec),
        ("l16", L16Codec),
        (" audio/x-L16; rate=16000", L16Codec),
    ],
)
def test_codec_for(encoding: str, cls: type) -> None:
    codec = codec_for(encoding)
    assert isinstance(codec, cls)
    assert isinstance(codec, Codec)


def test_unknown_encoding_lists_supported() -> None:
    with pytest.raises(ValueError) as info:
        codec_for("audio/opus")
    message = str(info.value)
    assert "audio/opus" in message
    for name in ("audio/x-mulaw", "audio/x-l16", "mulaw", "ulaw", "pcmu", "l16"):
        assert repr(name) in message


def test_attributes() -> None:
    mulaw, l16 = codec_for("mulaw"), codec_for("l16")
    assert (mulaw.name, mulaw.bytes_per_sample) == ("audio/x-mulaw", 1)
    assert (l16.name, l16.bytes_per_sample) == ("audio/x-l16", 2)


def test_mulaw_accepts_every_byte_and_round_trips() -> None:
    codec = codec_for("audio/x-mulaw")
    payload = bytes(range(256)) * 2 + b"\x00"  # odd lengths are fine for one byte per sample
    pcm = codec.decode(payload)
    assert pcm.dtype == np.int16 and pcm.size == len(payload)
    np.testing.assert_array_equal(pcm[:256], mulaw_decode(bytes(range(256))))
    # 0x7F is "negative zero": it decodes to 0, which encodes as 0xFF; all else round-trips.
    assert codec.encode(pcm) == payload.replace(b"\x7f", b"\xff")
    assert codec.encode(codec.decode(codec.encode(pcm))) == codec.encode(pcm)


def test_l16_round_trip_and_odd_length() -> None:
    codec = codec_for("audio/x-l16")
    pcm = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    payload = codec.encode(pcm)
    assert len(payload) == 2 * pcm.size
    np.testing.assert_array_equal(codec.decode(payload), pcm)
    with pytest.raises(ValueError, match="odd length 3"):
        codec.decode(b"\x00\x01\x02")
