"""Ending and handing off calls: what a session does once the agent says goodbye or transfer.

A stream can only stop audio; hanging up or transferring the call needs Plivo's REST API.
``CallControl`` is that seam: the service gives each session one built from the Plivo
credentials in the environment, tests give a fake, and without credentials the session simply
closes the stream (with ``keepCallAlive="true"`` Plivo then ends the call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from voicebridge.frames import Hangup, Transfer

if TYPE_CHECKING:
    from voicebridge.call.state import CallLimits
    from voicebridge.telephony.plivo_rest import PlivoRest


class CallControl(Protocol):
    """The REST side of a call."""

    async def hangup(self, call_id: str) -> str:
        """End the call; returns "hung_up" or "already_ended"."""
        ...

    async def transfer(self, call_id: str, to: str) -> None:
        """Hand the call to ``to`` (a number or a sip: URI)."""
        ...


class PlivoCallControl:
    """``CallControl`` over Plivo's REST API: hang-up is a DELETE of the call, a transfer points
    the caller's leg at our ``/transfer`` XML, which dials the target."""

    def __init__(self, rest: PlivoRest, transfer_url: Callable[[str], str]) -> None:
        self.rest = rest
        self._transfer_url = transfer_url

    async def hangup(self, call_id: str) -> str:
        return await self.rest.hangup(call_id)

    async def transfer(self, call_id: str, to: str) -> None:
        await self.rest.transfer(call_id, self._transfer_url(to))


async def run_control(
    control: CallControl, call_id: str, action: Hangup | Transfer, limits: CallLimits
) -> tuple[str | None, str | None]:
    """Hang up or transfer, bounded by ``limits.hangup_attempt_s``: ``(outcome, None)``, or
    ``(None, error)`` when it failed (the stream's close still ends the call)."""
    try:
        if isinstance(action, Transfer):
            await asyncio.wait_for(control.transfer(call_id, action.to), limits.hangup_attempt_s)
            return "transferred", None
        return await asyncio.wait_for(control.hangup(call_id), limits.hangup_attempt_s), None
    except Exception as exc:
        return None, str(exc) or repr(exc)
