"""Events Plivo sends over the stream's WebSocket, parsed into typed values.

Parsing is lenient where Plivo's own material disagrees (``played`` vs ``playedStream``, numbers
sent as strings, three ``extra_headers`` forms, absent ``streamId``) and strict where a wrong guess
would corrupt audio (payload base64, media format). Unknown events and fields are tolerated.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import InvalidField, MalformedMessage, MissingField, short_repr
from .formats import StreamFormat

_fast_loads: Callable[[str], Any] | None
try:
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency; json alone still works
    _fast_loads = None


def _json_loads(text: str) -> Any:
    """orjson is 2-3x faster than json on a media event (50 a second per call), but it reads
    integers past 64 bits as floats and refuses NaN. So its result is kept only for a media
    event whose numbers came out as json would read them; json has the last word on anything
    else: the same results and errors as json alone, at orjson's speed on the hot path."""
    if _fast_loads is not None:
        try:
            data = _fast_loads(text)
        except ValueError:
            data = None
        if type(data) is dict and data.get("event") == "media":
            media = data.get("media")
            exact = type(data.get("sequenceNumber")) is not float and not (
                type(media) is dict
                and (type(media.get("chunk")) is float or type(media.get("timestamp")) is float)
            )
            if exact:
                return data
    return json.loads(text)


_DIGITS = re.compile(r"[0-9]+")
DTMF_DIGITS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True)
class StartEvent:
    """The stream is up: identifies the call and fixes the audio format for both directions."""

    kind: ClassVar[str] = "start"
    sequence_number: int | None
    call_id: str
    stream_id: str
    account_id: str
    tracks: tuple[str, ...]
    format: StreamFormat
    extra_headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class MediaEvent:
    """One chunk of caller (or outbound) audio, already base64-decoded."""

    kind: ClassVar[str] = "media"
    sequence_number: int | None
    stream_id: str | None
    track: str
    timestamp_ms: int | None
    chunk: int | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    kind: ClassVar[str] = "dtmf"
    sequence_number: int | None
    stream_id: str | None
    digit: str


@dataclass(frozen=True, slots=True)
class PlayedStreamEvent:
    """Ack of our ``checkpoint``: all audio sent before it has been played."""

    kind: ClassVar[str] = "playedStream"
    sequence_number: int | None
    stream_id: str | None
    name: str


@dataclass(frozen=True, slots=True)
class ClearedAudioEvent:
    """Ack of our ``clearAudio``: Plivo's buffer is empty."""

    kind: ClassVar[str] = "clearedAudio"
    sequence_number: int | None
    stream_id: str | None


