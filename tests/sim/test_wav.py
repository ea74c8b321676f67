"""WAV writing/reading for the simulator: channel order, padding, formats, resampling."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from voicebridge.sim.wav import read_wav_mono, write_stereo_wav


def _write_raw_wav(
    path: Path, body: bytes, *, channels: int, rate: int, bits: int, tag: int = 1
) -> None:
    """A minimal RIFF/WAVE with an arbitrary format tag (``wave`` can only write PCM)."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)


def test_stereo_round_trip_keeps_channels_apart(tmp_path: Path) -> None:
    left = np.arange(-500, 500, dtype=np.int16)
    right = (np.arange(1000, dtype=np.int16) * 7) - 3000
    path = tmp_path / "call.wav"
    write_stereo_wav(path, left, right, 8000)
    with wave.open(str(path), "rb") as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").reshape(-1, 2)
    np.testing.assert_array_equal(frames[:, 0], left)
    np.testing.assert_array_equal(frames[:, 1], right)


def test_shorter_channel_is_padded_with_silence(tmp_path: Path) -> None:
    left = np.full(300, 1234, np.int16)
    right = np.full(100, -42, np.int16)
    path = tmp_path / "call.wav"
    write_stereo_wav(path, left, right, 16000)
    with wave.open(str(path), "rb") as f:
        frames = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").reshape(-1, 2)
    assert frames.shape == (300, 2)
    assert (frames[:, 0] == 1234).all()
    assert (frames[:100, 1] == -42).all()
    assert (frames[100:, 1] == 0).all()
    write_stereo_wav(path, right, left, 16000)  # and the other way round
    with wave.open(str(path), "rb") as f:
        frames = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").reshape(-1, 2)
    assert (frames[100:, 0] == 0).all() and (frames[:, 1] == 1234).all()


def test_write_refuses_non_int16(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_stereo_wav(tmp_path / "x.wav", np.zeros(4), np.zeros(4, np.int16), 8000)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        write_stereo_wav(tmp_path / "x.wav", np.zeros(4, np.int16), np.zeros(4, np.int16), 0)


def test_read_mono_16bit_exact(tmp_path: Path) -> None:
    pcm = (np.sin(np.arange(800) / 5) * 20000).astype(np.int16)
    path = tmp_path / "m.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(8000)
        f.writeframes(pcm.astype("<i2").tobytes())
    out = read_wav_mono(path, 8000)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, pcm)


def test_read_stereo_averages_channels(tmp_path: Path) -> None:
    left = np.array([100, -200, 3000, 32767], np.int16)
    right = np.array([300, -200, -3000, 32767], np.int16)
    path = tmp_path / "s.wav"
    write_stereo_wav(path, left, right, 8000)
    np.testing.assert_array_equal(read_wav_mono(path, 8000), [200, -200, 0, 32767])


def test_read_stereo_written_by_us_round_trips_rate(tmp_path: Path) -> None:
    tone = (np.sin(2 * np.pi * 440 * np.arange(16000) / 16000) * 10000).astype(np.int16)
    path = tmp_path / "s.wav"
    write_stereo_wav(path, tone, tone, 16000)
    np.testing.assert_array_equal(read_wav_mono(path, 16000), tone)


def test_read_8bit_unsigned(tmp_path: Path) -> None:
    raw = np.array([128, 255, 0, 192, 64], np.uint8)
    path = tmp_path / "u8.wav"
    _write_raw_wav(path, raw.tobytes(), channels=1, rate=8000, bits=8)
    np.testing.assert_array_equal(
        read_wav_mono(path, 8000), [0, 127 << 8, -32768, 64 << 8, -64 << 8]
    )


def test_read_resamples_other_rates(tmp_path: Path) -> None:
    rate_in = 44100
    t = np.arange(rate_in) / rate_in
    tone = (np.sin(2 * np.pi * 300 * t) * 12000).astype(np.int16)
    path = tmp_path / "cd.wav"
    write_stereo_wav(path, tone, tone, rate_in)
    out = read_wav_mono(path, 8000)
    assert out.dtype == np.int16
    assert out.size == 8000
    expected = np.sin(2 * np.pi * 300 * np.arange(8000) / 8000) * 12000
    # Away from the edges the 300 Hz tone survives resampling nearly unchanged.
    assert np.max(np.abs(out[200:-200] - expected[200:-200])) < 300


def test_read_extensible_pcm(tmp_path: Path) -> None:
    pcm = np.array([1, -2, 3, -4], np.int16)
    fmt = struct.pack("<HHIIHH", 0xFFFE, 1, 8000, 16000, 2, 16)
    fmt += struct.pack("<HHI", 22, 16, 4) + struct.pack("<H", 1) + bytes(14)
    body = pcm.astype("<i2").tobytes()
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 3) + b"abc\0"
    chunks += b"data" + struct.pack("<I", len(body)) + body
    path = tmp_path / "ext.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    np.testing.assert_array_equal(read_wav_mono(path, 8000), pcm)


@pytest.mark.parametrize(
    ("tag", "bits", "words"),
    [
        (1, 24, "24-bit PCM"),
        (1, 32, "32-bit PCM"),
        (3, 32, "float"),
        (7, 8, "mu-law"),
        (0x11, 4, "ADPCM"),
    ],
)
def test_unsupported_formats_are_named(tmp_path: Path, tag: int, bits: int, words: str) -> None:
    path = tmp_path / "bad.wav"
    _write_raw_wav(path, bytes(48), channels=1, rate=8000, bits=bits, tag=tag)
    with pytest.raises(ValueError, match=words):
        read_wav_mono(path, 8000)


def test_not_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"ID3\x03" + bytes(100))
    with pytest.raises(ValueError, match="not a WAV"):
        read_wav_mono(path, 8000)
