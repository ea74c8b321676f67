"""The ``/stream`` WebSocket: hands each Plivo connection to its own ``Session``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voicebridge.plivo.errors import ProtocolError
from voicebridge.plivo.events import StartEvent, parse_event
from voicebridge.server.call_legs import Admission, CallLegs, Leg
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


class CallLive(Exception):
    """A ``start`` for a call whose leg is live elsewhere, without the proof to take it over."""

    def __init__(self) -> None:
        super().__init__("call is live on another stream")


async def handle_stream(
    ws: WebSocket,
    make_session: SessionFactory,
    calls: CallRegistry,
    guard: StreamGuard | None = None,
    resumes: ResumeRegistry | None = None,
    legs: CallLegs | None = None,
) -> None:
    """Run one Plivo stream from accept to close. Nothing in here may raise to the server.

    With a ``guard``, a handshake without an admissible stream token is refused with HTTP 403
    before anything else, and a ``start`` naming another call than the token's closes with 1008.
    With ``legs``, a ``start`` for a call whose leg is live closes with 1008 unless it proves to
    be the call's retry (``voicebridge.server.call_legs``). A socket lost mid-call is handed to
    ``resumes``, which keeps the call resumable for Plivo's reconnect instead of ending it.
    """
    ticket: StreamTicket | None = None
    if guard is not None:
        try:
            ticket = guard.admit(ws)
        except StreamRefused as refused:
            await refuse_handshake(ws, refused.reason)
            return
    session: Session | None = None
    peer_code: int | None = None
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
        calls.add(session)
        peer_code = await _run(ws, session, _Admitter(calls, ticket, resumes, legs))
    finally:
        if session is not None:
            calls.remove(session)
        if ticket is not None:
            ticket.close(end_reason=session.end_reason if session else None, peer_code=peer_code)


class _Admitter:
    """Who may carry the call a ``start`` names: the token's call, one live leg per call."""

    def __init__(
        self,
        calls: CallRegistry,
        ticket: StreamTicket | None,
        resumes: ResumeRegistry | None,
        legs: CallLegs | None,
    ) -> None:
        self.calls = calls
        self.ticket = ticket
        self.resumes = resumes
        self.legs = legs
        self.leg: Leg | None = None
        self.started = False

    async def check(self, session: Session, message: str | bytes) -> None:
        """Before the call starts: raise StreamRefused or CallLive for a ``start`` that may not
        carry its call; take the call over from a dead leg when the newcomer proved its claim."""
        try:
            event = parse_event(message)
        except ProtocolError:
            return  # the session reports bad input; this check is only about whose call it is
        if not isinstance(event, StartEvent):
            return
        self.started = True
        if self.ticket is not None:
            self.ticket.check_start(event)
        if self.legs is None:
            return
        jti = self.ticket.token.jti if self.ticket is not None else None
        leg = Leg(event.call_id, session, jti)
        admission, old = self.legs.admit(leg)
        if admission is Admission.REFUSED:
            log.warning(
                "stream_refused",
                reason="call_live",
                call_id=event.call_id[:64],
                with_token=jti is not None,
                live_leg_quiet_s=round(self.legs.quiet_for(old), 3) if old else None,
            )
            raise CallLive()
        self.leg = leg
        if self.ticket is not None:
            self.ticket.leg_admitted = True
        if old is not None:  # Plivo's retry after a silent drop: the dead leg goes now
            old.session.log.info(
                "stream_taken_over", quiet_s=round(self.legs.quiet_for(old), 3), reason="retry"
            )
            self.calls.remove(old.session)
            if self.resumes is not None and self.resumes.enabled:
                await self.resumes.suspend(old.session)
            else:
                await old.session.end(
                    "stream_replaced", code=CloseCode.GOING_AWAY, close_reason="stream replaced"
                )

    def done(self) -> None:
        if self.leg is not None and self.legs is not None:
            self.legs.remove(self.leg)


async def _run(ws: WebSocket, session: Session, admit: _Admitter) -> int | None:
    """Feed the session until either side ends the call; the peer's close code if it closed."""
    peer_code: int | None = None
    resumes = admit.resumes
    heard_at = admit.legs.time_fn if admit.legs is not None else time.monotonic
    try:
        while not session.ended.is_set():
            message: MutableMapping[str, Any] = await ws.receive()
            if message["type"] == "websocket.disconnect":
                peer_code = message.get("code", CloseCode.NORMAL)
                break
            text = message.get("text")
            data = text if text is not None else message.get("bytes") or b""
            if admit.leg is not None:
                admit.leg.heard = heard_at()  # the leg is alive (see call_legs)
            elif not admit.started:
                await admit.check(session, data)
            await session.handle_message(data)
    except WebSocketDisconnect as exc:
        peer_code = exc.code
    except StreamRefused as refused:
        await session.end(
            f"stream_token_{refused.reason}",
            code=CloseCode.POLICY_VIOLATION,
            close_reason=str(refused),
        )
    except CallLive as refused:
        await session.end(
            "call_already_live", code=CloseCode.POLICY_VIOLATION, close_reason=str(refused)
        )
    except Exception as exc:  # one call's fault must never reach the server
        session.log.error("session_crashed", error=repr(exc)[:300])
        await session.end("internal_error", code=CloseCode.INTERNAL_ERROR)
    finally:
        admit.done()
        try:
            if resumes is not None:
                await resumes.closed(session, peer_code)
        except Exception as exc:  # resuming is an aid: never let it break ending the call
            session.log.error("suspend_failed", error=repr(exc)[:300])
        await session.end(session.end_reason or "socket_closed")
    return peer_code
