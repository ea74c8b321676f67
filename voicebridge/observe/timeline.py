"""A call's events kept in order: what the simulator's reports and tests read."""

from __future__ import annotations

from typing import Any

from voicebridge.call.events import CallEvent, CallFinished


class EventTimeline:
    """Keeps the timeline events of one call (not the media-rate ones), at most ``max_events``:
    a peer makes events as fast as it sends messages, so past that only the call's last event
    is kept and the rest are counted (``dropped``)."""

    def __init__(self, max_events: int = 50_000) -> None:
        self.events: list[CallEvent] = []
        self.max_events = max_events
        self.dropped = 0

    def on_event(self, event: CallEvent) -> None:
        if len(self.events) >= self.max_events and not isinstance(event, CallFinished):
            self.dropped += 1
            return
        self.events.append(event)

    def of(self, kind: type[CallEvent]) -> list[Any]:
        """The events of one class, in order."""
        return [event for event in self.events if isinstance(event, kind)]

    def dicts(self) -> list[dict[str, Any]]:
        """The events in their JSON form (``CallEvent.as_dict``)."""
        return [event.as_dict() for event in self.events]
