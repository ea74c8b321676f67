"""A local fake of Plivo's REST API for tests: place, hang up and transfer calls, over real HTTP
on loopback.

A real server (Starlette under uvicorn, in the test's event loop) rather than a mock transport,
so the client's URL building, basic auth, body encoding, timeouts and connection handling are all
exercised on the wire, and nothing ever reaches api.plivo.com::

    async with FakePlivoRest("MAFAKE", "tok", live_calls={"call-1"}) as fake:
        async with PlivoRest(PlivoCredentials("MAFAKE", "tok"), base_url=fake.base_url) as rest:
            assert await rest.hangup("call-1") == "hung_up"
        assert fake.ended_calls == {"call-1"}

Faults are scripted per request: ``fail_next(2, status=503)`` answers the next two requests with
503 (before the auth check, like a failing front end), ``slow_next(1, 0.5)`` or ``delay_s`` make
answers slow so client timeouts can be tested.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voicebridge.server.run import LoopServer, loopback_config

AuthResult = Literal["ok", "bad", "missing"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it. The Authorization header is left out on purpose.

    ``path`` is as sent (percent-encoded, no query); ``auth`` says whether basic auth matched.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any | None
    form: dict[str, str] | None
    auth: AuthResult
    auth_id: str | None
    status: int
    time: float

    @property
    def fields(self) -> dict[str, Any]:
        """The body's fields, whichever encoding the client used."""
        if isinstance(self.json, dict):
            return self.json
        return dict(self.form or {})


@dataclass(frozen=True)
class Fault:
    """A scripted answer for one request: ``status`` with a Plivo-like error body."""

    status: int
    retry_after: float | None = None
    error: str = "fake fault"


@dataclass
class Transfer:
    call_uuid: str
    legs: str
    aleg_url: str | None
    aleg_method: str


@dataclass
class CreatedCall:
    """A call placed through ``POST /v1/Account/{auth_id}/Call/``: its fields as sent."""

    request_uuid: str
    fields: dict[str, Any]


# The Call API's required fields ("Make an outbound call"); numbers are digits, no "+".
_REQUIRED_CREATE_FIELDS = ("from", "to", "answer_url")


