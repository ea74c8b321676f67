"""One call's figures for the list of calls: outcome, duration, turns, latency, barge-ins.

Built event by event from the events' JSON form (``CallEvent.as_dict``), so a live call's row
costs nothing to read and a finished call's event log on disk gives the same row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from voicebridge.sim.report import latency_stats

MAX_LATENCIES: Final = 1000  # a call with more turns keeps its first ones' latencies


@dataclass
class CallSummary:
    """What the list shows of a call. ``outcome`` is its end reason; None while it runs."""

    duration_s: float = 0.0
    agent_turns: set[int] = field(default_factory=set)
    caller_turns: int = 0
    latencies: list[float] = field(default_factory=list)
    barge_ins: int = 0
    outcome: str | None = None

    def on_event(self, event: dict[str, Any]) -> None:
        t = event.get("t")
        if isinstance(t, int | float):
            self.duration_s = max(self.duration_s, float(t))
        kind = event.get("kind")
        if kind == "agent_text" and isinstance(event.get("turn"), int):
            if len(self.agent_turns) < MAX_LATENCIES:
                self.agent_turns.add(event["turn"])
        elif kind == "caller_said":
            self.caller_turns += 1
        elif kind == "turn_played":
            latency = event.get("latency_s")
            if isinstance(latency, int | float) and len(self.latencies) < MAX_LATENCIES:
                self.latencies.append(float(latency))
        elif kind == "barge_in":
            self.barge_ins += 1
        elif kind == "call_ended":
            self.outcome = str(event.get("reason") or "ended")[:64]

    @property
    def turns(self) -> int:
        return len(self.agent_turns)

    def latency(self) -> dict[str, float | None]:
        """p50 and max of the service's own turn latencies (caller's end of speech to the first
        agent audio played)."""
        stats = latency_stats(self.latencies)
        return {"p50": stats["p50"], "max": stats["max"]}


def summarize(events: list[dict[str, Any]]) -> CallSummary:
    summary = CallSummary()
    for event in events:
        summary.on_event(event)
    return summary
