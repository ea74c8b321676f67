"""The ``/stream`` WebSocket: hands each Plivo connection to its own ``Session``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voicebridge.observe.logs import unbind_call
from voicebridge.server.admission import PendingStreams, peer_of, refuse_pending
from voicebridge.server.call_legs import CallLegs
from voicebridge.server.calls import CallRegistry
from voicebridge.server.resume_registry import ResumeRegistry
from voicebridge.server.security import StreamGuard, StreamRefused, StreamTicket, refuse_handshake
from voicebridge.server.stream_gate import CallLive, StreamGate
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
    legs: CallLegs | None = None,
    pending: PendingStreams | None = None,
) -> None:
    """Run one Plivo stream from accept to close. Nothing in here may raise to the server.

    Past the caps on ``pending`` sockets (not yet sent ``start``) the handshake is refused with
    HTTP 503. With a ``guard``, a handshake without an admissible stream token is refused with
    HTTP 403 before anything else. Then the socket must get past its ``StreamGate`` (a start
    deadline, the token's call, a call slot, one live leg per call). A socket lost mid-call is
    handed to ``resumes``, which keeps the call resumable for Plivo's reconnect.
    """
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
    hold = pending.hold(peer) if pending is not None else None
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
        gate = StreamGate(
            calls, session, ticket=ticket, resumes=resumes, legs=legs, hold=hold, pending=pending
        )
        peer_code = await _run(ws, session, gate)
    finally:
        if hold is not None:
            hold.release()
        if session is not None:
            calls.remove(session)
        if ticket is not None:
            ticket.close(end_reason=session.end_reason if session else None, peer_code=peer_code)
        unbind_call()  # the session bound its ids in this connection's task


async def _run(ws: WebSocket, session: Session, gate: StreamGate) -> int | None:
    """Feed the session until either side ends the call; the peer's close code if it closed."""
    peer_code: int | None = None
    resumes = gate.resumes
    try:
        while not session.ended.is_set():
            message = await gate.receive(ws)
            if message is None:
                await gate.timed_out()
                break
            if message["type"] == "websocket.disconnect":
                peer_code = message.get("code", CloseCode.NORMAL)
                break
            text = message.get("text")
            data = text if text is not None else message.get("bytes") or b""
            if not await gate.admits(data):
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
    except CallLive as refused:
        await session.end(
            "call_already_live", code=CloseCode.POLICY_VIOLATION, close_reason=str(refused)
        )
    except Exception as exc:  # one call's fault must never reach the server
        session.log.error("session_crashed", error=repr(exc)[:300])
        await session.end("internal_error", code=CloseCode.INTERNAL_ERROR)
    finally:
        gate.done()
        try:
            if resumes is not None:
                await resumes.closed(session, peer_code)
        except Exception as exc:  # resuming is an aid: never let it break ending the call
            session.log.error("suspend_failed", error=repr(exc)[:300])
        await session.end(session.end_reason or "socket_closed")
    return peer_code
