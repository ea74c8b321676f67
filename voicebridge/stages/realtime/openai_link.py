"""One OpenAI Realtime session, on the official SDK's WebSocket client.

``open`` connects (``client.realtime.connect``), sends the ``session.update`` and waits for the
server's ``session.updated``, so a refused key, model or setting is an error at once, not a
silent call. Events go out in order through one writer task (``send`` never waits, caller audio
is bounded: :mod:`~voicebridge.stages.realtime.session_link`). ``recv`` returns the next event
as a dict.

Every failure is a ``ProviderError``: the WebSocket handshake's HTTP status (401 a bad key, 404
an unknown model or path, 429 a quota, 5xx the service), a timeout on the call's clock, a closed
socket (with its close code), or an ``error`` event.

The SDK's own reconnection is not used (it would resume a session that no longer exists
server-side, on real time): the stage re-establishes a session itself and replays the heard
history into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import openai
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from voicebridge.clock import Clock, wait_for
from voicebridge.observe.trace_context import trace_headers
from voicebridge.runtime.providers import ErrorKind, ProviderError, kind_from_http_status
from voicebridge.stages.realtime.session_link import SessionLink

_ERROR_KINDS: dict[str, ErrorKind] = {
    "invalid_request_error": "invalid",
    "authentication_error": "auth",
    "permission_error": "auth",
    "rate_limit_error": "quota",
    "server_error": "unavailable",
    "overloaded_error": "unavailable",
}


def event_error(stage: str, provider: str, error: Any) -> ProviderError:
    """An ``error`` event's (or a failed response's) error object as a ProviderError."""
    error = error if isinstance(error, dict) else {}
    kind_name = str(error.get("type") or "")
    code = error.get("code")
    message = str(error.get("message") or "the model reported an error")[:300]
    kind = _ERROR_KINDS.get(kind_name, "other")
    if code in ("model_not_found", "invalid_api_key"):
        kind = "invalid" if code == "model_not_found" else "auth"
    return ProviderError(stage, provider, kind, message, status=str(code)[:64] if code else None)


def link_error(stage: str, provider: str, exc: BaseException) -> ProviderError:
    """Whatever connecting or talking to the socket raised, as one ProviderError."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        body = bytes(exc.response.body or b"")
        message = _body_message(body) or f"HTTP {status} {exc.response.reason_phrase}"
        return ProviderError(stage, provider, kind_from_http_status(status), message, status=status)
    if isinstance(exc, ConnectionClosed):
        close = exc.rcvd
        detail = f"code {close.code}: {close.reason[:200]}" if close else "no close frame"
        return ProviderError(stage, provider, "unavailable", f"the socket closed ({detail})")
    if isinstance(exc, TimeoutError):
        return ProviderError(stage, provider, "timeout", "no answer in time")
    if isinstance(exc, OSError | WebSocketException):
        return ProviderError(stage, provider, "unavailable", f"connection failed: {exc!r}"[:300])
    if isinstance(exc, openai.OpenAIError):
        return ProviderError(stage, provider, "other", str(exc)[:300])
    return ProviderError(stage, provider, "other", f"{type(exc).__name__}: {exc}"[:300])


def _body_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip()
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:300]
    return ""


class RealtimeLink(SessionLink):
    """One session's socket: open it, send events in order, receive events."""

    def __init__(self, stage: str, provider: str, clock: Clock) -> None:
        super().__init__(stage)
        self.provider = provider
        self.clock = clock
        self._conn: Any = None

    async def open(
        self, client: openai.AsyncOpenAI, model: str, session: dict[str, Any], timeout_s: float
    ) -> dict[str, Any]:
        """Connect, configure, and return the server's ``session.updated`` event."""
        try:
            # The call's W3C trace context on the handshake, when tracing is on.
            manager = client.realtime.connect(model=model, extra_headers=trace_headers() or {})
            self.setup_until = self.clock.now() + timeout_s
            self._conn = await wait_for(self.clock, manager.enter(), timeout_s)
            await self._conn.send({"type": "session.update", "session": session})
            self.sent += 1
            while True:
                self.setup_until = self.clock.now() + timeout_s
                event = await wait_for(self.clock, self.recv(), timeout_s)
                kind = event.get("type")
                if kind == "session.updated":
                    break
                if kind == "error":
                    raise event_error(self.stage, self.provider, event.get("error"))
        except BaseException as exc:
            self.setup_until = None
            await self.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise link_error(self.stage, self.provider, exc) from exc
        self.setup_until = None
        self._start_writer()
        return event

    # --- sending ------------------------------------------------------------------------------
    def send(self, event: dict[str, Any]) -> None:
        """Queue an event; it goes out after everything queued before it."""
        self._queue_message(event)

    async def _deliver(self, message: Any, audio: bool) -> None:
        if audio:  # an input_audio_buffer.append, already JSON (send_audio)
            await self._conn.send_raw(message)
        else:
            await self._conn.send(message)

    # --- receiving ----------------------------------------------------------------------------
    async def recv(self) -> dict[str, Any]:
        """The next event; ProviderError when the socket closed."""
        conn = self._conn
        if conn is None:
            raise ProviderError(self.stage, self.provider, "unavailable", "not connected")
        try:
            raw = await conn.recv_bytes()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise link_error(self.stage, self.provider, exc) from exc
        self.received += 1
        try:
            event = json.loads(raw)
        except ValueError:
            return {"type": "voicebridge.unreadable"}
        return event if isinstance(event, dict) else {"type": "voicebridge.unreadable"}

    async def close(self) -> None:
        await self._stop_writer()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
