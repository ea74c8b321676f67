"""Place one outbound call into a voicebridge service: the shared step of ``voicebridge dial``
and the service's ``POST /calls``.

The call's answer URL is the service's own ``/answer``, with the call's variables signed into
its query (``voicebridge.telephony.call_vars``), so the pipeline that answers gets them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlencode, urlsplit

from voicebridge.telephony.call_request import CallRequest, MachineDetection
from voicebridge.telephony.call_vars import sign_vars

API_KEY_ENV: Final = "VOICEBRIDGE_API_KEY"
FROM_ENV: Final = "VOICEBRIDGE_FROM_NUMBER"


def api_key(environ: Mapping[str, str] = os.environ) -> str | None:
    """The service's API key (``VOICEBRIDGE_API_KEY``), None when unset or blank."""
    return environ.get(API_KEY_ENV, "").strip() or None


def default_from(environ: Mapping[str, str] = os.environ) -> str | None:
    """The caller id to dial from when none is given (``VOICEBRIDGE_FROM_NUMBER``)."""
    return environ.get(FROM_ENV, "").strip() or None


def answer_url(public_url: str, call_vars: Mapping[str, object], secret: str | None) -> str:
    """``{public_url}/answer``, with ``call_vars`` signed into the query when there are any."""
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"public URL must be http(s)://host[/prefix], not {public_url[:80]!r}")
    url = f"{public_url.rstrip('/')}/answer"
    if call_vars:
        url += "?" + urlencode(sign_vars(call_vars, secret or ""))
    return url


def call_request(
    public_url: str,
    *,
    to: str,
    from_: str,
    call_vars: Mapping[str, object],
    secret: str | None,
    machine_detection: MachineDetection | None = None,
    hangup_url: str | None = None,
) -> CallRequest:
    """The Call API request for one call into the service at ``public_url``."""
    return CallRequest(
        to=to,
        from_=from_,
        answer_url=answer_url(public_url, call_vars, secret),
        machine_detection=machine_detection,
        hangup_url=hangup_url,
    )
