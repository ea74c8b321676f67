"""WAV files for the simulator: the stereo call recording it writes and the caller audio it reads.

Writing uses the stdlib :mod:`wave` module. Reading parses the RIFF chunks itself, because
:mod:`wave` in Python 3.11 refuses ``WAVE_FORMAT_EXTENSIBLE`` headers even when they hold plain
PCM (many editors write those), and its errors for float or compressed files are cryptic.
"""

from __future__ import annotations

import os
import struct
import wave
from typing import Any, Final

import numpy as np

from voicebridge.audio.resample import resample
from voicebridge.frames import PCM

_PCM_TAG: Final = 0x0001
_EXTENSIBLE_TAG: Final = 0xFFFE
_TAG_NAMES: Final = {
    0x0002: "MS ADPCM",
    0x0003: "IEEE float",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MP3",
}


def _as_int16(pcm: Any, what: str) -> PCM:
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of samples, got shape {arr.shape}")
    if arr.dtype.kind != "i" or arr.dtype.itemsize != 2:
        raise TypeError(f"{what} must be int16 samples, got dtype {arr.dtype}")
    return arr.astype(np.int16, copy=False)


def write_stereo_wav(path: str | os.PathLike[str], left: PCM, right: PCM, rate: int) -> None:
    """Write a 16-bit stereo WAV; the shorter channel is padded with silence.

    The simulator puts the caller on the left and the agent as heard on the right, so one file
    plays the whole call and a waveform editor shows who talked over whom.
    """
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    lhs = _as_int16(left, "left")
    rhs = _as_int16(right, "right")
    n = max(lhs.size, rhs.size)
    frames = np.zeros((n, 2), dtype="<i2")
    frames[: lhs.size, 0] = lhs
    frames[: rhs.size, 1] = rhs
    with wave.open(os.fspath(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames.tobytes())


def _format_name(tag: int, bits: int) -> str:
    if tag == _PCM_TAG:
        return f"{bits}-bit PCM"
    return _TAG_NAMES.get(tag, f"format tag 0x{tag:04x}")


def _parse(data: bytes, where: str) -> tuple[int, int, int, int, bytes]:
    """Return (format tag, channels, rate, bits, sample bytes) of a little-endian RIFF/WAVE."""
    if len(data) < 12 or data[8:12] != b"WAVE" or data[:4] not in (b"RIFF", b"RIFX", b"RF64"):
        raise ValueError(f"{where}: not a WAV file (no RIFF/WAVE header)")
    if data[:4] != b"RIFF":
        raise ValueError(f"{where}: {data[:4].decode()} WAV files are not supported")
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise ValueError(f"{where}: truncated fmt chunk")
            tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE_TAG and len(body) >= 26:
                (tag,) = struct.unpack_from("<H", body, 24)  # first field of the SubFormat GUID
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise ValueError(f"{where}: data chunk before fmt chunk")
            # Streaming writers leave the size at 0 or 0xFFFFFFFF: take what the file holds.
            if size in (0, 0xFFFFFFFF):
                body = data[pos + 8 :]
            return (*fmt, body)
        pos += 8 + size + (size & 1)
    raise ValueError(f"{where}: no {'data' if fmt else 'fmt'} chunk")


def read_wav_mono(path: str | os.PathLike[str], rate: int) -> PCM:
    """Read a PCM WAV as mono int16 at ``rate``: channels are averaged, other rates resampled.

    Accepts 8-bit (unsigned) and 16-bit PCM, any channel count and sample rate; anything else
    (24/32-bit, float, A-law, ADPCM, ...) raises :class:`ValueError` naming the format, so a user
    knows what to convert instead of hearing noise.
    """
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    where = os.fspath(path)
    with open(where, "rb") as f:
        data = f.read()
    tag, channels, in_rate, bits, body = _parse(data, where)
    if tag != _PCM_TAG or bits not in (8, 16):
        raise ValueError(
            f"{where}: unsupported WAV format {_format_name(tag, bits)}; "
            "convert it to 8- or 16-bit PCM (e.g. sox in.wav -b 16 -e signed out.wav)"
        )
    if channels < 1 or in_rate < 1:
        raise ValueError(f"{where}: invalid WAV header ({channels} channels, {in_rate} Hz)")
    width = bits // 8
    usable = len(body) - len(body) % (width * channels)
    if bits == 8:
        raw = np.frombuffer(body[:usable], dtype=np.uint8).astype(np.int32)
        samples = (raw - 128) << 8
    else:
        samples = np.frombuffer(body[:usable], dtype="<i2").astype(np.int32)
    frames = samples.reshape(-1, channels)
    if channels == 1:
        mono = frames[:, 0].astype(np.int16)
    else:
        mono = np.rint(frames.mean(axis=1)).astype(np.int16)
    if in_rate == rate:
        return mono
    return resample(mono, in_rate, rate)
