"""A call's events kept in order: what the simulator's reports and tests read."""

from __future__ import annotations

from typing import Any

from voicebridge.call.events import CallEvent


class EventTimeline:
    """Keeps every timeline event of one call (not the media-rate ones)."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    def on_event(self, event: CallEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[CallEvent]) -> list[Any]:
        """The events of one class, in order."""
        return [event for event in self.events if isinstance(event, kind)]

    def dicts(self) -> list[dict[str, Any]]:
        """The events in their JSON form (``CallEvent.as_dict``)."""
        return [event.as_dict() for event in self.events]
