"""AWS event-stream messages (``application/vnd.amazon.eventstream``), from the public spec.

Amazon Transcribe's WebSocket API carries every audio chunk, result and error as one such message:

    prelude:  total length (uint32 BE) | headers length (uint32 BE) | CRC32 of those 8 bytes
    headers:  name length (uint8) | name (UTF-8) | value type (uint8) | value
    payload:  raw bytes
    trailer:  CRC32 of everything before it

Header value types: 0 true, 1 false, 2 int8, 3 int16, 4 int32, 5 int64, 6 bytes (uint16
length), 7 string (uint16 length, UTF-8), 8 timestamp (int64 milliseconds since the epoch),
9 UUID (16 bytes). All integers are big-endian and signed.

Sans-I/O on purpose: the Transcribe stage and the test fake share this codec, and it is tested
against the spec's published vectors, so neither side merely agrees with itself.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = [
    "MAX_HEADERS_BYTES",
    "MAX_MESSAGE_BYTES",
    "EventStreamDecoder",
    "EventStreamError",
    "HeaderValue",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "Message",
    "decode_message",
    "encode_message",
]

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the spec's limit on a whole message
MAX_HEADERS_BYTES = 128 * 1024  # ... and on its headers section
_PRELUDE = struct.Struct(">III")  # total length, headers length, prelude CRC
_PRELUDE_BYTES = _PRELUDE.size
_OVERHEAD = _PRELUDE_BYTES + 4  # prelude + message CRC


class EventStreamError(ValueError):
    """Bytes that are not a valid event-stream message (bad length, checksum or header)."""


# Integer header values keep their wire width through a round trip; a plain ``int`` is sent as
# int32 when it fits, else int64.
class Int8(int):
    """An int8 (``byte``) header value."""


class Int16(int):
    """An int16 (``short``) header value."""


class Int32(int):
    """An int32 (``integer``) header value."""


class Int64(int):
    """An int64 (``long``) header value."""


HeaderValue = bool | int | str | bytes | datetime | uuid.UUID

_INT_TYPES: tuple[tuple[type[int], int, str, int], ...] = (
    (Int8, 2, ">b", 8),
    (Int16, 3, ">h", 16),
    (Int32, 4, ">i", 32),
    (Int64, 5, ">q", 64),
)


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message: headers in wire order (names are unique) and the payload."""

    headers: dict[str, HeaderValue] = field(default_factory=dict)
    payload: bytes = b""

    def header_str(self, name: str) -> str | None:
        """A string header's value, or None when absent or of another type."""
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


# --- encoding ------------------------------------------------------------------------------------


def _encode_header(name: str, value: HeaderValue) -> bytes:
    raw_name = name.encode("utf-8")
    if not 1 <= len(raw_name) <= 255:
        raise EventStreamError(f"header name {name!r} must be 1-255 bytes of UTF-8")
    head = bytes((len(raw_name),)) + raw_name
    if isinstance(value, bool):  # before int: bool is an int subclass
        return head + (b"\x00" if value else b"\x01")
    if isinstance(value, int):
        for cls, code, fmt, bits in _INT_TYPES:
            if isinstance(value, cls):
                return head + bytes((code,)) + _pack_int(fmt, bits, value, name)
        if -(2**31) <= value < 2**31:
            return head + b"\x04" + struct.pack(">i", value)
        return head + b"\x05" + _pack_int(">q", 64, value, name)
    if isinstance(value, str):
        return head + b"\x07" + _with_length(value.encode("utf-8"), name)
    if isinstance(value, bytes | bytearray | memoryview):
        return head + b"\x06" + _with_length(bytes(value), name)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise EventStreamError(f"header {name!r}: timestamps must be timezone-aware")
        millis = round(value.timestamp() * 1000)
        return head + b"\x08" + _pack_int(">q", 64, millis, name)
    if isinstance(value, uuid.UUID):
        return head + b"\x09" + value.bytes
    raise EventStreamError(f"header {name!r}: unsupported value type {type(value).__name__}")


def _pack_int(fmt: str, bits: int, value: int, name: str) -> bytes:
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise EventStreamError(f"header {name!r}: {value} does not fit in int{bits}")
    return struct.pack(fmt, value)


def _with_length(raw: bytes, name: str) -> bytes:
    if len(raw) > 0xFFFF:
        raise EventStreamError(f"header {name!r}: value longer than 65535 bytes")
    return struct.pack(">H", len(raw)) + raw


