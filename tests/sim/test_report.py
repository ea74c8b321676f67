"""The call report model: JSON round trip, summary figures, latency statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voicebridge.plivo.formats import StreamFormat
from voicebridge.sim.analysis import report_from_parts
from voicebridge.sim.caller import CallRecord, WireEvent
from voicebridge.sim.report import (
    CallReport,
    CheckpointReport,
    MarkerEvent,
    TurnReport,
    latency_stats,
)
from voicebridge.sim.signals import speech_like
from voicebridge.sim.simulate import CallerLine


def _report() -> CallReport:
    turns = [
        TurnReport(
            0,
            "hello",
            0.5,
            1.5,
            "hello",
            ["Hi there.", "How can I help?"],
            "Hi there. How can I help?",
            2.0,
            2.1,
            0.6,
            False,
        ),
        TurnReport(
            1,
            "book a table",
            4.0,
            5.0,
            "book a table",
            ["Sure, for when?"],
            "Sure,",
            6.0,
            6.2,
            1.2,
            True,
        ),
        TurnReport(2, "bye", 8.0, 8.5, None, [], "", None, None, None, False),
    ]
    return CallReport(
        pipeline="echo",
        codec="audio/x-mulaw",
        sample_rate=8000,
        mode="fast",
        duration_s=10.0,
        turns=turns,
        checkpoints=[
            CheckpointReport("t0-0", 2.0, 3.5, False),
            CheckpointReport("t1-0", 6.0, None, True),
            CheckpointReport("t1-1", 6.1, None, False),
        ],
        markers=[
            MarkerEvent(0.5, "caller_speech_start", ""),
            MarkerEvent(6.5, "barge_in", ""),
            MarkerEvent(6.55, "clear", ""),
            MarkerEvent(10.0, "close", "1000 call ended"),
        ],
        history=[{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi"}],
        events=[{"t": 0.0, "direction": "in", "message": {"event": "start"}}],
        barge_ins=[{"t": 6.5, "turn": 1}],
        closed_by="caller",
        close_code=1000,
        close_reason="call ended",
        protocol_errors=[],
    )


def test_json_round_trip(tmp_path: Path) -> None:
    report = _report()
    text = report.to_json()
    assert CallReport.from_json(text) == report
    assert CallReport.from_dict(json.loads(text)) == report
    path = tmp_path / "report.json"
    report.write_json(path)
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert loaded["turns"][1]["agent_text"] == ["Sure, for when?"]
    assert loaded["summary"]["barge_ins"] == 1
    assert CallReport.from_dict(loaded) == report


def test_from_dict_ignores_unknown_keys() -> None:
    data = _report().to_dict()
    data["future_field"] = 1
    data["turns"][0]["future_field"] = 2
    assert CallReport.from_dict(data) == _report()


def test_numpy_values_in_free_form_fields_serialise() -> None:
    report = _report()
    report.events.append({"t": np.float32(1.5), "n": np.int64(3), "a": np.arange(2)})
    data = json.loads(report.to_json(indent=None))
    assert data["events"][-1] == {"t": 1.5, "n": 3, "a": [0, 1]}


def test_summary() -> None:
    s = _report().summary()
    assert s["turns"] == 3
    assert s["answered_turns"] == 2
    assert s["interrupted_turns"] == 1
    assert s["latency_p50_s"] == pytest.approx(0.9)
    assert s["latency_p95_s"] == pytest.approx(0.6 + 0.95 * 0.6)
    assert s["latency_max_s"] == pytest.approx(1.2)
    assert s["barge_ins"] == 1
    assert (s["checkpoints_sent"], s["checkpoints_acked"], s["checkpoints_cleared"]) == (3, 1, 1)
    assert s["protocol_errors"] == 0


def test_summary_without_turns() -> None:
    report = CallReport("echo", "audio/x-l16", 16000, "realtime", 3.0)
    s = report.summary()
    assert s["turns"] == 0
    assert s["latency_p50_s"] is None and s["latency_p95_s"] is None
    assert s["latency_max_s"] is None
    assert CallReport.from_json(report.to_json()) == report


def test_latency_stats() -> None:
    stats = latency_stats([0.4, 0.1, 0.3, 0.2, 1.0])
    assert stats["n"] == 5
    assert stats["p50"] == pytest.approx(0.3)
    assert stats["p95"] == pytest.approx(0.4 + 0.8 * 0.6)  # linear between 0.4 and 1.0
    assert stats["mean"] == pytest.approx(0.4)
    assert stats["max"] == pytest.approx(1.0)
    assert latency_stats([]) == {"p50": None, "p95": None, "mean": None, "max": None, "n": 0}
    single = latency_stats([0.7])
    assert single["p50"] == single["p95"] == single["max"] == pytest.approx(0.7)


def test_a_remote_calls_turn_numbers_come_from_its_checkpoint_names() -> None:
    """A call to another service has no events: the turn numbers in its checkpoints' names
    still number the report's rows (a name of another shape numbers nothing)."""
    fmt = StreamFormat.from_short("l16", 8000)
    record = CallRecord(fmt, "call", "stream", duration_s=10.0)
    record.events = [
        WireEvent(0.2, "out", {"event": "checkpoint", "name": "turn-1/piece-1"}),
        WireEvent(3.1, "out", {"event": "checkpoint", "name": "turn-2/piece-1"}),
        WireEvent(3.4, "out", {"event": "checkpoint", "name": "turn-2/piece-2"}),
        WireEvent(7.2, "out", {"event": "checkpoint", "name": "their-own-mark"}),
    ]
    record.utterance_spans = [(1.0, 2.5), (5.0, 6.5)]
    record.played_spans = [(0.3, 0.5)]
    lines = [CallerLine("hi", speech_like(1.0, 8000)), CallerLine("bye", speech_like(1.0, 8000))]
    report = report_from_parts(pipeline="ws://remote", record=record, lines=lines, mode="realtime")
    assert [t.agent_turns for t in report.turns] == [[1], [2], []]
    assert [m.turn for m in report.markers if m.kind == "checkpoint"] == [1, 2, 2, None]
