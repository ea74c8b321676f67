"""Ending and handing off calls: what a session does once the agent says goodbye or transfer.

A stream can only stop audio; hanging up or transferring the call needs Plivo's REST API.
``CallControl`` is that seam: the service gives each session one built from the Plivo
credentials in the environment, tests give a fake, and without credentials the session simply
closes the stream (with ``keepCallAlive="true"`` Plivo then ends the call).
"""

from __future__ import annotations

from typing import Protocol


class CallControl(Protocol):
    """The REST side of a call."""

    async def hangup(self, call_id: str) -> str:
        """End the call; returns "hung_up" or "already_ended"."""
        ...

    async def transfer(self, call_id: str, to: str) -> None:
        """Hand the call to ``to`` (a number or a sip: URI)."""
        ...
