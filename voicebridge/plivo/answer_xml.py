"""Plivo XML documents our answer URL returns: start the stream, transfer, hang up.

Everything is validated here, because Plivo reports a bad XML attribute only as a failed call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr

from .formats import StreamFormat

_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n'
_TAIL = "</Response>\n"
_ALNUM = re.compile(r"[A-Za-z0-9]+")
_TRACKS = ("inbound", "outbound", "both")
MAX_EXTRA_HEADERS_BYTES = 512


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _render_extra_headers(extra: Mapping[str, str] | str) -> str:
    """Render as ``k=v,k=v``; Plivo allows letters and digits only, 512 bytes in all."""
    if isinstance(extra, str):
        pairs: list[tuple[str, str]] = []
        for part in extra.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"extra_headers: expected key=value, got {part.strip()!r}")
            pairs.append((key.strip(), value.strip()))
    else:
        pairs = [(str(k), str(v)) for k, v in extra.items()]
    for key, value in pairs:
        if not _ALNUM.fullmatch(key) or not _ALNUM.fullmatch(value):
            raise ValueError(
                f"extra_headers: key {key!r}: keys and values must be letters and digits only,"
                f" got {key!r}={value!r}"
            )
    rendered = ",".join(f"{k}={v}" for k, v in pairs)
    if len(rendered.encode()) > MAX_EXTRA_HEADERS_BYTES:
        raise ValueError(
            f"extra_headers: at most {MAX_EXTRA_HEADERS_BYTES} bytes, got {len(rendered.encode())}"
        )
    return rendered


def stream_xml(
    url: str,
    *,
    bidirectional: bool = True,
    keep_call_alive: bool = True,
    content_type: str | StreamFormat = "audio/x-l16;rate=8000",
    audio_track: str = "inbound",
    stream_timeout: int | None = None,
    status_callback_url: str | None = None,
    status_callback_method: str | None = None,
    extra_headers: Mapping[str, str] | str | None = None,
    noise_cancellation: bool | None = None,
    noise_cancellation_level: int | None = None,
) -> str:
    """``<Response><Stream …>url</Stream></Response>``.

    ``contentType`` is always written because Plivo's pages disagree on its default.
    Raises ValueError (UnsupportedFormat for the content type) for anything Plivo would reject.
    """
    if not isinstance(url, str) or not re.match(r"wss?://[^\s/?#]", url, re.IGNORECASE):
        raise ValueError(f"url: expected a ws:// or wss:// URL, got {url!r}")
    if any(ch.isspace() for ch in url):
        raise ValueError(f"url: must not contain whitespace, got {url!r}")
    fmt = (
        content_type
        if isinstance(content_type, StreamFormat)
        else (StreamFormat.from_content_type(content_type, field="content_type"))
    )
    if audio_track not in _TRACKS:
        raise ValueError(f"audio_track: expected one of {', '.join(_TRACKS)}, got {audio_track!r}")
    if bidirectional and audio_track != "inbound":
        raise ValueError(
            f"audio_track: bidirectional streams require 'inbound', got {audio_track!r}"
        )

    attrs: list[tuple[str, str]] = [
        ("bidirectional", _bool(bidirectional)),
        ("keepCallAlive", _bool(keep_call_alive)),
        ("contentType", fmt.content_type),
        ("audioTrack", audio_track),
    ]
    if stream_timeout is not None:
        if (
            not isinstance(stream_timeout, int)
            or isinstance(stream_timeout, bool)
            or stream_timeout <= 0
        ):
            raise ValueError(f"stream_timeout: expected positive seconds, got {stream_timeout!r}")
        attrs.append(("streamTimeout", str(stream_timeout)))
    if status_callback_url is not None:
        if not re.match(r"https?://[^\s/?#]", status_callback_url, re.IGNORECASE):
            raise ValueError(
                f"status_callback_url: expected an http(s) URL, got {status_callback_url!r}"
            )
        attrs.append(("statusCallbackUrl", status_callback_url))
    if status_callback_method is not None:
        method = status_callback_method.upper()
        if method not in ("GET", "POST"):
            raise ValueError(
                f"status_callback_method: expected GET or POST, got {status_callback_method!r}"
            )
        attrs.append(("statusCallbackMethod", method))
    if extra_headers:
        rendered = _render_extra_headers(extra_headers)
        if rendered:
            attrs.append(("extraHeaders", rendered))
    if noise_cancellation is not None:
        attrs.append(("noiseCancellation", _bool(noise_cancellation)))
    if noise_cancellation_level is not None:
        level = noise_cancellation_level
        if not isinstance(level, int) or isinstance(level, bool) or not 60 <= level <= 100:
            raise ValueError(f"noise_cancellation_level: expected 60..100, got {level!r}")
        attrs.append(("noiseCancellationLevel", str(level)))

    rendered_attrs = " ".join(f"{name}={quoteattr(value)}" for name, value in attrs)
    return f"{_HEAD}  <Stream {rendered_attrs}>{escape(url)}</Stream>\n{_TAIL}"


def dial_xml(number: str, *, caller_id: str | None = None) -> str:
    """Transfer the call: a phone number, or a SIP endpoint when ``number`` starts with ``sip:``."""
    if not isinstance(number, str) or not number.strip():
        raise ValueError(f"number: expected a phone number or sip: URI, got {number!r}")
    number = number.strip()
    tag = "User" if number.lower().startswith("sip:") else "Number"
    dial_attrs = ""
    if caller_id is not None:
        if not caller_id.strip():
            raise ValueError(f"caller_id: expected a number, got {caller_id!r}")
        dial_attrs = f" callerId={quoteattr(caller_id.strip())}"
    return f"{_HEAD}  <Dial{dial_attrs}>\n    <{tag}>{escape(number)}</{tag}>\n  </Dial>\n{_TAIL}"


def hangup_xml() -> str:
    return f"{_HEAD}  <Hangup/>\n{_TAIL}"
