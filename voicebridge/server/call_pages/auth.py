"""Who may read the call pages: a browser that gives ``VOICEBRIDGE_API_KEY`` as its password.

A browser cannot send a bearer header when it navigates, so the pages take HTTP Basic
authentication with the API key as the password (any user name): the browser asks for it once
and sends it with every request to the pages, their script's polling included. Why Basic and not
a login form with a cookie: nothing is stored on the server, there is no session to steal or
expire, and no login endpoint to protect from cross-site posts. The pages only read, so a
cross-site request riding on the browser's remembered credentials can change nothing, and
``POST /calls`` (which costs money) takes only the bearer header, never Basic. Scripts may send
``Authorization: Bearer <key>`` here too. Serve the service over HTTPS (Basic sends the key in
every request, as the bearer header does).

Without a key the pages do not exist (404 saying how to turn them on); a request without
credentials or with a wrong key gets 401 with a Basic challenge, so the browser asks again.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Final

import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from voicebridge.observe.bounded import bounded
from voicebridge.observe.throttle import LogThrottle
from voicebridge.telephony.dialer import API_KEY_ENV

log = structlog.get_logger("voicebridge.server.call_pages")

REALM: Final = 'Basic realm="voicebridge calls", charset="UTF-8"'
SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_REFUSED = LogThrottle()


def presented_key(request: Request) -> str | None:
    """The key in ``Authorization``: the Basic password, or the bearer token."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep and password else None


def refuse(request: Request, key: str | None, enabled: bool) -> Response | None:
    """None when ``request`` may read the pages; else the refusal to send."""
    if key is None or not enabled:
        why = f"set {API_KEY_ENV}" if key is None else "set call_pages.enabled: true"
        return PlainTextResponse(
            f"call pages are off: {why} to serve them", 404, headers=SECURITY_HEADERS
        )
    presented = presented_key(request)
    if presented is not None and hmac.compare_digest(presented.encode(), key.encode()):
        return None
    if presented is not None:
        client = request.client.host if request.client else None
        _REFUSED.log(log, "call_pages_refused", "warning", client=bounded(client, 64))
    return PlainTextResponse(
        "the API key is required: give it as the password (any user name)",
        401,
        headers={**SECURITY_HEADERS, "WWW-Authenticate": REALM},
    )
