"""The ``/stream`` WebSocket: hands each Plivo connection to its own ``Session``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voicebridge.server.calls import CallRegistry
from voicebridge.server.resume_registry import ResumeRegistry
from voicebridge.session import CloseCode, Session

log = structlog.get_logger("voicebridge.server")


class StarletteTransport:
    """A session's view of a Starlette WebSocket."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send_text(self, text: str) -> None:
        if self._ws.application_state is WebSocketState.CONNECTED:
            await self._ws.send_text(text)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        if self._ws.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError):
                await self._ws.close(code, reason)


SessionFactory = Callable[[StarletteTransport, WebSocket], Session]


async def handle_stream(
    ws: WebSocket,
    make_session: SessionFactory,
    calls: CallRegistry,
    resumes: ResumeRegistry | None = None,
) -> None:
    """Run one Plivo stream from accept to close. Nothing in here may raise to the server.

    A socket lost mid-call is handed to ``resumes``, which keeps the call resumable for Plivo's
    reconnect instead of ending it."""
    await ws.accept()
    if not calls.has_room():
        calls.refused += 1
        log.warning("call_refused", reason="max_calls", active=len(calls))
        await ws.close(CloseCode.TRY_AGAIN_LATER, f"service at capacity ({calls.max_calls} calls)")
        return
    session = make_session(StarletteTransport(ws), ws)
    calls.add(session)
    close_code: int | None = None
    try:
        while not session.ended.is_set():
            message: MutableMapping[str, Any] = await ws.receive()
            if message["type"] == "websocket.disconnect":
                close_code = message.get("code", CloseCode.NORMAL)
                break
            text = message.get("text")
            await session.handle_message(text if text is not None else message.get("bytes") or b"")
    except WebSocketDisconnect as exc:
        close_code = exc.code
    except Exception as exc:  # one call's fault must never reach the server
        session.log.error("session_crashed", error=repr(exc)[:300])
        await session.end("internal_error", code=CloseCode.INTERNAL_ERROR)
    finally:
        try:
            if resumes is not None:
                await resumes.closed(session, close_code)
        except Exception as exc:  # resuming is an aid: never let it break ending the call
            session.log.error("suspend_failed", error=repr(exc)[:300])
        await session.end(session.end_reason or "socket_closed")
        calls.remove(session)
