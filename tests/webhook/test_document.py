"""The post-call document, assembled from a call's events; its size and the spool's bounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voicebridge.call.events import (
    BargeIn,
    CallAnswered,
    CallerSaid,
    CallFinished,
    ContinuedAfterFalseInterruption,
    FillerSpoken,
    PiecePlayed,
    ProviderFailed,
    StopReceived,
    TurnCompleted,
)
from voicebridge.config import ServiceSettings
from voicebridge.config.errors import ConfigError
from voicebridge.config.service_settings import load_service_settings
from voicebridge.server.call_parties import CallParties
from voicebridge.webhook.document import CallReporter, ending
from voicebridge.webhook.encode import encode
from voicebridge.webhook.signing import idempotency_key
from voicebridge.webhook.spool import Spool

T0 = 1_700_000_000.0


def timing(turn: int, *, interrupted: bool = False) -> dict[str, Any]:
    return {
        "turn": turn,
        "latency_s": 0.9,
        "stt_s": 0.5,
        "dialogue_s": 0.2,
        "tts_s": 0.1,
        "send_s": 0.0,
        "playout_start_s": 0.1,
        "duration_s": None if interrupted else 1.5,
        "interrupted": interrupted,
    }


def a_call(reporter: CallReporter) -> None:
    for event in [
        CallAnswered(0.0, "call-1", "stream-1", "MA1", "audio/x-l16", 8000),
        FillerSpoken(0.5, 1, "One moment.", 1.0),
        PiecePlayed(1.0, "t1p1", 1, "One moment."),
        TurnCompleted(1.0, 1, timing(1)),
        CallerSaid(1.2, "what are your hours"),
        PiecePlayed(3.0, "t2p1", 2, "We open at nine."),
        PiecePlayed(4.0, "t2p2", 2, "We close at five."),
        TurnCompleted(4.0, 2, timing(2)),
        CallerSaid(5.0, "and on sunday"),
        PiecePlayed(6.0, "t3p1", 3, "On Sundays we are closed."),
        BargeIn(6.8, "speech", ["t3p2"], "We reopen", 0.25, 3, 6.8, timing(3, interrupted=True)),
        ContinuedAfterFalseInterruption(7.5, 4, "on Monday."),
        PiecePlayed(8.0, "t4p1", 4, "on Monday."),
        TurnCompleted(8.0, 4, timing(4)),
        CallerSaid(9.0, "book me"),
        ProviderFailed(9.5, "dialogue", "fake-llm", "unavailable", 503, "503 upstream down"),
        PiecePlayed(10.0, "t5p1", 5, "I can book"),
        BargeIn(10.5, "speech", ["t5p2"], "you", 0.3, 5, 10.5, timing(5, interrupted=True)),
        CallerSaid(11.0, "no thanks bye"),
        StopReceived(12.0, "callEnded"),
        CallFinished(12.0, "stop_event", {"turns": 5}),
    ]:
        reporter.on_event(event)


async def test_the_document_has_what_the_caller_heard_turns_barge_ins_and_errors() -> None:
    got: list[dict[str, Any]] = []
    parties = CallParties()
    answer = {"From": "+15550001111", "To": "+15550002222", "Direction": "inbound"}
    parties.remember("call-1", answer)
    clock = iter([T0 + 0.25, T0 + 12.5])
    reporter = CallReporter(
        got.append,
        pipeline="front-desk",
        parties=parties.get,
        recording=lambda: Path("/rec/call-1-stream-1.wav"),
        call_vars={"name": "Ana"},
        wall=lambda: next(clock),
    )
    a_call(reporter)
    assert got == []  # handed over when the call's subscribers close, not before
    await reporter.close()
    (doc,) = got
    assert doc["id"] == idempotency_key("call-1", "stream-1", 0, "call.ended")
    assert (doc["event"], doc["version"]) == ("call.ended", 1)
    assert doc["call"] == {
        "call_id": "call-1",
        "stream_id": "stream-1",
        "account_id": "MA1",
        "epoch": 0,
        "pipeline": "front-desk",
        "direction": "inbound",
        "from": "+15550001111",
        "to": "+15550002222",
    }
    assert doc["started_at"] == "2023-11-14T22:13:20.250+00:00"
    assert doc["ended_at"] == "2023-11-14T22:13:32.500+00:00"
    assert doc["duration_s"] == 12.0
    assert doc["outcome"] == {
        "result": "completed",
        "ended_by": "caller",
        "reason": "stop_event",
        "stop_reason": "callEnded",
        "transfer_to": None,
        "rest_hangup": None,
    }
    assert doc["history"] == [
        {"role": "agent", "text": "One moment.", "turn": 1, "interrupted": False, "filler": True},
        {"role": "caller", "text": "what are your hours"},
        {
            "role": "agent",
            "text": "We open at nine. We close at five.",
            "turn": 2,
            "interrupted": False,
        },
        {"role": "caller", "text": "and on sunday"},
        # cut off after "We reopen", a false interruption: continued to its end
        {
            "role": "agent",
            "text": "On Sundays we are closed. We reopen on Monday.",
            "turn": 3,
            "interrupted": False,
        },
        {"role": "caller", "text": "book me"},
        {"role": "agent", "text": "I can book you", "turn": 5, "interrupted": True},
        {"role": "caller", "text": "no thanks bye"},
    ]
    assert [t["turn"] for t in doc["turns"]] == [1, 2, 3, 4, 5]
    assert doc["turns"][2] == timing(3, interrupted=True)
    assert doc["barge_ins"] == [
        {"t": 6.8, "cause": "speech", "turn": 3, "heard": "We reopen", "reaction_s": 0.25},
        {"t": 10.5, "cause": "speech", "turn": 5, "heard": "you", "reaction_s": 0.3},
    ]
    (error,) = doc["errors"]
    assert error["kind"] == "provider_error" and error["provider"] == "fake-llm"
    assert (error["error_kind"], error["status"]) == ("unavailable", 503)
    assert doc["recording"] == {"path": "/rec/call-1-stream-1.wav"}
    assert doc["vars"] == {"name": "Ana"}
    assert doc["stats"] == {"turns": 5}
    assert "omitted" not in doc
    json.dumps(doc)  # JSON as it is


async def test_a_stream_that_never_started_sends_nothing() -> None:
    got: list[dict[str, Any]] = []
    reporter = CallReporter(got.append)
    reporter.on_event(CallFinished(0.0, "start_timeout"))
    await reporter.close()
    assert got == []


@pytest.mark.parametrize(
    ("reason", "transferred", "expected"),
    [
        ("stop_event", False, ("completed", "caller")),
        ("hangup:goodbye", False, ("completed", "agent")),
        ("transferred", True, ("transferred", "agent")),
        ("idle", False, ("completed", "agent")),
        ("socket_closed", False, ("completed", "caller")),
        ("socket_lost", False, ("completed", "carrier")),
        ("suspended", False, ("suspended", "carrier")),
        ("max_call_duration", False, ("completed", "service")),
        ("service_stopping", False, ("completed", "service")),
        ("hangup:service", False, ("completed", "service")),
        ("internal_error", False, ("failed", "service")),
        ("hangup:provider_down", False, ("failed", "agent")),
        ("stream_token_expired", False, ("refused", "service")),
    ],
)
def test_who_ended_the_call(reason: str, transferred: bool, expected: tuple[str, str]) -> None:
    assert ending(reason, transferred=transferred) == expected


def test_a_long_document_is_cut_from_the_middle_to_fit() -> None:
    doc = {
        "id": "k",
        "history": [{"role": "caller", "text": f"line {i} " + "x" * 200} for i in range(2000)],
        "turns": [{"turn": i} for i in range(10)],
        "barge_ins": [],
        "errors": [],
    }
    body = encode(doc, 64 * 1024)
    assert len(body) <= 64 * 1024
    cut = json.loads(body)
    kept = [entry["text"].split()[1] for entry in cut["history"]]
    assert kept[0] == "0" and kept[-1] == "1999"  # the start and the end of the call stay
    assert len(kept) + cut["omitted"]["history"] == 2000
    assert cut["turns"] == doc["turns"]
    assert encode({"id": "small"}, 4096) == b'{"id":"small"}'


def test_the_spool_is_bounded_and_evicts_the_oldest_to_the_dead_letters(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_files=2, max_bytes=1 << 20, max_dead=1)
    assert spool.open() == []
    for n in range(4):
        spool.write(f"{n:02x}", b"{}", created_ns=n + 1)
    assert sorted(spool.entries) == ["02", "03"]
    dead = sorted(p.name for p in (tmp_path / "dead").iterdir())
    assert len(dead) == 1 and "-01." in dead[0]  # at most max_dead kept: the newest
    assert not list(tmp_path.glob("shard-0/.tmp-*"))  # atomic writes leave nothing behind
    spool.close()
    again = Spool(tmp_path, max_files=10, max_bytes=3, max_dead=0)
    assert [e.key for e in again.open()] == ["03"]  # 2 bytes each: only one fits in 3
    again.close()


def test_secrets_in_the_webhook_section_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text("webhook:\n  url: https://crm.example.com/hook\n  secret: hunter2hunter2\n")
    with pytest.raises(ConfigError, match="secrets must not be stored in YAML"):
        load_service_settings(path, environ={})
    with pytest.raises(ValueError, match="absolute http"):
        ServiceSettings.model_validate({"webhook": {"url": "ftp://x"}})
    assert ServiceSettings().webhook.url is None  # off by default


def test_call_parties_are_bounded_and_keep_only_phone_like_values() -> None:
    now = [0.0]
    parties = CallParties(max_calls=2, ttl_s=10, time_fn=lambda: now[0])
    parties.remember("a", {"From": "+1555", "To": "sip:bob@example.com", "Direction": "Outbound"})
    parties.remember("b", {"From": "<script>", "To": "x" * 500, "Direction": "sideways"})
    expected = {"from": "+1555", "to": "sip:bob@example.com", "direction": "outbound"}
    assert parties.get("a") == expected
    assert parties.get("b") == {}
    parties.remember("c", {"From": "+1666"})
    assert parties.get("a") is None  # at most max_calls kept
    now[0] = 11.0
    assert parties.get("c") is None  # expired


async def test_a_very_long_call_keeps_bounded_lists_and_counts_what_it_left_out() -> None:
    got: list[dict[str, Any]] = []
    reporter = CallReporter(got.append)
    reporter.on_event(CallAnswered(0.0, "long", "s", "MA", "audio/x-l16", 8000))
    for turn in range(1, 1001):
        reporter.on_event(CallerSaid(turn, "again " * 1000))  # 6,000 characters each
        reporter.on_event(PiecePlayed(turn + 0.5, f"t{turn}", turn, "ok"))
        reporter.on_event(TurnCompleted(turn + 0.5, turn, timing(turn)))
    reporter.on_event(CallFinished(1001.0, "stop_event"))
    await reporter.close()
    (doc,) = got
    assert len(doc["history"]) == 500 and doc["omitted"]["history"] == 1500
    assert all(len(entry["text"]) < 2100 for entry in doc["history"])
    assert len(doc["turns"]) == 500 and doc["omitted"]["turns"] == 500
