"""Asking an answer URL for its ``<Stream>``, as Plivo does when a call comes in.

The simulated caller always connects to the URL the answer XML names, never to a guessed one:
that URL may carry the call's stream token. With ``PLIVO_AUTH_TOKEN`` in the environment the
request is signed the way Plivo signs it (V3), so a service that checks signatures answers it.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from voicebridge.plivo.formats import StreamFormat
from voicebridge.plivo.signature import compute_v3_signature


@dataclass(frozen=True)
class AnsweredStream:
    """What an answer URL told the caller: where to stream, in which format, for which call."""

    url: str
    fmt: StreamFormat
    call_uuid: str


def plivo_headers(
    method: str, url: str, params: Mapping[str, str], auth_token: str
) -> dict[str, str]:
    """The V3 signature headers Plivo would send with this request."""
    nonce = base64.b64encode(secrets.token_bytes(12)).decode("ascii")
    signature = compute_v3_signature(method, url, params, nonce, auth_token)
    return {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}


async def answer_call(
    answer_url: str,
    *,
    call_uuid: str | None = None,
    caller: str = "sim",
    environ: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> AnsweredStream:
    """POST the answer URL like Plivo (CallUUID, From, …) and read its ``<Stream>``.

    Raises httpx.HTTPStatusError for a refused request, httpx.TransportError when the URL
    cannot be reached, and ValueError for an answer that is not XML with a stream.
    """
    env = os.environ if environ is None else environ
    call_uuid = call_uuid or str(uuid.uuid4())
    params = {"CallUUID": call_uuid, "From": caller, "Direction": "inbound"}
    token = env.get("PLIVO_AUTH_TOKEN", "").strip()
    headers = plivo_headers("POST", answer_url, params, token) if token else {}
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.post(answer_url, data=params, headers=headers)
    response.raise_for_status()
    try:
        stream = ET.fromstring(response.text).find("Stream")
    except ET.ParseError:
        raise ValueError(f"{answer_url} answered with something that is not XML") from None
    if stream is None or not (stream.text or "").strip():
        raise ValueError(f"{answer_url} returned no <Stream> element")
    content_type = stream.get("contentType", "audio/x-l16;rate=8000")
    return AnsweredStream(
        (stream.text or "").strip(), StreamFormat.from_content_type(content_type), call_uuid
    )
