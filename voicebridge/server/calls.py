"""The calls a service is holding right now, and whether it takes another."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from voicebridge.session import Session


class CallRegistry:
    """Counts and finds live sessions; the service refuses calls past ``max_calls`` and while
    it drains for shutdown."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self._sessions: set[Session] = set()
        self.total = 0
        self.refused = 0
        self.draining = False
        self.on_refused: Callable[[str], None] | None = None  # metrics hook: the reason
        self.on_change: Callable[[], None] | None = None  # metrics hook: a call came or went
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._sessions)

    def has_room(self) -> bool:
        return len(self._sessions) < self.max_calls

    def refusal(self) -> tuple[str, str] | None:
        """Why a new call would be refused now, as (reason, close text); None: take it."""
        if self.draining:
            return "draining", "draining: the service is shutting down, call again"
        if not self.has_room():
            return "max_calls", f"service at capacity ({self.max_calls} calls)"
        return None

    def refuse(self, reason: str) -> None:
        self.refused += 1
        if self.on_refused is not None:
            self.on_refused(reason)

    def add(self, session: Session) -> None:
        self._sessions.add(session)
        self.total += 1
        self._empty.clear()
        if self.on_change is not None:
            self.on_change()

    def remove(self, session: Session) -> None:
        self._sessions.discard(session)
        if not self._sessions:
            self._empty.set()
        if self.on_change is not None:
            self.on_change()

    def sessions(self) -> list[Session]:
        return list(self._sessions)

    async def wait_empty(self) -> None:
        """Return once no call is live."""
        await self._empty.wait()
