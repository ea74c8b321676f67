"""From a simulated call (wire record + the service's own timeline) to a ``CallReport``.

The wire says what was sent, acknowledged and cleared, and the playout model says what the caller
heard and when; the service's timeline adds what it understood (transcripts) and said (agent
text). Turn latency is measured where the caller experiences it: from the end of the caller's
speech to the first agent audio that actually played.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from voicebridge.call.context import HistoryEntry
from voicebridge.call.events import (
    ActionRequested,
    AgentSaid,
    BargeIn,
    CallerSaid,
    CallEvent,
    DtmfPressed,
    TurnCompleted,
)
from voicebridge.call.ledger import checkpoint_turn
from voicebridge.sim.caller import CallRecord, WireEvent
from voicebridge.sim.report import CallReport, CheckpointReport, MarkerEvent, TurnReport
from voicebridge.sim.simulate import CallerLine, SimulatedCall, speech_bounds


def build_report(call: SimulatedCall) -> CallReport:
    """The report of a call simulated in-process (wire, playout and service timeline)."""
    return report_from_parts(
        pipeline=call.pipeline,
        record=call.record,
        lines=call.lines,
        mode=call.mode,
        events=call.events,
        history=call.history,
    )


def report_from_parts(
    *,
    pipeline: str,
    record: CallRecord,
    lines: Sequence[CallerLine],
    mode: str,
    events: Sequence[CallEvent] = (),
    history: Sequence[HistoryEntry] = (),
) -> CallReport:
    """Build a report; ``events`` and ``history`` are empty for a call to a remote service."""
    fmt = record.fmt
    speech = _caller_speech(record, lines)
    turns = _turns(record, speech, events, history)
    checkpoints = _checkpoints(record)
    markers = _markers(record, speech, events)
    barge_ins: list[dict[str, object]] = [
        {"t": e.t, "cause": e.cause, "heard": e.heard, "cleared": e.cleared}
        for e in events
        if isinstance(e, BargeIn)
    ] or [{"t": e.t, "cause": "clearAudio on the wire"} for e in record.sent_by_agent("clearAudio")]
    return CallReport(
        pipeline=pipeline,
        codec=fmt.codec,
        sample_rate=fmt.sample_rate,
        mode=mode,
        duration_s=round(record.duration_s, 3),
        turns=turns,
        checkpoints=checkpoints,
        markers=markers,
        history=[
            {"role": h.role, "text": h.text, "turn": h.turn, "interrupted": h.interrupted}
            for h in history
        ],
        events=[_wire_summary(e) for e in record.events]
        + [{"source": "agent", **e.as_dict()} for e in events],
        barge_ins=barge_ins,
        closed_by=record.closed_by,
        close_code=record.close_code,
        close_reason=record.close_reason,
        protocol_errors=list(record.protocol_errors),
    )


def _caller_speech(
    record: CallRecord, lines: Sequence[CallerLine]
) -> list[tuple[str | None, float, float]]:
    """(text, speech start, speech end) of each utterance the caller actually spoke."""
    rate = record.fmt.sample_rate
    out: list[tuple[str | None, float, float]] = []
    for line, (start, end) in zip(lines, record.utterance_spans, strict=False):
        # Key presses: from the first digit to the silence after the last.
        begin, finish = (0.0, end - start) if line.keys else speech_bounds(line.pcm, rate)
        out.append((line.text, round(start + begin, 3), round(start + finish, 3)))
    return out


def _turns(
    record: CallRecord,
    speech: list[tuple[str | None, float, float]],
    events: Sequence[CallEvent],
    history: Sequence[HistoryEntry],
) -> list[TurnReport]:
    starts = [s for _, s, _ in speech]
    bounds: list[tuple[str | None, float | None, float | None, float, float]] = []
    first = starts[0] if starts else record.duration_s + 1
    if any(played_at < first for played_at, _ in record.played_spans):
        bounds.append((None, None, None, 0.0, first))  # the greeting
    for i, (text, said_from, said_to) in enumerate(speech):
        upto = starts[i + 1] if i + 1 < len(starts) else record.duration_s + 1
        bounds.append((text, said_from, said_to, said_from, upto))
    heard = {h.turn: h for h in history if h.role == "agent"}
    turns: list[TurnReport] = []
    for index, (said, start, end, lo, hi) in enumerate(bounds):
        window = [e for e in events if lo <= e.t < hi]
        transcript = " ".join(e.text for e in window if isinstance(e, CallerSaid))
        agent = [e for e in window if isinstance(e, AgentSaid)]
        turn_numbers = sorted({e.turn for e in agent})
        after = end if end is not None else lo
        if not events:  # a remote service: its checkpoint names still carry the turn numbers
            turn_numbers = _checkpoint_turns(record, after, hi)
        sent = [e.t for e in record.sent_by_agent("playAudio") if after <= e.t < hi]
        played = [s for s, _ in record.played_spans if after - 1e-6 <= s < hi]
        first_played = round(played[0], 3) if played else None
        entries = [heard[t] for t in turn_numbers if t in heard]
        timing = _timing(events, turn_numbers)
        turns.append(
            TurnReport(
                index=index,
                caller_said=said,
                caller_speech_start_s=start,
                caller_speech_end_s=end,
                transcript=transcript or None,
                agent_text=[e.text for e in agent],
                heard_text=" ".join(h.text for h in entries if h.text),
                first_audio_sent_s=round(sent[0], 3) if sent else None,
                first_audio_played_s=first_played,
                latency_s=(
                    round(first_played - end, 3)
                    if first_played is not None and end is not None
                    else None
                ),
                interrupted=any(h.interrupted for h in entries),
                timing=timing,
                agent_turns=turn_numbers,
            )
        )
    return turns


def _timing(events: Sequence[CallEvent], turns: list[int]) -> dict[str, Any]:
    """The service's own split of a turn's latency: from its completion, or, for a turn the
    caller cut off, what was measured before the cut (carried by the barge-in)."""
    for e in events:
        if isinstance(e, TurnCompleted) and e.turn in turns:
            return dict(e.timing)
    for e in events:
        if isinstance(e, BargeIn) and e.timing.get("turn") in turns:
            return dict(e.timing)
    return {}


def _checkpoint_turns(record: CallRecord, lo: float, hi: float) -> list[int]:
    """The turn numbers in the names of the checkpoints sent in [lo, hi)."""
    names = (
        str(e.message.get("name")) for e in record.sent_by_agent("checkpoint") if lo <= e.t < hi
    )
    return sorted({n for n in map(checkpoint_turn, names) if n is not None})


def _checkpoints(record: CallRecord) -> list[CheckpointReport]:
    acks: dict[str, float] = {}
    for e in record.sent_by_caller("playedStream"):
        acks.setdefault(str(e.message.get("name")), e.t)
    dropped = set(record.dropped_checkpoints)
    return [
        CheckpointReport(
            name=str(e.message.get("name")),
            sent_s=round(e.t, 3),
            acked_s=round(acks[name], 3) if (name := str(e.message.get("name"))) in acks else None,
            cleared=name in dropped,
        )
        for e in record.sent_by_agent("checkpoint")
    ]


def _markers(
    record: CallRecord,
    speech: list[tuple[str | None, float, float]],
    events: Sequence[CallEvent],
) -> list[MarkerEvent]:
    markers: list[MarkerEvent] = []
    for text, start, end in speech:
        markers.append(MarkerEvent(start, "caller_speech_start", text or ""))
        markers.append(MarkerEvent(end, "caller_speech_end", text or ""))
    for event in events:
        if isinstance(event, CallerSaid):
            markers.append(MarkerEvent(event.t, "transcript", event.text))
        elif isinstance(event, AgentSaid):
            markers.append(MarkerEvent(event.t, "agent_text", event.text, event.turn))
        elif isinstance(event, BargeIn):
            markers.append(MarkerEvent(event.t, "barge_in", event.heard or ""))
        elif isinstance(event, DtmfPressed):
            markers.append(MarkerEvent(event.t, "dtmf", event.digit))
        elif isinstance(event, ActionRequested) and event.action == "hangup":
            markers.append(MarkerEvent(event.t, "hangup", event.reason))
    for wire in record.sent_by_agent("checkpoint"):
        name = str(wire.message.get("name"))
        markers.append(MarkerEvent(wire.t, "checkpoint", name, checkpoint_turn(name)))
    for wire in record.sent_by_caller("playedStream"):
        name = str(wire.message.get("name"))
        markers.append(MarkerEvent(wire.t, "played", name, checkpoint_turn(name)))
    for wire in record.sent_by_agent("clearAudio"):
        markers.append(MarkerEvent(wire.t, "clear", "clearAudio"))
    close = f"{record.closed_by or 'socket'} closed ({record.close_code} {record.close_reason})"
    markers.append(MarkerEvent(record.duration_s, "close", close.strip()))
    markers.sort(key=lambda m: m.t)
    for m in markers:
        m.t = round(m.t, 3)
    return markers


def _wire_summary(event: WireEvent) -> dict[str, Any]:
    return {"source": "wire", "t": round(event.t, 3), "direction": event.direction, **event.message}
