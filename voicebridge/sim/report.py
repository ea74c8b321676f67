"""What a simulated call produced, as plain dataclasses that round-trip through JSON.

The simulator fills a :class:`CallReport`; the JSON file is for machines (CI gates on
:meth:`CallReport.summary`), the HTML report (:mod:`voicebridge.sim.html_report`) for people.
All times are seconds on the caller's stream clock, starting at the ``start`` event.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Final, Self

import numpy as np

MARKER_KINDS: Final = frozenset(
    {
        "caller_speech_start",
        "caller_speech_end",
        "transcript",
        "agent_text",
        "checkpoint",
        "played",
        "clear",
        "barge_in",
        "dtmf",
        "hangup",
        "close",
    }
)
"""Marker kinds the HTML report knows how to draw; others are drawn as generic events."""


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Keep only ``cls``'s fields, so reports written by a newer version still load."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass
class TurnReport:
    """One caller utterance and the agent's answer to it.

    ``latency_s`` is the first agent audio played after the caller's end of speech minus that
    end of speech: the silence the caller actually sat through. ``index`` is the row's position
    in the report; ``agent_turns`` are the call's own turn numbers (those of its events and its
    checkpoints ``turn-N/piece-K``) of the agent replies in the row, the numbers people read.
    """

    index: int
    caller_said: str | None  # the script's text for the utterance, when known
    caller_speech_start_s: float | None
    caller_speech_end_s: float | None
    transcript: str | None  # what the pipeline's STT made of it
    agent_text: list[str] = field(default_factory=list)
    heard_text: str = ""  # agent text whose audio reached the caller before any clear
    first_audio_sent_s: float | None = None
    first_audio_played_s: float | None = None
    latency_s: float | None = None
    interrupted: bool = False
    # The service's own measurement of its reply (stt, dialogue, tts, send, playout start...)
    timing: dict[str, Any] = field(default_factory=dict)
    agent_turns: list[int] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        values = _known(cls, data)
        values["agent_text"] = list(values.get("agent_text") or [])
        values["agent_turns"] = [int(t) for t in values.get("agent_turns") or []]
        return cls(**values)


@dataclass
class CheckpointReport:
    """A ``checkpoint`` the agent sent: when Plivo acknowledged it, or that a clear dropped it."""

    name: str
    sent_s: float
    acked_s: float | None = None
    cleared: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls(**_known(cls, data))


@dataclass
class MarkerEvent:
    """A point on the call's timeline; ``kind`` is one of :data:`MARKER_KINDS`, ``turn`` the
    call's turn number of the agent reply it belongs to, when it belongs to one."""

    t: float
    kind: str
    text: str = ""
    turn: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return cls(**_known(cls, data))


def latency_stats(values: list[float]) -> dict[str, float | None]:
    """p50/p95/mean/max (linear-interpolated percentiles) and n; all None but n when empty."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"p50": None, "p95": None, "mean": None, "max": None, "n": 0}
    p50, p95 = np.percentile(arr, [50, 95], method="linear")
    return {
        "p50": float(p50),
        "p95": float(p95),
        "mean": float(arr.mean()),
        "max": float(arr.max()),
        "n": int(arr.size),
    }


def _json_default(value: Any) -> Any:
    """Make numpy scalars/arrays and other stray objects in ``history``/``events`` writable."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


@dataclass
class CallReport:
    """Everything worth keeping from one simulated call, minus the audio (that goes to a WAV)."""

    pipeline: str
    codec: str
    sample_rate: int
    mode: str  # how the caller was paced, e.g. "realtime" or "fast"
    duration_s: float
    turns: list[TurnReport] = field(default_factory=list)
    checkpoints: list[CheckpointReport] = field(default_factory=list)
    markers: list[MarkerEvent] = field(default_factory=list)
    history: list[dict[str, object]] = field(default_factory=list)  # the agent's conversation
    events: list[dict[str, object]] = field(default_factory=list)  # wire events, summarised
    barge_ins: list[dict[str, object]] = field(default_factory=list)
    closed_by: str = ""  # "caller" or "agent"
    close_code: int | None = None
    close_reason: str = ""
    protocol_errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures a CI gate or a reader checks first."""
        stats = latency_stats([t.latency_s for t in self.turns if t.latency_s is not None])
        return {
            "turns": len(self.turns),
            "answered_turns": stats["n"],
            "interrupted_turns": sum(1 for t in self.turns if t.interrupted),
            "latency_p50_s": stats["p50"],
            "latency_p95_s": stats["p95"],
            "latency_mean_s": stats["mean"],
            "latency_max_s": stats["max"],
            "barge_ins": len(self.barge_ins),
            "checkpoints_sent": len(self.checkpoints),
            "checkpoints_acked": sum(1 for c in self.checkpoints if c.acked_s is not None),
            "checkpoints_cleared": sum(1 for c in self.checkpoints if c.cleared),
            "protocol_errors": len(self.protocol_errors),
        }

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain data, plus a derived ``summary`` (ignored by :meth:`from_dict`)."""
        data = dataclasses.asdict(self)
        data["summary"] = self.summary()
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=_json_default)

    def write_json(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())
            f.write("\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        values = _known(cls, data)
        values["turns"] = [TurnReport.from_dict(t) for t in values.get("turns") or []]
        values["checkpoints"] = [
            CheckpointReport.from_dict(c) for c in values.get("checkpoints") or []
        ]
        values["markers"] = [MarkerEvent.from_dict(m) for m in values.get("markers") or []]
        for name in ("history", "events", "barge_ins", "protocol_errors"):
            values[name] = list(values.get(name) or [])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.from_dict(json.loads(text))
