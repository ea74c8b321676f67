"""The calls a service is holding right now."""

from __future__ import annotations

from voicebridge.session import Session


class CallRegistry:
    """Counts and finds live sessions; the service refuses calls past ``max_calls``."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self._sessions: set[Session] = set()
        self.total = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def has_room(self) -> bool:
        return len(self._sessions) < self.max_calls

    def add(self, session: Session) -> None:
        self._sessions.add(session)
        self.total += 1

    def remove(self, session: Session) -> None:
        self._sessions.discard(session)

    def sessions(self) -> list[Session]:
        return list(self._sessions)
