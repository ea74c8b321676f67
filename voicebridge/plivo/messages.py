"""Events we send to Plivo, serialised to JSON text ready for a WebSocket text frame."""

from __future__ import annotations

import json
from base64 import b64encode
from functools import lru_cache

from .events import DTMF_DIGITS
from .formats import StreamFormat

_COMPACT = (",", ":")


class PlayAudioEncoder:
    """Serialises ``playAudio`` for one stream.

    This runs 50+ times a second per call, so the JSON around the payload is built once; only the
    base64 text is new per message (it needs no JSON escaping).
    """

    __slots__ = ("_prefix", "_suffix", "format", "stream_id")

    def __init__(self, fmt: StreamFormat, stream_id: str | None = None) -> None:
        if not isinstance(fmt, StreamFormat):
            raise TypeError(f"fmt: expected StreamFormat, got {type(fmt).__name__}")
        self.format = fmt
        self.stream_id = stream_id
        self._prefix = (
            '{"event":"playAudio","media":{"contentType":'
            + json.dumps(fmt.encoding)
            + ',"sampleRate":'
            + str(fmt.sample_rate)
            + ',"payload":"'
        )
        tail = (
            "" if stream_id is None else ',"streamId":' + json.dumps(_text(stream_id, "stream_id"))
        )
        self._suffix = '"}' + tail + "}"

    def encode(self, payload: bytes | bytearray | memoryview) -> str:
        """Raises ValueError for a payload that is not whole samples (odd-length L16)."""
        if len(payload) % self.format.bytes_per_sample:
            raise ValueError(
                f"payload: expected whole {self.format.codec} samples, got {len(payload)} bytes"
            )
        return self._prefix + b64encode(payload).decode("ascii") + self._suffix


@lru_cache(maxsize=128)
def _encoder(fmt: StreamFormat, stream_id: str | None) -> PlayAudioEncoder:
    return PlayAudioEncoder(fmt, stream_id)


def play_audio(
    payload: bytes | bytearray | memoryview, fmt: StreamFormat, stream_id: str | None = None
) -> str:
    """``playAudio`` with raw audio (no WAV header) in the stream's own format."""
    return _encoder(fmt, stream_id).encode(payload)


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: expected non-empty string, got {value!r}")
    return value


def checkpoint(stream_id: str, name: str) -> str:
    """Plivo acks it with ``playedStream`` (same ``name``) once prior audio has played."""
    return json.dumps(
        {
            "event": "checkpoint",
            "streamId": _text(stream_id, "stream_id"),
            "name": _text(name, "name"),
        },
        separators=_COMPACT,
    )


def clear_audio(stream_id: str) -> str:
    """Drops Plivo's buffered audio (barge-in); acked with ``clearedAudio``."""
    return json.dumps(
        {"event": "clearAudio", "streamId": _text(stream_id, "stream_id")}, separators=_COMPACT
    )


def send_dtmf(digits: str, stream_id: str | None = None) -> str:
    """Plays DTMF tones to the caller. Raises ValueError for anything but 0-9 * # A-D."""
    if not isinstance(digits, str) or not digits or not set(digits) <= DTMF_DIGITS:
        raise ValueError(f"digits: expected one or more of 0-9 * # A-D, got {digits!r}")
    message: dict[str, str] = {"event": "sendDTMF", "dtmf": digits}
    if stream_id is not None:
        message["streamId"] = _text(stream_id, "stream_id")
    return json.dumps(message, separators=_COMPACT)
