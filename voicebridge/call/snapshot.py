"""A call's resumable state as a small, versioned JSON document.

Only what the conversation needs to go on is kept: the history the caller actually heard, the
turn counters, the words of the pending reply the caller has not heard yet (as text: the audio
buffered at Plivo died with the socket, and text re-spoken from a word boundary works on any
worker), a hang-up or transfer that was waiting for that reply, the reprompt count and the call
time used, so limits keep counting across a reconnect. Audio is never stored: a snapshot is a few
kilobytes however long the reply.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SNAPSHOT_VERSION = 1


class SnapshotError(ValueError):
    """A stored snapshot that cannot be used (another version, a missing or mistyped field)."""


@dataclass(frozen=True, slots=True)
class HistoryItem:
    role: Literal["caller", "agent"]
    text: str
    turn: int | None = None
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class PendingReply:
    """What the caller has not heard yet of one agent reply: spoken again on resume."""

    turn: int  # the history entry (agent turn) the words belong to
    text: str  # the unheard remainder, starting at a word boundary


@dataclass(frozen=True, slots=True)
class PendingAction:
    """A hang-up or transfer the agent asked for, waiting for its last words to play."""

    kind: Literal["hangup", "transfer"]
    reason: str = ""
    to: str = ""


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    call_id: str
    stream_id: str
    account_id: str = ""
    encoding: str = "audio/x-l16"
    sample_rate: int = 8000
    extra_headers: dict[str, str] = field(default_factory=dict)
    epoch: int = 0  # the call's streams before this one (0: its first)
    stream_token: str = ""  # unique per stream: its snapshot is claimed once, by one party
    turn: int = 0
    stale_through: int = 0
    completed_turn: int = 0
    history: list[HistoryItem] = field(default_factory=list)
    pending: list[PendingReply] = field(default_factory=list)
    action: PendingAction | None = None
    reprompts: int = 0
    elapsed_s: float = 0.0  # call time used when saved
    saved_at: float = 0.0  # wall-clock seconds (time.time()) when saved: time keeps running
    resumes: int = 0
    suspended: bool = False  # saved at the drop (True) or while the call was live (False)
    state: dict[str, Any] = field(default_factory=dict)  # stages' JSON-safe call state
    version: int = SNAPSHOT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> CallSnapshot:
        """Parse a stored snapshot; SnapshotError names the first problem."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SnapshotError(f"snapshot is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SnapshotError("snapshot must be a JSON object")
        version = data.get("version")
        if version != SNAPSHOT_VERSION:
            raise SnapshotError(
                f"snapshot version {version!r} (this build reads {SNAPSHOT_VERSION})"
            )
        try:
            history = [HistoryItem(**_obj(h, "history")) for h in _list(data, "history")]
            pending = [PendingReply(**_obj(p, "pending")) for p in _list(data, "pending")]
            action = data.get("action")
            fields = {k: v for k, v in data.items() if k not in ("history", "pending", "action")}
            snapshot = cls(
                **fields,
                history=history,
                pending=pending,
                action=PendingAction(**_obj(action, "action")) if action is not None else None,
            )
        except TypeError as exc:
            raise SnapshotError(f"snapshot fields: {exc}") from None
        snapshot._check()
        return snapshot

    def _check(self) -> None:
        for name in ("call_id", "stream_id", "account_id", "encoding", "stream_token"):
            if not isinstance(getattr(self, name), str):
                raise SnapshotError(f"snapshot.{name}: expected text")
        for name in ("epoch", "turn", "stale_through", "completed_turn", "reprompts", "resumes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SnapshotError(f"snapshot.{name}: expected a whole number >= 0")
        for name in ("elapsed_s", "saved_at"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise SnapshotError(f"snapshot.{name}: expected seconds >= 0")
        if not self.call_id:
            raise SnapshotError("snapshot.call_id: empty")
        for item in self.history:
            if item.role not in ("caller", "agent") or not isinstance(item.text, str):
                raise SnapshotError("snapshot.history: entries need role caller/agent and text")
        for reply in self.pending:
            if not isinstance(reply.turn, int) or not isinstance(reply.text, str):
                raise SnapshotError("snapshot.pending: entries need a turn and text")
        if not isinstance(self.suspended, bool):
            raise SnapshotError("snapshot.suspended: expected true or false")
        if self.action is not None and self.action.kind not in ("hangup", "transfer"):
            raise SnapshotError("snapshot.action.kind: expected hangup or transfer")

    @property
    def pending_text(self) -> str:
        return " ".join(p.text for p in self.pending if p.text)


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise SnapshotError(f"snapshot.{key}: expected a list")
    return value


def _obj(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SnapshotError(f"snapshot.{key}: expected objects")
    return value


def json_safe(state: dict[str, Any]) -> dict[str, Any]:
    """The entries of a stage's free-form call state that survive a JSON round trip."""
    safe: dict[str, Any] = {}
    for key, value in state.items():
        try:
            safe[str(key)] = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            continue
    return safe
