"""The two things a ``Session`` is given from outside: its socket and where its state goes.

The server, the simulator and the tests each plug their own in, so all of them drive the same
session code.
"""

from __future__ import annotations

from typing import Any, Protocol

from voicebridge.call.snapshot import CallSnapshot

NORMAL_CLOSE = 1000


class Transport(Protocol):
    """How a session reaches its socket."""

    async def send_text(self, text: str) -> None: ...

    async def close(self, code: int = NORMAL_CLOSE, reason: str = "") -> None: ...


class StateHooks(Protocol):
    """Where a session's resumable state goes (``voicebridge.server.resume_registry``).
    ``session`` is the ``voicebridge.session.Session`` (not named here: it imports this)."""

    async def on_start(self, session: Any, call_id: str) -> CallSnapshot | None:
        """A stream started: the snapshot of the dropped stream it resumes, if any."""
        ...

    def changed(self, session: Any) -> None:
        """Something worth saving happened (a piece heard, a turn ended, the caller spoke)."""
        ...
