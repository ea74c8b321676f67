"""Wire codecs behind one small protocol, chosen from the stream's declared encoding."""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

from ._pcm import PCM
from .l16 import l16_decode, l16_encode
from .mulaw import mulaw_decode, mulaw_encode_bytes


@runtime_checkable
class Codec(Protocol):
    """Converts between a media payload and int16 PCM at the stream's own rate."""

    @property
    def name(self) -> str:
        """Canonical MIME-style name, e.g. ``audio/x-mulaw``."""
        ...

    @property
    def bytes_per_sample(self) -> int:
        """Payload bytes per sample, for turning byte counts into durations."""
        ...

    def decode(self, payload: bytes) -> PCM:
        """Payload bytes -> int16 samples."""
        ...

    def encode(self, pcm: PCM) -> bytes:
        """int16 samples -> payload bytes."""
        ...


class MulawCodec:
    """G.711 μ-law: one byte per sample; every byte is a valid code."""

    name: Final = "audio/x-mulaw"
    bytes_per_sample: Final = 1

    def decode(self, payload: bytes) -> PCM:
        return mulaw_decode(payload)

    def encode(self, pcm: PCM) -> bytes:
        return mulaw_encode_bytes(pcm)

    def __repr__(self) -> str:
        return "MulawCodec()"


class L16Codec:
    """Signed 16-bit little-endian PCM: two bytes per sample."""

    name: Final = "audio/x-l16"
    bytes_per_sample: Final = 2

    def decode(self, payload: bytes) -> PCM:
        return l16_decode(payload)

    def encode(self, pcm: PCM) -> bytes:
        return l16_encode(pcm)

    def __repr__(self) -> str:
        return "L16Codec()"


_MULAW: Final = MulawCodec()
_L16: Final = L16Codec()

_BY_NAME: Final[dict[str, Codec]] = {
    "audio/x-mulaw": _MULAW,
    "mulaw": _MULAW,
    "ulaw": _MULAW,
    "pcmu": _MULAW,
    "audio/x-l16": _L16,
    "l16": _L16,
}


def codec_for(encoding: str) -> Codec:
    """Return the (stateless, shared) codec for an encoding name.

    Matching ignores case, surrounding blanks and MIME parameters, so a Plivo content type such
    as ``audio/x-mulaw;rate=8000`` works as-is.
    """
    key = encoding.split(";", 1)[0].strip().lower()
    codec = _BY_NAME.get(key)
    if codec is None:
        supported = ", ".join(repr(name) for name in _BY_NAME)
        raise ValueError(f"unsupported audio encoding {encoding!r}; supported: {supported}")
    return codec