@dataclass(frozen=True, slots=True)
class StopEvent:
    """Undocumented but sent by some setups; the socket close remains the real end."""

    kind: ClassVar[str] = "stop"
    sequence_number: int | None
    stream_id: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class PlayFailedEvent:
    kind: ClassVar[str] = "playFailed"
    sequence_number: int | None
    stream_id: str | None
    name: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    kind: ClassVar[str] = "error"
    sequence_number: int | None
    stream_id: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event this code does not know: kept raw so the caller can log it and move on."""

    kind: ClassVar[str] = "unknown"
    event: str
    raw: dict[str, Any]


InboundEvent = (
    StartEvent
    | MediaEvent
    | DtmfEvent
    | PlayedStreamEvent
    | ClearedAudioEvent
    | StopEvent
    | PlayFailedEvent
    | ErrorEvent
    | UnknownEvent
)


# --- field helpers ---------------------------------------------------------------------------


def _obj(data: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        raise MissingField(path)
    if not isinstance(value, dict):
        raise InvalidField(path, "object", value)
    return value


def _req_str(data: dict[str, Any], key: str, path: str) -> str:
    value = data.get(key)
    if value is None:
        raise MissingField(path)
    if not isinstance(value, str):
        raise InvalidField(path, "string", value)
    return value


def _opt_str(data: dict[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidField(path, "string", value)


def _as_int(value: object, path: str) -> int:
    """Integers, integral floats and digit strings: Plivo sends numbers both ways."""
    # Fast paths first: three of these per media event, 50 events a second per call.
    if type(value) is int and value >= 0:
        return value
    if type(value) is str and value.isascii() and value.isdigit() and len(value) < 4000:
        return int(value)
    if isinstance(value, bool):
        raise InvalidField(path, "non-negative integer or numeric string", value)
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        try:
            result = int(value.strip())
        except ValueError:  # beyond Python's int-from-str digit limit
            raise InvalidField(path, "non-negative integer or numeric string", value) from None
    else:
        raise InvalidField(path, "non-negative integer or numeric string", value)
    if result < 0:
        raise InvalidField(path, "non-negative integer or numeric string", value)
    return result


def _opt_int(data: dict[str, Any], key: str, path: str) -> int | None:
    value = data.get(key)
    return None if value is None else _as_int(value, path)


def _loose_text(value: object) -> str | None:
    """Free-text diagnostics (``reason``) are for logs: never fail an event over their type."""
    if value is None or isinstance(value, str):
        return value
    return _compact_json(value)


def _compact_json(value: object) -> str:
    """JSON text of a parsed value, for logs. ``json.loads`` accepts nesting a little deeper
    than ``json.dumps`` can write from further down the stack: fall back to a short repr."""
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (RecursionError, ValueError):
        return short_repr(value)


# --- extra headers ---------------------------------------------------------------------------


def _header_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _compact_json(value)


def parse_extra_headers(value: object) -> dict[str, str]:
    """Read ``extra_headers`` in any form Plivo's material shows: JSON object, ``k=v;k=v`` or
    ``k=v,k=v``. Never raises on a string, since a stray header must not end a call.

    Raises InvalidField only for a value that is neither text, an object nor null.
    """
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k).strip(): _header_value(v) for k, v in value.items() if str(k).strip()}
    if not isinstance(value, str):
        raise InvalidField("extra_headers", "string or object", value)
    text = value.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            return parse_extra_headers(parsed)
        text = text.strip("{}")
    headers: dict[str, str] = {}
    for part in re.split(r"[;,]", text):
        key, sep, val = part.partition("=")
        key = key.strip()
        if sep and key:
            headers[key] = val.strip()
    return headers


# --- per-event parsers -----------------------------------------------------------------------


def _start(data: dict[str, Any], seq: int | None) -> StartEvent:
    start = _obj(data, "start", "start")
    media_format = _obj(start, "mediaFormat", "start.mediaFormat")
    encoding = _req_str(media_format, "encoding", "start.mediaFormat.encoding")
    if media_format.get("sampleRate") is None:
        raise MissingField("start.mediaFormat.sampleRate")
    rate = _as_int(media_format["sampleRate"], "start.mediaFormat.sampleRate")
    # Accept "audio/x-l16" and "audio/x-l16;rate=8000" alike; the explicit sampleRate wins.
    fmt = StreamFormat.from_content_type(
        f"{encoding.split(';')[0]};rate={rate}", field="start.mediaFormat"
    )

    account = start.get("accountId")
    if account is None:
        account_id = ""
    elif isinstance(account, str):
        account_id = account
    elif isinstance(account, int) and not isinstance(account, bool):
        account_id = str(account)
    else:
        raise InvalidField("start.accountId", "string or integer", account)

    raw_tracks = start.get("tracks")
    if raw_tracks is None:
        tracks: tuple[str, ...] = ("inbound",)
    elif isinstance(raw_tracks, list) and all(isinstance(t, str) for t in raw_tracks):
        tracks = tuple(raw_tracks)
    else:
        raise InvalidField("start.tracks", "list of strings", raw_tracks)

    headers_raw = data.get("extra_headers", data.get("extraHeaders"))
    if headers_raw is None:
        headers_raw = start.get("extra_headers", start.get("extraHeaders"))
    return StartEvent(
        sequence_number=seq,
        call_id=_nonempty(start, "callId", "start.callId"),
        stream_id=_nonempty(start, "streamId", "start.streamId"),
        account_id=account_id,
        tracks=tracks,
        format=fmt,
        extra_headers=parse_extra_headers(headers_raw),
    )


def _nonempty(data: dict[str, Any], key: str, path: str) -> str:
    value = _req_str(data, key, path)
    if not value:
        raise InvalidField(path, "non-empty string", value)
    return value


def _media(data: dict[str, Any], seq: int | None) -> MediaEvent:
    media = _obj(data, "media", "media")
    text = _req_str(media, "payload", "media.payload")
    try:
        payload = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidField("media.payload", "base64 text", text) from None
    track = _opt_str(media, "track", "media.track")
    return MediaEvent(
        sequence_number=seq,
        stream_id=_opt_str(data, "streamId", "streamId"),
        track=track or "inbound",
        timestamp_ms=_opt_int(media, "timestamp", "media.timestamp"),
        chunk=_opt_int(media, "chunk", "media.chunk"),
        payload=payload,
    )


def _dtmf(data: dict[str, Any], seq: int | None) -> DtmfEvent:
    dtmf = _obj(data, "dtmf", "dtmf")
    raw = dtmf.get("digit")
    if raw is None:
        raise MissingField("dtmf.digit")
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 9:
        digit = str(raw)
    elif isinstance(raw, str) and raw.strip().upper() in DTMF_DIGITS:
        digit = raw.strip().upper()
    else:
        raise InvalidField("dtmf.digit", "one of 0-9 * # A-D", raw)
    return DtmfEvent(seq, _opt_str(data, "streamId", "streamId"), digit)


def _played(data: dict[str, Any], seq: int | None) -> PlayedStreamEvent:
    name = _req_str(data, "name", "name")
    return PlayedStreamEvent(seq, _opt_str(data, "streamId", "streamId"), name)


def _cleared(data: dict[str, Any], seq: int | None) -> ClearedAudioEvent:
    return ClearedAudioEvent(seq, _opt_str(data, "streamId", "streamId"))


def _reason(data: dict[str, Any], nested: str) -> str | None:
    if data.get("reason") is not None:
        return _loose_text(data["reason"])
    inner = data.get(nested)
    return _loose_text(inner.get("reason")) if isinstance(inner, dict) else None


def _stop(data: dict[str, Any], seq: int | None) -> StopEvent:
    return StopEvent(seq, _opt_str(data, "streamId", "streamId"), _reason(data, "stop"))


def _play_failed(data: dict[str, Any], seq: int | None) -> PlayFailedEvent:
    name = _loose_text(data.get("name"))
    return PlayFailedEvent(
        seq, _opt_str(data, "streamId", "streamId"), name, _reason(data, "playFailed")
    )


def _error(data: dict[str, Any], seq: int | None) -> ErrorEvent:
    return ErrorEvent(seq, _opt_str(data, "streamId", "streamId"), _reason(data, "error"))


_Parser = Callable[[dict[str, Any], int | None], InboundEvent]

_PARSERS: dict[str, _Parser] = {
    "start": _start,
    "media": _media,
    "dtmf": _dtmf,
    "playedStream": _played,
    "played": _played,
    "clearedAudio": _cleared,
    "stop": _stop,
    "playFailed": _play_failed,
    "error": _error,
}


def parse_event(message: str | bytes) -> InboundEvent:
    """Parse one WebSocket frame: text frames arrive as ``str``, binary frames as ``bytes``.

    Raises a ProtocolError subclass for anything that is not a usable Plivo event; an unknown
    event name is not an error and comes back as UnknownEvent.
    """
    if isinstance(message, bytes | bytearray | memoryview):
        raise MalformedMessage(
            f"binary frames are not part of Plivo's protocol (got {len(message)} bytes)"
        )
    if not isinstance(message, str):
        raise MalformedMessage(f"expected a text frame, got {type(message).__name__}")
    try:
        data = _json_loads(message)
    except json.JSONDecodeError as exc:
        raise MalformedMessage(f"not JSON: {exc.msg} at position {exc.pos}") from None
    except (ValueError, RecursionError) as exc:
        raise MalformedMessage(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedMessage(f"expected a JSON object, got {type(data).__name__}")
    name = data.get("event")
    if name is None:
        raise MissingField("event")
    if not isinstance(name, str):
        raise InvalidField("event", "string", name)
    parser = _PARSERS.get(name)
    if parser is None:
        return UnknownEvent(name, data)
    return parser(data, _opt_int(data, "sequenceNumber", "sequenceNumber"))
