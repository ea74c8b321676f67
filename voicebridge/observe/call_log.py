"""The call's log lines: one structured line per ``CallEvent``, bound to the call.

A subscriber like any other: nothing in the call logs by hand. Each event class says its level;
values that came off the wire are bounded (``voicebridge.observe.bounded``) so no caller can
make a line large. Every line after ``start`` carries ``call_id`` and ``stream_id``.

Events a caller can repeat at will (malformed messages, unknown events, stray acks) are written
once per kind and reason, then only counted: ``repeats_suppressed`` sums them up when the call
ends. This is done here, not in the core, because only the log needs it: metrics, the event log
and other subscribers still see every event.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

from voicebridge.call.events import (
    AckIgnored,
    BadMessage,
    BargeIn,
    CallAnswered,
    CallEvent,
    CallFinished,
    ClearAcknowledged,
    DuplicateStart,
    PlivoReportedError,
    TurnCompleted,
    UnknownEventIgnored,
)
from voicebridge.observe.bounded import bounded

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


# Events the far end can send again and again; written once per key, then counted.
_REPEATABLE = (
    AckIgnored,
    BadMessage,
    ClearAcknowledged,
    DuplicateStart,
    PlivoReportedError,
    UnknownEventIgnored,
)


def _repeat_key(event: CallEvent) -> str:
    """The kind, and the reason where ours is a fixed slug (never text from the wire)."""
    if isinstance(event, BadMessage | AckIgnored) and event.reason:
        return f"{event.kind}:{event.reason[:48]}"
    if isinstance(event, PlivoReportedError):
        return f"{event.kind}:{event.plivo_event[:32]}"
    return event.kind


class CallLog:
    """Writes a call's events to structlog."""

    def __init__(self, logger: Any = None) -> None:
        self.log = logger or structlog.get_logger("voicebridge.session")
        self.repeats: dict[str, int] = {}  # key -> occurrences after the first (not written)

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, CallAnswered):
            self.log = self.log.bind(call_id=event.call_id, stream_id=event.stream_id)
        elif isinstance(event, _REPEATABLE):
            key = _repeat_key(event)
            seen = self.repeats.get(key)
            self.repeats[key] = 0 if seen is None else seen + 1
            if seen is not None:
                return
        elif isinstance(event, CallFinished):
            suppressed = {key: n for key, n in self.repeats.items() if n}
            if suppressed:
                self.log.warning("repeats_suppressed", counts=bounded(suppressed))
        enabled = getattr(self.log, "is_enabled_for", None)  # structlog's filtering loggers
        if enabled is not None and not enabled(_LEVELS[event.level]):
            return  # not written at this level: do not build the line
        write = getattr(self.log, event.level)
        if isinstance(event, TurnCompleted):
            write(event.kind, **event.timing)
        elif isinstance(event, CallFinished):
            write(event.kind, reason=event.reason, **event.stats)
        elif isinstance(event, BargeIn):
            write(
                event.kind,
                cause=event.cause,
                stale_through=event.stale_through,
                cleared_pieces=len(event.cleared),
                heard=bounded(event.heard),
                reaction_s=None if event.reaction_s is None else round(event.reaction_s, 3),
                latency_s=event.timing.get("latency_s"),
            )
        else:
            write(event.kind, **{k: bounded(v) for k, v in event.fields().items()})
