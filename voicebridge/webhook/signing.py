"""Signing webhook deliveries, and checking them on the receiving side.

The signature is HMAC-SHA256 under the shared secret over ``<timestamp>.<raw body>``, sent as
``X-Voicebridge-Signature: t=<unix seconds>,v1=<hex>``. The timestamp is part of what is
signed, so a receiver that refuses old timestamps also refuses a captured request replayed
later; the idempotency key (``X-Voicebridge-Idempotency-Key``, the same on every retry of one
document) lets it drop a second delivery of a document it already has.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

SIGNATURE_HEADER: Final = "X-Voicebridge-Signature"
IDEMPOTENCY_HEADER: Final = "X-Voicebridge-Idempotency-Key"
EVENT_HEADER: Final = "X-Voicebridge-Event"
SECRET_ENV: Final = "VOICEBRIDGE_WEBHOOK_SECRET"
MIN_SECRET_CHARS: Final = 16
DEFAULT_TOLERANCE_S: Final = 300.0
_MAX_HEADER_CHARS: Final = 1024


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The value of ``X-Voicebridge-Signature`` for ``body`` sent at ``timestamp``."""
    return f"t={int(timestamp)},v1={signature(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when ``header`` (``X-Voicebridge-Signature``) signs exactly ``body`` (the raw bytes
    received, before any JSON parsing) under ``secret``, at a timestamp within ``tolerance_s``
    of ``now`` (default: the wall clock). Any ``v1=`` entry may match, so a sender can sign
    with an old and a new secret while the secret is rotated."""
    if not header or len(header) > _MAX_HEADER_CHARS:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)


def idempotency_key(call_id: str, stream_id: str, epoch: int, event: str) -> str:
    """A key stable for one call segment's document: the same on every retry and restart."""
    text = "\x1f".join((event, call_id, stream_id, str(epoch)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
