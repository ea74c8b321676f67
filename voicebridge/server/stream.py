"""The ``/stream`` WebSocket: hands each Plivo connection to its own ``Session``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voicebridge.plivo.errors import ProtocolError
from voicebridge.plivo.events import StartEvent, parse_event
from voicebridge.server.admission import PendingHold, PendingStreams, peer_of, refuse_pending
from voicebridge.server.calls import CallRegistry
from voicebridge.server.resume_registry import ResumeRegistry
from voicebridge.server.security import StreamGuard, StreamRefused, StreamTicket, refuse_handshake
from voicebridge.session import CloseCode, Session

log = structlog.get_logger("voicebridge.server")


class StarletteTransport:
    """A session's view of a Starlette WebSocket."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send_text(self, text: str) -> None:
        """Send, or drop the message when the peer is gone: the reader learns of the close and
        ends or suspends the call; a stage sending into it must not fail for that."""
        if self._ws.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(WebSocketDisconnect, OSError):
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
    guard: StreamGuard | None = None,
    resumes: ResumeRegistry | None = None,
    pending: PendingStreams | None = None,
) -> None:
    """Run one Plivo stream from accept to close. Nothing in here may raise to the server.

    Past the caps on ``pending`` sockets (not yet sent ``start``) the handshake is refused with
    HTTP 503. With a ``guard``, a handshake without an admissible stream token is refused with
    HTTP 403 before anything else, and a ``start`` naming another call than the token's closes
    with 1008. The socket counts as a call only once its ``start`` is taken (``calls``), and is
    closed with 1008 when that has not happened within ``pending``'s start deadline. A socket
    lost mid-call is handed to ``resumes``, which keeps the call resumable for Plivo's reconnect
    instead of ending it.
    """
    hold: PendingHold | None = None
    if pending is not None:
        peer = peer_of(ws)
        why = pending.refusal(peer)
        if why is not None:
            log.warning("stream_refused", reason=why, peer=peer, pending=len(pending))
            await refuse_pending(ws, why)
            return
    ticket: StreamTicket | None = None
    if guard is not None:
        try:
            ticket = guard.admit(ws)
        except StreamRefused as refused:
            await refuse_handshake(ws, refused.reason)
            return
    session: Session | None = None
    peer_code: int | None = None
    if pending is not None:
        hold = pending.hold(peer)
    try:
        await ws.accept()
        refusal = calls.refusal()
        if refusal is not None:
            why, close_text = refusal
            calls.refuse(why)
            log.warning("call_refused", reason=why, active=len(calls))
            await ws.close(CloseCode.TRY_AGAIN_LATER, close_text)
            return
        session = make_session(StarletteTransport(ws), ws)
        admit = _Admit(calls, session, hold, pending)
        peer_code = await _run(ws, session, ticket, resumes, admit)
    finally:
        if hold is not None:
            hold.release()
        if session is not None:
            calls.remove(session)
        if ticket is not None:
            ticket.close(end_reason=session.end_reason if session else None, peer_code=peer_code)


class _Admit:
    """Until its ``start``, a socket is pending: it has a deadline and is no call yet."""

    def __init__(
        self,
        calls: CallRegistry,
        session: Session,
        hold: PendingHold | None,
        pending: PendingStreams | None,
    ) -> None:
        self.calls, self.session, self.hold, self.pending = calls, session, hold, pending
        self.started = False
        self.timeout_s = pending.limits.start_timeout_s if pending is not None else None
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + self.timeout_s if self.timeout_s is not None else None

    async def receive(self, ws: WebSocket) -> MutableMapping[str, Any] | None:
        """The next message; None when the start deadline passed first."""
        if self.started or self.deadline is None:
            return await ws.receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                return await ws.receive()
        except TimeoutError:
            return None

    async def timed_out(self) -> None:
        if self.pending is not None:
            self.pending.timed_out()
        self.session.log.info("stream_refused", reason="start_timeout", after_s=self.timeout_s)
        await self.session.end(
            "no_start",
            code=CloseCode.POLICY_VIOLATION,
            close_reason=f"no start within {self.timeout_s:g} s",
        )

    async def admits(self, data: str | bytes) -> bool:
        """Before the call starts: a ``start`` takes a call slot, or is refused when there is
        none (1013); anything else goes to the session, which answers bad input itself."""
        try:
            is_start = isinstance(parse_event(data), StartEvent)
        except ProtocolError:
            return True
        if not is_start:
            return True
        refusal = self.calls.refusal()
        if refusal is not None:
            why, close_text = refusal
            self.calls.refuse(why)
            self.session.log.warning("call_refused", reason=why, active=len(self.calls))
            await self.session.end(why, code=CloseCode.TRY_AGAIN_LATER, close_reason=close_text)
            return False
        self.started = True
        self.calls.add(self.session)
        if self.hold is not None:
            self.hold.release()
        return True


async def _run(
    ws: WebSocket,
    session: Session,
    ticket: StreamTicket | None,
    resumes: ResumeRegistry | None,
    admit: _Admit,
) -> int | None:
    """Feed the session until either side ends the call; the peer's close code if it closed."""
    peer_code: int | None = None
    try:
        while not session.ended.is_set():
            message = await admit.receive(ws)
            if message is None:
                await admit.timed_out()
                break
            if message["type"] == "websocket.disconnect":
                peer_code = message.get("code", CloseCode.NORMAL)
                break
            text = message.get("text")
            data = text if text is not None else message.get("bytes") or b""
            if ticket is not None and not ticket.bound:
                ticket.check_message(data)
            if not admit.started and not await admit.admits(data):
                break
            await session.handle_message(data)
    except WebSocketDisconnect as exc:
        peer_code = exc.code
    except StreamRefused as refused:
        await session.end(
            f"stream_token_{refused.reason}",
            code=CloseCode.POLICY_VIOLATION,
            close_reason=str(refused),
        )
    except Exception as exc:  # one call's fault must never reach the server
        session.log.error("session_crashed", error=repr(exc)[:300])
        await session.end("internal_error", code=CloseCode.INTERNAL_ERROR)
    finally:
        try:
            if resumes is not None:
                await resumes.closed(session, peer_code)
        except Exception as exc:  # resuming is an aid: never let it break ending the call
            session.log.error("suspend_failed", error=repr(exc)[:300])
        await session.end(session.end_reason or "socket_closed")
    return peer_code
