"""What a ``/stream`` socket must get past before it carries a call.

Until its ``start`` a socket is *pending*: it has a deadline and is no call yet (it never takes
a ``max_calls`` slot). Its ``start`` must name the call its stream token was minted for, find a
call slot free, and find the call's leg free: a call whose leg is live is refused unless the
newcomer carries the call's own token and the live leg went quiet (then it is Plivo's retry
after a silent drop, and takes the call over at once).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

import structlog
from starlette.websockets import WebSocket

from voicebridge.observe.logs import bind_call
from voicebridge.plivo.errors import ProtocolError
from voicebridge.plivo.events import StartEvent, parse_event
from voicebridge.server.admission import PendingHold, PendingStreams
from voicebridge.server.call_legs import Admission, CallLegs, Leg
from voicebridge.server.calls import CallRegistry
from voicebridge.server.resume_registry import ResumeRegistry
from voicebridge.server.security import StreamTicket
from voicebridge.session import CloseCode, Session

log = structlog.get_logger("voicebridge.server")


class CallLive(Exception):
    """A ``start`` for a call whose leg is live elsewhere, without the proof to take it over."""

    def __init__(self) -> None:
        super().__init__("call is live on another stream")


class StreamGate:
    """One socket's way from handshake to call (see the module docstring)."""

    def __init__(
        self,
        calls: CallRegistry,
        session: Session,
        *,
        ticket: StreamTicket | None,
        resumes: ResumeRegistry | None,
        legs: CallLegs | None,
        hold: PendingHold | None,
        pending: PendingStreams | None,
    ) -> None:
        self.calls, self.session, self.ticket = calls, session, ticket
        self.resumes, self.legs, self.hold, self.pending = resumes, legs, hold, pending
        self.leg: Leg | None = None
        self.started = False
        self.timeout_s = pending.limits.start_timeout_s if pending is not None else None
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + self.timeout_s if self.timeout_s is not None else None
        self.heard_at = legs.time_fn if legs is not None else time.monotonic

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

    async def admits(self, message: str | bytes) -> bool:
        """Called for each message: True to hand it to the session. Before the call starts, a
        ``start`` must pass the token, a call slot and the one-live-leg rule (StreamRefused or
        CallLive for a start that may not carry its call; False when the service is full);
        anything else goes to the session, which answers bad input itself."""
        if self.leg is not None:
            self.leg.heard = self.heard_at()  # the leg is alive (see call_legs)
        if self.started:
            return True
        try:
            event = parse_event(message)
        except ProtocolError:
            return True
        if not isinstance(event, StartEvent):
            return True
        if self.ticket is not None:
            self.ticket.check_start(event)
        refusal = self.calls.refusal()
        if refusal is not None:
            why, close_text = refusal
            self.calls.refuse(why)
            self.session.log.warning("call_refused", reason=why, active=len(self.calls))
            await self.session.end(why, code=CloseCode.TRY_AGAIN_LATER, close_reason=close_text)
            return False
        await self._claim_leg(event)
        self.started = True
        # This connection's task is the call's now: its stdlib lines (and those of the tasks and
        # threads the call starts) carry the ids too; ``handle_stream`` unbinds them at the end.
        bind_call(event.call_id, event.stream_id)
        self.calls.add(self.session)
        if self.hold is not None:
            self.hold.release()
        return True

    async def _claim_leg(self, event: StartEvent) -> None:
        if self.legs is None:
            return
        jti = self.ticket.token.jti if self.ticket is not None else None
        leg = Leg(event.call_id, self.session, jti)
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
        if self.hold is not None:
            self.hold.release()
        if self.leg is not None and self.legs is not None:
            self.legs.remove(self.leg)
