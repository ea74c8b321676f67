"""Where Plivo should connect: the public WebSocket URL of ``/stream``.

Behind a proxy or tunnel the request we see is plain HTTP on a private address, so the URL comes
from configuration first, then from the standard forwarding headers, then from the Host header.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from starlette.requests import HTTPConnection


def _ws_scheme(scheme: str) -> str:
    return {"https": "wss", "wss": "wss", "http": "ws", "ws": "ws"}.get(scheme.lower(), "wss")


def public_base(conn: HTTPConnection, configured: str | None) -> tuple[str, str, str]:
    """(ws scheme, host[:port], path prefix) of this service as the outside world sees it."""
    if configured:
        parts = urlsplit(configured)
        if not parts.netloc:
            raise ValueError(f"public_url {configured!r} needs a scheme and host")
        return _ws_scheme(parts.scheme), parts.netloc, parts.path.rstrip("/")
    headers = conn.headers
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip()
    host = headers.get("x-forwarded-host", "").split(",")[0].strip()
    host = host or headers.get("host", "") or f"{conn.url.hostname}:{conn.url.port}"
    prefix = headers.get("x-forwarded-prefix", "").rstrip("/")
    return _ws_scheme(proto or conn.url.scheme), host, prefix


def stream_url(conn: HTTPConnection, configured: str | None, query: str = "") -> str:
    scheme, host, prefix = public_base(conn, configured)
    return urlunsplit((scheme, host, f"{prefix}/stream", query, ""))


def http_url(conn: HTTPConnection, configured: str | None, path: str) -> str:
    scheme, host, prefix = public_base(conn, configured)
    return urlunsplit(("https" if scheme == "wss" else "http", host, f"{prefix}{path}", "", ""))
