"""Errors raised while reading Plivo's messages.

Every error names the offending field path (``media.payload``) and says what was expected and what
came, so one log line is enough to see what Plivo, a proxy or a test client sent. ``reason`` is a
short slug for metrics and close codes.
"""

from __future__ import annotations

import reprlib

_MAX_GOT = 40

_repr = reprlib.Repr()
_repr.maxstring = _MAX_GOT
_repr.maxother = _MAX_GOT
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 4
_repr.maxlevel = 2


def short_repr(value: object) -> str:
    """A repr of at most ~40 characters: bad payloads can be megabytes long."""
    if isinstance(value, str | bytes | bytearray) and len(value) > _MAX_GOT:
        text = repr(value[:_MAX_GOT])
        return f"{text}... ({len(value)} long)"
    text = _repr.repr(value)
    return text if len(text) <= _MAX_GOT + 3 else text[:_MAX_GOT] + "..."


class ProtocolError(ValueError):
    """A message that breaks Plivo's audio stream protocol."""

    reason: str = "protocol_error"
    field: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)


class MalformedMessage(ProtocolError):
    """Not a JSON object in a text frame: nothing in it can be trusted."""

    reason = "malformed_message"


class MissingField(ProtocolError):
    """A field the event cannot do without is absent (or null)."""

    reason = "missing_field"

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: required field is missing")
        self.field = field

    def __reduce__(self) -> tuple[type[MissingField], tuple[str]]:
        return (type(self), (self.field or "",))


class InvalidField(ProtocolError):
    """A field is present but of the wrong type or shape."""

    reason = "invalid_field"

    def __init__(self, field: str, expected: str, got: object) -> None:
        super().__init__(f"{field}: expected {expected}, got {short_repr(got)}")
        self.field = field
        self.expected = expected
        self.got = got

    def __reduce__(self) -> tuple[type[InvalidField], tuple[str, str, object]]:
        return (type(self), (self.field or "", self.expected, self.got))


class UnsupportedFormat(ProtocolError):
    """An audio format Plivo cannot stream; the message lists the ones it can."""

    reason = "unsupported_format"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {detail}" if field else detail)
        self.detail = detail
        self.field = field

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_unsupported, (type(self), self.detail, self.field))


def _rebuild_unsupported(
    cls: type[UnsupportedFormat], detail: str, field: str | None
) -> UnsupportedFormat:
    return cls(detail, field=field)
