"""``POST /calls``: place an outbound call into this service, for an application with the key.

Placing a call costs money and rings a stranger's phone, so the endpoint exists only when an API
key is configured (``VOICEBRIDGE_API_KEY``) and every request must present it as a bearer token:
without the header 401, with a wrong key 403, and without a configured key 503 saying how to
enable it. JSON in ``{"to", "from"?, "vars"?}``; out ``{"request_uuid", "status": "queued"}``.
``GET /calls/{request_uuid}`` (same key) tells how a placed call went.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from voicebridge.server.call_outcomes import CallOutcomes
from voicebridge.telephony.call_request import MachineDetection
from voicebridge.telephony.call_vars import InvalidVars
from voicebridge.telephony.dialer import API_KEY_ENV, FROM_ENV, call_request
from voicebridge.telephony.numbers import InvalidNumber
from voicebridge.telephony.plivo_rest import PlivoRest, PlivoRestError

log = structlog.get_logger("voicebridge.server.outbound")

MAX_BODY_BYTES: Final = 16 * 1024


def _error(status: int, message: str, **headers: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def check_key(request: Request, key: str | None) -> Response | None:
    """None when ``request`` presents the API key; else the refusal to send (503/401/403)."""
    if key is None:
        return _error(503, f"the calls API is disabled: set {API_KEY_ENV} to enable it")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return _error(
            401,
            "an API key is required: Authorization: Bearer <key>",
            **{"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(presented.strip().encode(), key.encode()):
        log.warning("calls_refused", reason="bad_key")
        return _error(403, "wrong API key")
    return None


def calls_endpoint(
    *,
    key: str | None,
    default_from: str | None,
    rest: Callable[[], PlivoRest | None],
    public_url: Callable[[Request], str],
    machine_detection: Callable[[Request], MachineDetection | None] = lambda request: None,
    outcomes: CallOutcomes | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """The route handler. ``rest`` gives the Plivo client (None without credentials),
    ``public_url`` the https base Plivo reaches this service at. With ``outcomes``, each call
    gets ``/hangup`` as its hang-up callback and is tracked there."""

    async def create(request: Request) -> Response:
        refused = check_key(request, key)
        if refused is not None:
            return refused
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            payload: Any = json.loads(body)
        except ValueError:
            return _error(400, 'expected a JSON object: {"to": "+15551234567"}')
        if not isinstance(payload, dict) or not isinstance(payload.get("to"), str):
            return _error(400, 'expected a JSON object with "to" (an E.164 number)')
        from_ = payload.get("from", default_from)
        if not isinstance(from_, str) or not from_:
            return _error(400, f'"from" is required (or set {FROM_ENV} on the service)')
        call_vars = payload.get("vars") or {}
        if not isinstance(call_vars, dict):
            return _error(400, '"vars" must be an object of names to text')
        client = rest()
        if client is None:
            return _error(503, "no Plivo credentials: set PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN")
        try:
            call = call_request(
                public_url(request),
                to=payload["to"],
                from_=from_,
                call_vars=call_vars,
                secret=key,
                machine_detection=machine_detection(request),
                hangup_url=f"{public_url(request)}/hangup" if outcomes is not None else None,
            )
        except (InvalidNumber, InvalidVars, ValueError) as exc:
            return _error(400, str(exc))
        try:
            created = await client.create_call(call)
        except PlivoRestError as exc:
            status = 429 if exc.reason == "rate_limited" else 502
            return _error(status, str(exc))
        if outcomes is not None:
            try:
                await outcomes.placed(created.request_uuid)
            except Exception as exc:  # the call rings anyway; only its outcome goes unknown
                log.warning("call_outcome_not_kept", error=repr(exc)[:200])
        log.info("call_placed", request_uuid=created.request_uuid, vars=len(call_vars))
        return JSONResponse(
            {"request_uuid": created.request_uuid, "status": "queued"}, status_code=201
        )

    return create
