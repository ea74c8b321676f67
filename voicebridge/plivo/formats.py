"""The three audio formats a Plivo stream can carry, both ways.

A stream has one format for its whole life (Plivo degrades audio if ``playAudio`` switches), so
the format is a small immutable value that every component shares.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnsupportedFormat, short_repr

MULAW = "audio/x-mulaw"
L16 = "audio/x-l16"

_PAIRS: tuple[tuple[str, int], ...] = ((MULAW, 8000), (L16, 8000), (L16, 16000))
_SUPPORTED_TEXT = ", ".join(f"{enc};rate={rate}" for enc, rate in _PAIRS)

# Tolerated spellings -> canonical MIME type.
_MIME_ALIASES = {
    MULAW: MULAW,
    "audio/mulaw": MULAW,
    "audio/x-ulaw": MULAW,
    "audio/pcmu": MULAW,
    L16: L16,
    "audio/l16": L16,
}
_SHORT_ALIASES = {
    "mulaw": MULAW,
    "ulaw": MULAW,
    "pcmu": MULAW,
    "mu-law": MULAW,
    "l16": L16,
    "pcm": L16,
    "linear16": L16,
    **_MIME_ALIASES,
}


def _unsupported(got: str, field: str | None = None) -> UnsupportedFormat:
    return UnsupportedFormat(
        f"unsupported audio format {got}; supported: {_SUPPORTED_TEXT}", field=field
    )


@dataclass(frozen=True, slots=True)
class StreamFormat:
    """Codec and sample rate of a stream; construction rejects what Plivo cannot carry."""

    encoding: str
    sample_rate: int

    def __post_init__(self) -> None:
        rate = self.sample_rate
        if (
            not isinstance(self.encoding, str)
            or not isinstance(rate, int)
            or isinstance(rate, bool)
            or (self.encoding, rate) not in _PAIRS
        ):
            raise _unsupported(f"{short_repr(self.encoding)} at {short_repr(rate)} Hz")

    @property
    def content_type(self) -> str:
        """The ``<Stream contentType>`` spelling, e.g. ``audio/x-l16;rate=16000``."""
        return f"{self.encoding};rate={self.sample_rate}"

    @property
    def codec(self) -> str:
        return "mulaw" if self.encoding == MULAW else "l16"

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.encoding == MULAW else 2

    @property
    def bytes_per_ms(self) -> int:
        return self.sample_rate // 1000 * self.bytes_per_sample

    def bytes_for_ms(self, ms: int) -> int:
        """Payload size of ``ms`` milliseconds of audio (20 ms -> 160/320/640 bytes)."""
        return ms * self.bytes_per_ms

    @classmethod
    def from_content_type(cls, value: str, *, field: str | None = None) -> StreamFormat:
        """Parse ``audio/x-l16;rate=16000`` leniently (case, spaces, ``rate = 8000``).

        μ-law without a rate means 8000 (its only rate); L16 without a rate is ambiguous and
        rejected rather than guessed, since a wrong guess plays audio at the wrong speed.
        """
        if not isinstance(value, str):
            raise _unsupported(short_repr(value), field)
        mime, *params = (part.strip() for part in value.lower().split(";"))
        encoding = _MIME_ALIASES.get(mime)
        if encoding is None:
            raise _unsupported(short_repr(value), field)
        rate_text: str | None = None
        for param in params:
            key, sep, val = param.partition("=")
            if sep and key.strip() == "rate":
                rate_text = val.strip()
        if rate_text is None:
            if encoding != MULAW:
                raise _unsupported(f"{short_repr(value)} (no rate)", field)
            rate_text = "8000"
        if not (rate_text.isascii() and rate_text.isdigit()):
            raise _unsupported(short_repr(value), field)
        try:
            return cls(encoding, int(rate_text))
        except UnsupportedFormat:
            raise _unsupported(short_repr(value), field) from None

    @classmethod
    def from_short(cls, codec: str, rate: int) -> StreamFormat:
        """Build from config spellings such as ``("mulaw", 8000)`` or ``("l16", 16000)``."""
        encoding = _SHORT_ALIASES.get(codec.strip().lower()) if isinstance(codec, str) else None
        if encoding is None:
            raise _unsupported(f"codec {short_repr(codec)} at {short_repr(rate)} Hz")
        return cls(encoding, rate)


MULAW_8K = StreamFormat(MULAW, 8000)
L16_8K = StreamFormat(L16, 8000)
L16_16K = StreamFormat(L16, 16000)

SUPPORTED_FORMATS: tuple[StreamFormat, ...] = (MULAW_8K, L16_8K, L16_16K)
