"""Graceful drain: stop taking calls, let live ones finish, then end the rest politely.

A deploy or scale-down sends SIGTERM. Hanging up on callers mid-sentence is the worst outcome,
and taking new calls that will be cut off soon is the second worst. So draining:

1. marks the service as draining: ``/health`` answers 503 (load balancers stop routing here),
   ``/answer`` answers 503 (Plivo fails over to the number's fallback URL), and ``/stream``
   refuses new connections with close code 1013 (try again later);
2. waits until every live call has ended on its own, at most ``drain.deadline_s``;
3. ends each call still live: the agent says ``drain.goodbye`` (when its pipeline can speak),
   the call is hung up once that has played (at most ``drain.goodbye_timeout_s``), and the socket
   is closed with 1001 (going away).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog

from voicebridge.call.events import CallEvent
from voicebridge.config.service_settings import DrainSettings
from voicebridge.frames import Hangup
from voicebridge.server.calls import CallRegistry
from voicebridge.session import CloseCode, Session
from voicebridge.telephony.call_control import run_control

log = structlog.get_logger("voicebridge.server")


@dataclass(frozen=True, slots=True)
class DrainResult:
    finished: int  # calls live when the drain began that ended on their own
    wound_up: int  # calls ended by the drain at its deadline


class Drainer:
    """Runs one service's drain; ``run`` is idempotent (a second call awaits the first)."""

    def __init__(self, calls: CallRegistry, settings: DrainSettings) -> None:
        self.calls = calls
        self.settings = settings
        self._task: asyncio.Task[DrainResult] | None = None

    @property
    def draining(self) -> bool:
        return self.calls.draining

    def start(self, deadline_s: float | None = None) -> asyncio.Task[DrainResult]:
        """Begin draining (now, synchronously: no new call gets in after this returns)."""
        if self._task is None:
            self.calls.draining = True
            deadline = self.settings.deadline_s if deadline_s is None else deadline_s
            self._task = asyncio.get_running_loop().create_task(self._run(deadline), name="drain")
        return self._task

    async def run(self, deadline_s: float | None = None) -> DrainResult:
        return await asyncio.shield(self.start(deadline_s))

    async def stop_now(self) -> None:
        """Stop without waiting (a second SIGTERM): every live call is closed with 1001."""
        self.calls.draining = True
        sessions = self.calls.sessions()
        log.warning("calls_stopped", active_calls=len(sessions))
        await asyncio.gather(
            *(
                s.end("service_stopping", code=1001, close_reason="service stopping")
                for s in sessions
            ),
            return_exceptions=True,
        )

    async def _run(self, deadline_s: float) -> DrainResult:
        live = len(self.calls)
        log.info("drain_started", active_calls=live, deadline_s=deadline_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.calls.wait_empty(), deadline_s)
        remaining = self.calls.sessions()
        if remaining:
            log.warning("drain_deadline_reached", ending_calls=len(remaining))
            s = self.settings
            await asyncio.gather(
                *(
                    wind_up(
                        session,
                        "draining",
                        s.goodbye,
                        s.goodbye_timeout_s,
                        close_reason="service restarting: please call again",
                    )
                    for session in remaining
                ),
                return_exceptions=True,
            )
        result = DrainResult(finished=max(0, live - len(remaining)), wound_up=len(remaining))
        log.info("drain_complete", finished=result.finished, ended_by_drain=result.wound_up)
        return result


async def wind_up(
    session: Session, reason: str, goodbye: str | None, timeout_s: float, *, close_reason: str = ""
) -> None:
    """End a call politely because the service is going away: say ``goodbye`` if the pipeline
    can speak and wait (at most ``timeout_s``) until it has played, hang up, and close the
    socket with 1001 (going away)."""
    if session.core.ending:
        await session.ended.wait()
        return
    session.core.forget_pending_action()
    if goodbye and await session.say(goodbye):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.wait_played(session.core.turns.begun), timeout_s)
    ctx, control = session.core.ctx, session.call_control
    if control is not None and ctx is not None and not session.core.ending:
        outcome, error = await run_control(
            control, ctx.info.call_id, Hangup("service"), session.core.limits
        )
        for event in session.core.rest_hangup(outcome=outcome, error=error):
            if isinstance(event, CallEvent):
                session.bus.publish(event)
    await session.end(reason, code=CloseCode.GOING_AWAY, close_reason=close_reason or reason)