@dataclass(eq=False)
class FakePlivoRest:
    """Plivo's ``/v1/Account/{auth_id}/Call/{call_uuid}/`` DELETE and POST, on 127.0.0.1.

    DELETE answers 204 for a live call (and ends it), 404 otherwise. POST (transfer) answers 202
    for a live call, 404 otherwise, 400 when ``legs``/``aleg_url`` are missing. Wrong or missing
    basic auth gets 401 with a JSON error, as Plivo does.
    """

    auth_id: str
    auth_token: str
    live_calls: set[str] = field(default_factory=set)
    delay_s: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list, init=False)
    ended_calls: set[str] = field(default_factory=set, init=False)
    transfers: list[Transfer] = field(default_factory=list, init=False)
    created_calls: list[CreatedCall] = field(default_factory=list, init=False)
    faults: deque[Fault] = field(default_factory=deque, init=False)
    delays: deque[float] = field(default_factory=deque, init=False)
    host: str = field(default="127.0.0.1", init=False)
    port: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.live_calls = set(self.live_calls)
        self._server: LoopServer | None = None
        self._closing = asyncio.Event()

    # -- scripting ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_call(self, call_uuid: str) -> None:
        self.live_calls.add(call_uuid)
        self.ended_calls.discard(call_uuid)

    def end_call(self, call_uuid: str) -> None:
        """The caller hung up on their side: later requests for this call get 404."""
        self.live_calls.discard(call_uuid)
        self.ended_calls.add(call_uuid)

    def fail_next(self, n: int = 1, status: int = 500, *, retry_after: float | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (after any already queued faults)."""
        self.faults.extend(Fault(status, retry_after) for _ in range(n))

    def queue_statuses(self, statuses: Iterable[int]) -> None:
        """Answer the next requests with these statuses, one each, in order."""
        self.faults.extend(Fault(status) for status in statuses)

    def slow_next(self, n: int = 1, delay_s: float = 1.0) -> None:
        """Delay the next ``n`` answers by ``delay_s`` (instead of the constant ``delay_s``)."""
        self.delays.extend(delay_s for _ in range(n))

    def requests_for(self, call_uuid: str) -> list[RecordedRequest]:
        suffix = f"/Call/{quote(call_uuid, safe='')}/"
        return [r for r in self.requests if r.path.endswith(suffix)]

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakePlivoRest:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Serve on a free loopback port in the running event loop."""
        self._closing = asyncio.Event()
        app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "DELETE", "PUT"])]
        )
        self._server = LoopServer(loopback_config(app, timeout_graceful_shutdown=2))
        self.host, self.port = await self._server.start()

    async def stop(self) -> None:
        self._closing.set()  # cut scripted delays short so shutdown does not wait for them
        if self._server is None:
            return
        await self._server.stop()
        self._server = None

    # -- the API -----------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        auth, presented_id = self._check_auth(request.headers.get("authorization"))
        response = await self._answer(request, body, auth)
        self.requests.append(self._record(request, body, auth, presented_id, response.status_code))
        delay = self.delays.popleft() if self.delays else self.delay_s
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
        return response

    async def _answer(self, request: Request, body: bytes, auth: AuthResult) -> Response:
        if self.faults:
            fault = self.faults.popleft()
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return _error(fault.status, fault.error, headers)
        if auth != "ok":
            return _error(401, "Authentication failed: invalid auth id or token")
        path = _raw_path(request)
        # v1 / Account / {auth_id} / Call / {call_uuid}, each segment percent-encoded
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if len(parts) == 4 and parts[:2] == ["v1", "Account"] and parts[3] == "Call":
            if parts[2] != self.auth_id:
                return _error(401, "Authentication failed: auth id does not match the URL")
            if request.method != "POST" or not path.endswith("/"):
                return _error(405, f"method {request.method} not allowed")
            return self._create(_parse_fields(request, body))
        if len(parts) != 5 or parts[:2] != ["v1", "Account"] or parts[3] != "Call":
            return _error(404, "not found")
        if parts[2] != self.auth_id:
            return _error(401, "Authentication failed: auth id does not match the URL")
        if not path.endswith("/"):
            return _error(404, "not found")
        call_uuid = parts[4]
        if request.method == "DELETE":
            if call_uuid not in self.live_calls:
                return _error(404, "not found")
            self.end_call(call_uuid)
            return Response(status_code=204)
        if request.method == "POST":
            return self._transfer(call_uuid, _parse_fields(request, body))
        return _error(405, f"method {request.method} not allowed")

    def _create(self, fields: dict[str, Any]) -> Response:
        missing = [name for name in _REQUIRED_CREATE_FIELDS if not fields.get(name)]
        if missing:
            return _error(400, f"missing required parameter(s): {', '.join(missing)}")
        for name in ("from", "to"):
            if not str(fields[name]).isdigit():
                return _error(400, f"invalid {name} number")
        request_uuid = str(uuid.uuid4())
        self.created_calls.append(CreatedCall(request_uuid, dict(fields)))
        return JSONResponse(
            {"message": "call fired", "request_uuid": request_uuid, "api_id": str(uuid.uuid4())},
            status_code=201,
        )

    def _transfer(self, call_uuid: str, fields: dict[str, Any]) -> Response:
        legs = str(fields.get("legs", "aleg"))
        aleg_url = fields.get("aleg_url")
        if legs not in ("aleg", "bleg", "both"):
            return _error(400, "legs must be aleg, bleg or both")
        if legs in ("aleg", "both") and not aleg_url:
            return _error(400, "aleg_url is required when legs is aleg or both")
        if call_uuid not in self.live_calls:
            return _error(404, "not found")
        method = str(fields.get("aleg_method", "POST"))
        self.transfers.append(Transfer(call_uuid, legs, aleg_url, method))
        return JSONResponse(
            {"message": "call transfered", "api_id": str(uuid.uuid4())}, status_code=202
        )

    def _check_auth(self, header: str | None) -> tuple[AuthResult, str | None]:
        if not header:
            return "missing", None
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return "bad", None
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "bad", None
        ok = bool(sep) and user == self.auth_id and password == self.auth_token
        return ("ok" if ok else "bad"), user

    def _record(
        self,
        request: Request,
        body: bytes,
        auth: AuthResult,
        presented_id: str | None,
        status: int,
    ) -> RecordedRequest:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        content_type = request.headers.get("content-type", "")
        parsed_json: Any | None = None
        form: dict[str, str] | None = None
        if "json" in content_type:
            with contextlib.suppress(ValueError):
                parsed_json = json.loads(body)
        elif "x-www-form-urlencoded" in content_type:
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return RecordedRequest(
            method=request.method,
            path=_raw_path(request),
            headers=headers,
            body=body,
            json=parsed_json,
            form=form,
            auth=auth,
            auth_id=presented_id,
            status=status,
            time=time.monotonic(),
        )


def _raw_path(request: Request) -> str:
    """The path as sent, still percent-encoded: the client's quoting is part of what we test."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else request.url.path


def _parse_fields(request: Request, body: bytes) -> dict[str, Any]:
    """Plivo accepts JSON and form bodies alike."""
    content_type = request.headers.get("content-type", "")
    if "x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"api_id": str(uuid.uuid4()), "error": message}, status_code=status, headers=headers
    )
