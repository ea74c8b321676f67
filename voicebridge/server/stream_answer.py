"""The ``<Stream>`` XML the service answers a call with, from its stream settings.

``/answer`` and ``voicebridge xml`` both build it here, so the XML a user pastes into a Plivo
application cannot drift from the XML the running service returns.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from voicebridge.config.service_settings import StreamSettings
from voicebridge.plivo.answer_xml import stream_xml
from voicebridge.plivo.formats import StreamFormat


def answer_xml(stream: StreamSettings, stream_url: str, status_url: str | None) -> str:
    """The answer XML for a stream to ``stream_url``; ``status_url`` receives Plivo's stream
    status callbacks when ``stream.status_callback`` is on. Raises ValueError for a URL or
    setting Plivo would reject."""
    fmt = StreamFormat.from_short(stream.codec, stream.sample_rate)
    callback = status_url if stream.status_callback else None
    return stream_xml(
        stream_url,
        bidirectional=True,
        keep_call_alive=stream.keep_call_alive,
        content_type=fmt.content_type,
        stream_timeout=stream.stream_timeout_s,
        status_callback_url=callback,
        status_callback_method="POST" if callback else None,
        extra_headers=stream.extra_headers or None,
        noise_cancellation=stream.noise_cancellation or None,
    )


def status_url_for(stream_url: str) -> str:
    """``/status`` beside a ``/stream`` URL: ``wss://host/p/stream`` -> ``https://host/p/status``
    (as ``/answer`` derives both from one public base)."""
    parts = urlsplit(stream_url)
    scheme = "https" if parts.scheme.lower() == "wss" else "http"
    path = parts.path.rstrip("/")
    path = path.removesuffix("/stream")
    return urlunsplit((scheme, parts.netloc, f"{path}/status", "", ""))
