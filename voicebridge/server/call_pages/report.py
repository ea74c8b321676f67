"""A served call's ``CallReport`` (the simulator's page model), from the events it recorded.

The simulator builds its report from the wire as the caller saw it; a real call has only the
service's side, so everything here comes from the call's events in their JSON form (as the
event log writes them): speech from the VAD, transcripts, replies, checkpoints sent and played,
barge-ins, and each turn's latency as the service measured it (``turn_played``: the caller's end
of speech to the first agent audio Plivo played). Events are read defensively: a file may come
from another version, or be cut short.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any, Final

from voicebridge.call.ledger import checkpoint_turn
from voicebridge.sim.report import CallReport, CheckpointReport, MarkerEvent, TurnReport

MAX_TEXT: Final = 2000  # characters of one text shown (a transcript, a reply piece)
_PROBLEMS: Final = frozenset({"bad_message", "plivo_reported_error", "closing_stream"})


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    return str(value)[:MAX_TEXT] if value is not None else ""


def _turn(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class _Speech:
    start: float
    end: float | None


def _speech(events: list[dict[str, Any]]) -> list[_Speech]:
    """The caller's utterances, as the VAD marked them (onset and end in stream seconds)."""
    out: list[_Speech] = []
    for e in events:
        at = _num(e.get("at"))
        if at is None:
            continue
        if e.get("kind") == "speech_started":
            out.append(_Speech(at, None))
        elif e.get("kind") == "speech_ended" and out and out[-1].end is None:
            out[-1].end = max(at, out[-1].start)
    return out


