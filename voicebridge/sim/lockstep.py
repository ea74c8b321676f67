"""Lockstep: a caller that runs as fast as the CPU allows yet on exact stream time.

Before each frame, a fast caller waits until the service's session has taken every frame sent,
its pipeline is at rest, and every message it sent has arrived. Waiting is event-driven: the
session, the pipeline and the caller each say when something changed (``Activity``), so a
busy machine only makes the call slower, never different, and nothing polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from voicebridge.session import Session


class SteppingCaller(Protocol):
    """What lockstep reads of a caller (``PlivoCaller`` and the tests' legs)."""

    frames_sent: int
    messages_received: int
    activity: asyncio.Event  # set whenever the caller receives a message


class SessionWatch:
    """The sessions a service made for this process's callers (give it as ``on_session``),
    and their lockstep."""

    def __init__(self) -> None:
        self.all: list[Session] = []
        self.changed = asyncio.Event()  # a session was made, or one of them moved on

    def __call__(self, session: Session) -> None:
        self.all.append(session)
        session.add_activity_listener(self.changed.set)
        self.changed.set()

    @property
    def session(self) -> Session | None:
        """The newest session."""
        return self.all[-1] if self.all else None

    async def lockstep(
        self,
        caller: SteppingCaller,
        find: Callable[[], Session | None] | None = None,
        *,
        timeout_s: float = 60.0,
    ) -> None:
        """Wait (at most ``timeout_s``) until ``find()``'s session (the newest by default) is
        in step with ``caller``, or over."""
        find = find or (lambda: self.session)
        await asyncio.wait_for(self._step(caller, find), timeout_s)

    async def _step(self, caller: SteppingCaller, find: Callable[[], Session | None]) -> None:
        while True:
            session = find()
            if session is None:
                if caller.frames_sent == 0:
                    return  # nothing sent yet: no session to wait for
            elif in_step(session, caller):
                return
            self.changed.clear()
            caller.activity.clear()
            waits: list[asyncio.Future[object]] = [
                asyncio.ensure_future(self.changed.wait()),
                asyncio.ensure_future(caller.activity.wait()),
            ]
            pipeline = session.pipeline if session is not None else None
            if pipeline is not None and not pipeline.idle:
                waits.append(asyncio.ensure_future(pipeline.wait_idle()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()


def in_step(session: Session, caller: SteppingCaller) -> bool:
    """The session took every frame, rests, and its messages arrived (or the call is over)."""
    if session.ended.is_set() or session.end_reason:
        return True
    pipeline = session.pipeline
    if pipeline is None:
        return False
    stats = session.core.stats
    return (
        stats.media >= caller.frames_sent
        and caller.messages_received >= stats.sent
        and pipeline.idle
    )
