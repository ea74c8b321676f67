"""Plivo's V3 request signatures (``X-Plivo-Signature-V3`` and its nonce).

Behaves like ``validate_v3_signature`` in Plivo's Python SDK, so a request that SDK accepts is
accepted here: the quirks (no URL-encoding, ``keyvalue`` POST concatenation) are Plivo's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlparse

ParamValue = str | Sequence[str]


def _values(value: ParamValue) -> list[str]:
    if isinstance(value, str):
        return [value]
    return sorted(str(v) for v in value)


def _query_string(params: Mapping[str, ParamValue]) -> str:
    """``k=v&k=v`` sorted by key; a list value sorted and repeated."""
    return "&".join(f"{key}={val}" for key in sorted(params) for val in _values(params[key]))


def _post_string(params: Mapping[str, ParamValue]) -> str:
    """``keyvalue`` pairs sorted by key with no separators, as Plivo signs POST bodies."""
    return "".join(f"{key}{val}" for key in sorted(params) for val in _values(params[key]))


def v3_signature_base(method: str, url: str, params: Mapping[str, ParamValue]) -> str:
    """The string Plivo signs (before ``.nonce``). Raises ValueError for methods but GET/POST."""
    verb = method.upper()
    if verb not in ("GET", "POST"):
        raise ValueError(f"method: expected GET or POST, got {method!r}")
    parts = urlparse(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query: dict[str, ParamValue] = dict(parse_qs(parts.query, keep_blank_values=True))
    if verb == "GET":
        merged: dict[str, ParamValue] = {**params, **query}
        text = _query_string(merged)
        return f"{base}?{text}" if text else base
    if not params:
        text = _query_string(query)
        return f"{base}?{text}" if text else base
    text = _query_string(query)
    return f"{base}?{text}{'.' if text else ''}{_post_string(params)}"


def compute_v3_signature(
    method: str, url: str, params: Mapping[str, ParamValue], nonce: str, auth_token: str
) -> str:
    message = f"{v3_signature_base(method, url, params)}.{nonce}".encode()
    digest = hmac.new(auth_token.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def validate_v3_signature(
    method: str,
    url: str,
    params: Mapping[str, ParamValue],
    nonce: str,
    signature_header: str,
    auth_token: str,
) -> bool:
    """True when our signature is one of the header's comma-separated values.

    Unsupported methods and empty headers are simply invalid: a forged request must not be able
    to turn validation into an exception path.
    """
    if not signature_header or not auth_token:
        return False
    try:
        expected = compute_v3_signature(method, url, params, nonce, auth_token).encode()
    except ValueError:
        return False
    found = False
    for candidate in signature_header.split(","):
        found |= hmac.compare_digest(expected, candidate.strip().encode())
    return found
