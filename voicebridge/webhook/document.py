"""The post-call document: a per-call subscriber that assembles it from the ``CallEvent`` stream.

Nothing in the call reports to the webhook by hand: this subscriber watches the call's events
(what was said and heard, turn timings, barge-ins, provider errors, how it ended) and, when the
call's subscribers are closed, hands one JSON-ready dict to ``sink`` (the delivery worker's
``enqueue``: synchronous and cheap). Closing runs after the recorder's (it is subscribed last),
so the recording's path names a finished file.

The heard history is rebuilt the way the call core builds its own: the agent's words enter when
Plivo acknowledged them as played (``PiecePlayed``), a barge-in adds the words heard of the piece
it cut (``BargeIn.heard``) and marks the entry interrupted, and a false interruption continued
to its end clears the mark again. Everything is bounded: a caller decides how long a call runs
and how much is said in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from voicebridge.call.events import (
    BargeIn,
    CallAnswered,
    CallerSaid,
    CallEvent,
    CallFinished,
    CallResumed,
    ContinuedAfterFalseInterruption,
    FillerSpoken,
    HangupFailed,
    HungUp,
    PiecePlayed,
    PipelineFailed,
    PlivoReportedError,
    ProviderDown,
    ProviderFailed,
    StageFailed,
    StopReceived,
    TransferFailed,
    Transferred,
    TurnCompleted,
)
from voicebridge.observe.bounded import bounded
from voicebridge.webhook.signing import idempotency_key

EVENT: Final = "call.ended"
VERSION: Final = 1
MAX_HISTORY: Final = 500
MAX_TURNS: Final = 500
MAX_BARGE_INS: Final = 200
MAX_ERRORS: Final = 100
MAX_TEXT: Final = 2000

Document = dict[str, Any]
Sink = Callable[[Document], object]
Parties = Callable[[str], Mapping[str, str] | None]


def iso(wall_s: float) -> str:
    """Wall-clock seconds as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(wall_s, UTC).isoformat(timespec="milliseconds")


def ending(reason: str, *, transferred: bool = False, failed: bool = False) -> tuple[str, str]:
    """``(result, ended_by)`` for a call's end reason.

    ``ended_by``: ``caller`` (Plivo closed the stream normally, or sent ``stop``: the phone side
    hung up), ``agent`` (the agent or its rules hung up or transferred), ``carrier`` (the stream
    dropped mid-call: not a normal close), ``service`` (a limit, a drain, a refusal or a fault
    here)."""
    if reason in ("stop_event", "socket_closed"):
        by = "caller"
    elif reason == "hangup:service":
        by = "service"  # a drain's goodbye
    elif reason.startswith("hangup:") or reason in (
        "transferred",
        "idle",
        "answering_machine",
        "voicemail_no_speaker",
    ):
        by = "agent"
    elif reason in ("socket_lost", "suspended", "stream_replaced"):
        by = "carrier"
    else:
        by = "service"
    if transferred or reason == "transferred":
        result = "transferred"
    elif reason == "suspended":
        result = "suspended"  # the stream dropped; a resumed segment sends its own document
    elif failed or reason in ("internal_error", "hangup:provider_down"):
        result = "failed"
    elif reason.startswith(("stream_token_", "call_already_live")) or reason == "refused":
        result = "refused"
    else:
        result = "completed"
    return result, by


