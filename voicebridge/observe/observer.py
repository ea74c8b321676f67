"""What a call reports to the operator's side: metrics, recordings, event logs.

The session calls a ``CallObserver`` at the few moments operators care about. The base class
does nothing, so the session needs no knowledge of Prometheus or files, and a test or embedding
application can plug in its own. ``CallObservers`` fans one call's reports out to several.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from voicebridge.call.context import CallInfo
    from voicebridge.session import Session

log = structlog.get_logger("voicebridge.observe.observer")


class CallObserver:
    """Hooks a session calls; every one is optional. They must be cheap and must not raise
    (the media hooks run for every 20 ms frame)."""

    def call_started(self, info: CallInfo) -> None:
        """The stream's ``start`` arrived and the pipeline is running."""

    def caller_audio(self, payload: bytes, at_s: float) -> None:
        """Caller audio in the stream's codec, starting ``at_s`` seconds into the stream."""

    def agent_audio(self, payload: bytes, at_s: float) -> None:
        """Agent audio in the stream's codec, sent to Plivo at stream time ``at_s``."""

    def agent_cleared(self, at_s: float) -> None:
        """``clearAudio`` went out: agent audio not yet played is dropped."""

    def turn_completed(self, timing: dict[str, Any]) -> None:
        """A turn's last piece played; ``timing`` is ``TurnTiming.as_dict()``."""

    def barge_in(self, reaction_s: float | None, cause: str) -> None:
        """The agent was cut off; ``reaction_s`` runs from the caller's speech onset to the
        ``clearAudio`` (None when not caused by speech)."""

    def provider_error(self, stage: str, kind: str) -> None:
        """A provider call failed (``ProviderError``)."""

    def frames_dropped(self, reason: str, count: int) -> None:
        """Caller audio was thrown away (``reason``: why, e.g. ``backpressure``)."""

    async def call_ended(self, session: Session) -> None:
        """The call is over; ``session.end_reason`` says why. May write files."""


class CallObservers(CallObserver):
    """Several observers as one; a failing observer is logged and the others still run."""

    def __init__(self, observers: Sequence[CallObserver]) -> None:
        self.observers = list(observers)

    def _each(self, method: str, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(*args)
            except Exception as exc:  # an observer bug must not break the call
                log.error("observer_failed", observer=type(observer).__name__, error=repr(exc))

    def call_started(self, info: CallInfo) -> None:
        self._each("call_started", info)

    def caller_audio(self, payload: bytes, at_s: float) -> None:
        self._each("caller_audio", payload, at_s)

    def agent_audio(self, payload: bytes, at_s: float) -> None:
        self._each("agent_audio", payload, at_s)

    def agent_cleared(self, at_s: float) -> None:
        self._each("agent_cleared", at_s)

    def turn_completed(self, timing: dict[str, Any]) -> None:
        self._each("turn_completed", timing)

    def barge_in(self, reaction_s: float | None, cause: str) -> None:
        self._each("barge_in", reaction_s, cause)

    def provider_error(self, stage: str, kind: str) -> None:
        self._each("provider_error", stage, kind)

    def frames_dropped(self, reason: str, count: int) -> None:
        self._each("frames_dropped", reason, count)

    async def call_ended(self, session: Session) -> None:
        for observer in self.observers:
            try:
                await observer.call_ended(session)
            except Exception as exc:
                log.error("observer_failed", observer=type(observer).__name__, error=repr(exc))