def encode_message(headers: Mapping[str, HeaderValue] | None = None, payload: bytes = b"") -> bytes:
    """One message: prelude, headers (in the mapping's order), payload and both checksums."""
    raw_headers = b"".join(_encode_header(k, v) for k, v in (headers or {}).items())
    if len(raw_headers) > MAX_HEADERS_BYTES:
        raise EventStreamError(f"headers are {len(raw_headers)} bytes; at most {MAX_HEADERS_BYTES}")
    total = _OVERHEAD + len(raw_headers) + len(payload)
    if total > MAX_MESSAGE_BYTES:
        raise EventStreamError(f"message is {total} bytes; at most {MAX_MESSAGE_BYTES}")
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers + bytes(payload)
    return body + struct.pack(">I", zlib.crc32(body))


# --- decoding ------------------------------------------------------------------------------------


def _decode_headers(raw: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    pos, end = 0, len(raw)

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > end:
            raise EventStreamError("a header runs past the end of the headers section")
        chunk = raw[pos : pos + n]
        pos += n
        return chunk

    while pos < end:
        name_len = take(1)[0]
        if name_len == 0:
            raise EventStreamError("a header has an empty name")
        try:
            name = take(name_len).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EventStreamError("a header name is not UTF-8") from exc
        kind = take(1)[0]
        value: HeaderValue
        if kind == 0:
            value = True
        elif kind == 1:
            value = False
        elif 2 <= kind <= 5:
            cls, _, fmt, bits = _INT_TYPES[kind - 2]
            value = cls(struct.unpack(fmt, take(bits // 8))[0])
        elif kind in (6, 7):
            (length,) = struct.unpack(">H", take(2))
            data = take(length)
            if kind == 6:
                value = data
            else:
                try:
                    value = data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise EventStreamError(f"header {name!r}: string is not UTF-8") from exc
        elif kind == 8:
            (millis,) = struct.unpack(">q", take(8))
            try:
                value = datetime.fromtimestamp(millis / 1000, UTC)
            except (OverflowError, OSError, ValueError) as exc:
                raise EventStreamError(f"header {name!r}: timestamp out of range") from exc
        elif kind == 9:
            value = uuid.UUID(bytes=take(16))
        else:
            raise EventStreamError(f"header {name!r}: unknown value type {kind}")
        if name in headers:
            raise EventStreamError(f"header {name!r} appears twice")
        headers[name] = value
    return headers


def _check_prelude(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    total, headers_len, crc = _PRELUDE.unpack_from(data, 0)
    if zlib.crc32(bytes(data[:8])) != crc:
        raise EventStreamError("prelude checksum mismatch")
    if total < _OVERHEAD or total > MAX_MESSAGE_BYTES:
        raise EventStreamError(f"message length {total} is out of range")
    if headers_len > MAX_HEADERS_BYTES or headers_len > total - _OVERHEAD:
        raise EventStreamError(f"headers length {headers_len} is out of range")
    return total, headers_len


def _decode_checked(data: bytes, total: int, headers_len: int) -> Message:
    (crc,) = struct.unpack_from(">I", data, total - 4)
    if zlib.crc32(data[: total - 4]) != crc:
        raise EventStreamError("message checksum mismatch")
    start = _PRELUDE_BYTES
    headers = _decode_headers(data[start : start + headers_len])
    return Message(headers, data[start + headers_len : total - 4])


def decode_message(data: bytes) -> Message:
    """Exactly one whole message (as one WebSocket binary frame carries)."""
    if len(data) < _OVERHEAD:
        raise EventStreamError(f"{len(data)} bytes are too few for a message")
    total, headers_len = _check_prelude(data)
    if total != len(data):
        raise EventStreamError(f"the prelude says {total} bytes, got {len(data)}")
    return _decode_checked(bytes(data), total, headers_len)


class EventStreamDecoder:
    """Incremental decoder: feed bytes as they arrive, get whole messages out.

    After an error the decoder stays broken (a byte stream cannot be resynchronised).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._error: EventStreamError | None = None

    def feed(self, data: bytes) -> list[Message]:
        if self._error is not None:
            raise self._error
        self._buffer += data
        out: list[Message] = []
        try:
            while len(self._buffer) >= _PRELUDE_BYTES:
                # The prelude is checked before waiting for the rest, so a corrupt length never
                # makes the decoder wait for bytes that will not come.
                total, headers_len = _check_prelude(self._buffer)
                if len(self._buffer) < total:
                    break
                chunk = bytes(self._buffer[:total])
                del self._buffer[:total]
                out.append(_decode_checked(chunk, total, headers_len))
        except EventStreamError as exc:
            self._error = exc
            raise
        return out

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole message."""
        return len(self._buffer)