class CallReporter:
    """Assembles one call segment's webhook document and hands it to ``sink`` at the end.

    ``parties`` looks up what ``/answer`` learnt of the call (from, to, direction) by call id;
    ``recording`` gives the recorder's file (None without one); ``call_vars`` are the outbound
    call's variables; ``wall`` is the wall clock (seconds since the epoch)."""

    def __init__(
        self,
        sink: Sink,
        *,
        pipeline: str = "",
        parties: Parties | None = None,
        recording: Callable[[], Path | None] | None = None,
        call_vars: Mapping[str, str] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.pipeline = pipeline
        self.parties = parties
        self.recording = recording
        self.call_vars = dict(call_vars or {})
        self.wall = wall
        self.document: Document | None = None
        self._answered: CallAnswered | None = None
        self._started_wall = 0.0
        self._finished: CallFinished | None = None
        self._ended_wall = 0.0
        self._history: list[dict[str, Any]] = []
        self._agent_entries: dict[int, dict[str, Any]] = {}
        self._fillers: set[int] = set()
        self._continues: dict[int, dict[str, Any]] = {}  # continuation turn -> its entry
        self._last_cut: dict[str, Any] | None = None
        self._turns: dict[int, dict[str, Any]] = {}
        self._barge_ins: list[dict[str, Any]] = []
        self._errors: list[dict[str, Any]] = []
        self._omitted: dict[str, int] = {}
        self._stop_reason: str | None = None
        self._transfer_to: str | None = None
        self._rest_hangup: str | None = None
        self._failed = False
        self._resumed: dict[str, Any] | None = None

    # --- events -----------------------------------------------------------------------------
    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, CallAnswered):
            self._answered = event
            self._started_wall = self.wall() - event.t
        elif isinstance(event, CallerSaid):
            self._append_entry({"role": "caller", "text": bounded(event.text, MAX_TEXT)})
        elif isinstance(event, PiecePlayed):
            self._heard(event.turn, event.text)
        elif isinstance(event, BargeIn):
            self._barge_in(event)
        elif isinstance(event, TurnCompleted):
            self._turn_timing(event.turn, event.timing)
            entry = self._continues.get(event.turn)
            if entry is not None:
                entry["interrupted"] = False  # a false interruption, continued to the end
        elif isinstance(event, FillerSpoken):
            self._fillers.add(event.turn)
        elif isinstance(event, ContinuedAfterFalseInterruption):
            if self._last_cut is not None:
                self._continues[event.turn] = self._last_cut
                self._agent_entries[event.turn] = self._last_cut
        elif isinstance(event, CallFinished):
            self._finished = event
            self._ended_wall = self.wall()
        else:
            self._other(event)

    def _other(self, event: CallEvent) -> None:
        if isinstance(event, ProviderDown | StageFailed | PipelineFailed):
            self._failed = True
            self._error(event)
        elif isinstance(event, ProviderFailed | PlivoReportedError | TransferFailed | HangupFailed):
            self._error(event)
        elif isinstance(event, StopReceived):
            self._stop_reason = event.reason
        elif isinstance(event, Transferred):
            self._transfer_to = event.to
        elif isinstance(event, HungUp):
            self._rest_hangup = event.outcome
        elif isinstance(event, CallResumed):
            self._resumed = {"epoch": event.epoch, "turn": event.turn, "respoken": event.respoken}

    def _append_entry(self, entry: dict[str, Any]) -> bool:
        if len(self._history) >= MAX_HISTORY:
            self._omit("history")
            return False
        self._history.append(entry)
        return True

    def _agent_entry(self, turn: int) -> dict[str, Any] | None:
        entry = self._agent_entries.get(turn)
        if entry is None:
            entry = {"role": "agent", "text": "", "turn": turn, "interrupted": False}
            if turn in self._fillers:
                entry["filler"] = True  # "One moment.": heard, but not part of the dialogue
            if not self._append_entry(entry):
                return None
            self._agent_entries[turn] = entry
            self._forget_before(turn - 16)
        return entry

    def _forget_before(self, turn: int) -> None:
        """Bounded memory on long calls: turns this old get no more words."""
        for old in [t for t in self._agent_entries if t < turn]:
            del self._agent_entries[old]
        for old in [t for t in self._continues if t < turn]:
            del self._continues[old]
        self._fillers = {t for t in self._fillers if t >= turn}

    def _heard(self, turn: int, text: str) -> None:
        entry = self._agent_entry(turn)
        if entry is not None and text:
            entry["text"] = bounded(f"{entry['text']} {text}".strip(), MAX_TEXT)

    def _barge_in(self, event: BargeIn) -> None:
        turn = event.timing.get("turn")
        if event.timing:
            self._turn_timing(int(turn or 0), event.timing)
        if len(self._barge_ins) < MAX_BARGE_INS:
            self._barge_ins.append(
                {
                    "t": round(event.t, 3),
                    "cause": event.cause,
                    "turn": turn,
                    "heard": bounded(event.heard, MAX_TEXT),
                    "reaction_s": None if event.reaction_s is None else round(event.reaction_s, 3),
                }
            )
        else:
            self._omit("barge_ins")
        if event.heard is None:
            return  # nothing was playing: nobody was cut off mid-piece
        if not isinstance(turn, int):
            agent = [e for e in self._history if e["role"] == "agent"]
            turn = agent[-1]["turn"] if agent else None
        entry = self._agent_entry(turn) if isinstance(turn, int) else None
        if entry is not None:
            if event.heard:
                entry["text"] = bounded(f"{entry['text']} {event.heard}".strip(), MAX_TEXT)
            entry["interrupted"] = True
            self._last_cut = entry

    def _turn_timing(self, turn: int, timing: Mapping[str, Any]) -> None:
        if turn not in self._turns and len(self._turns) >= MAX_TURNS:
            self._omit("turns")
            return
        self._turns[turn] = dict(timing)

    def _error(self, event: CallEvent) -> None:
        if len(self._errors) >= MAX_ERRORS:
            self._omit("errors")
            return
        fields = {k: bounded(v) for k, v in event.fields().items()}
        self._errors.append({"t": round(event.t, 3), "kind": event.kind, **fields})

    def _omit(self, what: str) -> None:
        self._omitted[what] = self._omitted.get(what, 0) + 1

    # --- the end ----------------------------------------------------------------------------
    async def close(self) -> None:
        """The call's subscribers are closing: hand the document over (never raises into the
        call: the bus logs a failure and the call ends anyway)."""
        document = self.build()
        if document is not None:
            self.document = document
            self.sink(document)

    def build(self) -> Document | None:
        """The document, or None for a stream that never started (no call to report)."""
        answered, finished = self._answered, self._finished
        if answered is None:
            return None
        reason = finished.reason if finished is not None else "unknown"
        result, ended_by = ending(
            reason, transferred=self._transfer_to is not None, failed=self._failed
        )
        parties = dict(self.parties(answered.call_id) or {}) if self.parties else {}
        ended_wall = self._ended_wall or self.wall()
        duration = (finished.t if finished is not None else answered.t) - answered.t
        recording = self.recording() if self.recording is not None else None
        document: Document = {
            "id": idempotency_key(answered.call_id, answered.stream_id, answered.epoch, EVENT),
            "event": EVENT,
            "version": VERSION,
            "call": {
                "call_id": bounded(answered.call_id, 64),
                "stream_id": bounded(answered.stream_id, 64),
                "account_id": bounded(answered.account_id, 64),
                "epoch": answered.epoch,
                "pipeline": self.pipeline,
                "direction": parties.get("direction"),
                "from": parties.get("from"),
                "to": parties.get("to"),
            },
            "started_at": iso(self._started_wall),
            "ended_at": iso(ended_wall),
            "duration_s": round(max(0.0, duration), 3),
            "outcome": {
                "result": result,
                "ended_by": ended_by,
                "reason": bounded(reason, 100),
                "stop_reason": bounded(self._stop_reason, 100),
                "transfer_to": bounded(self._transfer_to, 100),
                "rest_hangup": self._rest_hangup,
            },
            "resumed": self._resumed,
            "history": self._history,
            "turns": [self._turns[t] for t in sorted(self._turns)],
            "barge_ins": self._barge_ins,
            "errors": self._errors,
            "recording": {"path": str(recording)} if recording is not None else None,
            "vars": bounded(self.call_vars),
            "stats": dict(finished.stats) if finished is not None else {},
        }
        if self._omitted:
            document["omitted"] = dict(self._omitted)
        return document
