"""The call's log lines: one structured line per ``CallEvent``, bound to the call.

A subscriber like any other: nothing in the call logs by hand. Each event class says its level;
values that came off the wire are bounded (``voicebridge.observe.bounded``) so no caller can
make a line large. Every line after ``start`` carries ``call_id`` and ``stream_id``.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

from voicebridge.call.events import BargeIn, CallAnswered, CallEvent, CallFinished, TurnCompleted
from voicebridge.observe.bounded import bounded

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class CallLog:
    """Writes a call's events to structlog."""

    def __init__(self, logger: Any = None) -> None:
        self.log = logger or structlog.get_logger("voicebridge.session")

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, CallAnswered):
            self.log = self.log.bind(call_id=event.call_id, stream_id=event.stream_id)
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
            )
        else:
            write(event.kind, **{k: bounded(v) for k, v in event.fields().items()})