def _timings(events: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Each turn's ``TurnTiming``: from its completion, else from the barge-in that cut it."""
    timings: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.get("kind") == "barge_in" and isinstance(e.get("timing"), dict):
            turn = _turn(e["timing"].get("turn"))
            if turn is not None:
                timings.setdefault(turn, dict(e["timing"]))
    for e in events:
        if e.get("kind") == "turn_played" and (turn := _turn(e.get("turn"))) is not None:
            timings[turn] = {k: v for k, v in e.items() if k not in ("t", "kind")}
    return timings


def _turns(events: list[dict[str, Any]], end_s: float) -> list[TurnReport]:
    speech = _speech(events)
    timings = _timings(events)
    heard: dict[int, list[str]] = {}
    for e in events:
        if e.get("kind") == "played" and (turn := _turn(e.get("turn"))) is not None:
            heard.setdefault(turn, []).append(_text(e.get("text")))
    first = speech[0].start if speech else end_s + 1
    windows: list[tuple[_Speech | None, float, float]] = []
    if any(e.get("kind") == "agent_text" and (_num(e.get("t")) or 0.0) < first for e in events):
        windows.append((None, 0.0, first))  # the greeting
    for i, spoken in enumerate(speech):
        upto = speech[i + 1].start if i + 1 < len(speech) else end_s + 1
        windows.append((spoken, spoken.start, upto))
    timed = sorted(events, key=lambda e: _num(e.get("t")) or 0.0)
    times = [_num(e.get("t")) or 0.0 for e in timed]
    turns: list[TurnReport] = []
    for index, (utterance, lo, hi) in enumerate(windows):
        inside = timed[bisect_left(times, lo) : bisect_left(times, hi)]
        said = [_text(e.get("text")) for e in inside if e.get("kind") == "caller_said"]
        agent = [e for e in inside if e.get("kind") == "agent_text"]
        numbers = sorted({n for e in agent if (n := _turn(e.get("turn"))) is not None})
        timing = next((timings[n] for n in numbers if n in timings), {})
        end = utterance.end if utterance is not None else None
        latency = _num(timing.get("latency_s"))
        played = round(end + latency, 3) if end is not None and latency is not None else None
        parts = [_num(timing.get(k)) for k in ("stt_s", "dialogue_s", "tts_s", "send_s")]
        sent = (
            round(end + sum(p for p in parts if p is not None), 3)
            if end is not None and all(p is not None for p in parts)
            else None
        )
        turns.append(
            TurnReport(
                index=index,
                caller_said=None,
                caller_speech_start_s=utterance.start if utterance is not None else None,
                caller_speech_end_s=end,
                transcript=" ".join(said) or None,
                agent_text=[_text(e.get("text")) for e in agent],
                heard_text=" ".join(t for n in numbers for t in heard.get(n, []) if t),
                first_audio_sent_s=sent,
                first_audio_played_s=played,
                latency_s=latency if played is not None else None,
                interrupted=any(bool(timings.get(n, {}).get("interrupted")) for n in numbers),
                timing=timing,
                agent_turns=numbers,
            )
        )
    return turns


def _checkpoints(events: list[dict[str, Any]]) -> list[CheckpointReport]:
    played: dict[str, float] = {}
    cleared: set[str] = set()
    for e in events:
        if e.get("kind") == "played" and (t := _num(e.get("t"))) is not None:
            played.setdefault(_text(e.get("name")), t)
        elif e.get("kind") == "barge_in" and isinstance(e.get("cleared"), list):
            cleared.update(_text(name) for name in e["cleared"])
    out = []
    for e in events:
        if e.get("kind") != "checkpoint" or (t := _num(e.get("t"))) is None:
            continue
        name = _text(e.get("name"))
        acked = played.get(name)
        out.append(CheckpointReport(name, t, acked, cleared=acked is None and name in cleared))
    return out


def _markers(events: list[dict[str, Any]], speech: list[_Speech]) -> list[MarkerEvent]:
    markers: list[MarkerEvent] = []
    for s in speech:
        markers.append(MarkerEvent(s.start, "caller_speech_start"))
        if s.end is not None:
            markers.append(MarkerEvent(s.end, "caller_speech_end"))
    for e in events:
        t, kind = _num(e.get("t")), e.get("kind")
        if t is None:
            continue
        if kind == "caller_said":
            markers.append(MarkerEvent(t, "transcript", _text(e.get("text"))))
        elif kind == "agent_text":
            markers.append(MarkerEvent(t, "agent_text", _text(e.get("text")), _turn(e.get("turn"))))
        elif kind in ("checkpoint", "played"):
            name = _text(e.get("name"))
            markers.append(MarkerEvent(t, kind, name, checkpoint_turn(name)))
        elif kind == "barge_in":
            markers.append(MarkerEvent(t, "clear", "clearAudio"))
            markers.append(MarkerEvent(t, "barge_in", _text(e.get("heard"))))
        elif kind == "dtmf":
            markers.append(MarkerEvent(t, "dtmf", _text(e.get("digit"))[:8]))
        elif kind == "call_action_requested" and e.get("action") == "hangup":
            markers.append(MarkerEvent(t, "hangup", _text(e.get("reason"))))
        elif kind == "call_ended":
            markers.append(MarkerEvent(t, "close", f"call ended ({_text(e.get('reason'))})"))
    markers.sort(key=lambda m: m.t)
    for m in markers:
        m.t = round(m.t, 3)
    return markers


def _history(events: list[dict[str, Any]]) -> list[dict[str, object]]:
    """The conversation: each transcript, and each agent turn's text (cut: by a barge-in)."""
    completed = {_turn(e.get("turn")) for e in events if e.get("kind") == "turn_played"}
    stale = max(
        (_turn(e.get("stale_through")) or 0 for e in events if e.get("kind") == "barge_in"),
        default=0,
    )
    out: list[dict[str, object]] = []
    agent: dict[int, dict[str, object]] = {}
    for e in events:
        if e.get("kind") == "caller_said":
            out.append({"role": "caller", "text": _text(e.get("text"))})
        elif e.get("kind") == "agent_text" and (turn := _turn(e.get("turn"))) is not None:
            entry = agent.get(turn)
            if entry is None:
                entry = {"role": "agent", "text": "", "turn": turn}
                entry["interrupted"] = turn <= stale and turn not in completed
                agent[turn] = entry
                out.append(entry)
            entry["text"] = f"{entry['text']} {_text(e.get('text'))}".strip()
    return out


def report_from_events(
    events: list[dict[str, Any]], *, pipeline: str, live: bool = False
) -> CallReport:
    """The page model of a call from its events (in order, JSON form)."""
    started = next((e for e in events if e.get("kind") == "call_started"), {})
    ended = next((e for e in reversed(events) if e.get("kind") == "call_ended"), None)
    times = [t for e in events if (t := _num(e.get("t"))) is not None]
    end_s = _num(ended.get("t")) if ended is not None else None
    duration = end_s if end_s is not None else max(times, default=0.0)
    speech = _speech(events)
    refused = next((e for e in events if e.get("kind") == "closing_stream"), None)
    rate = started.get("sample_rate")
    return CallReport(
        pipeline=pipeline,
        codec=_text(started.get("encoding") or "?")[:40],
        sample_rate=rate if isinstance(rate, int) and rate > 0 else 8000,
        mode="live, in progress" if live else "service call",
        duration_s=round(duration, 3),
        turns=_turns(events, duration),
        checkpoints=_checkpoints(events),
        markers=_markers(events, speech),
        history=_history(events),
        events=list(events),
        barge_ins=[
            {k: e.get(k) for k in ("t", "cause", "heard", "cleared", "reaction_s")}
            for e in events
            if e.get("kind") == "barge_in"
        ],
        closed_by=("still running" if live else _text(ended.get("reason")) if ended else "?")[:64],
        close_code=_turn(refused.get("code")) if refused is not None else None,
        close_reason=_text(refused.get("reason"))[:64] if refused is not None else "",
        protocol_errors=[
            f"{e.get('kind')}: {_text(e.get('reason') or e.get('plivo_event'))[:100]} "
            f"{_text(e.get('detail'))[:200]}".strip()
            for e in events
            if e.get("kind") in _PROBLEMS
        ][:200],
    )
