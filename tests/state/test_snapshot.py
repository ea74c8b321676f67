"""Snapshots survive a JSON round trip and refuse what they cannot use, with a precise reason."""

from __future__ import annotations

import json

import pytest

from voicebridge.call.snapshot import (
    CallSnapshot,
    HistoryItem,
    PendingAction,
    PendingReply,
    SnapshotError,
    json_safe,
)


def sample() -> CallSnapshot:
    return CallSnapshot(
        call_id="call-1",
        stream_id="stream-1",
        account_id="MA1",
        encoding="audio/x-mulaw",
        sample_rate=8000,
        extra_headers={"tenant": "acme"},
        epoch=2,
        stream_token="0f3a",
        turn=4,
        stale_through=2,
        completed_turn=3,
        history=[
            HistoryItem("agent", "Hello there.", 1),
            HistoryItem("caller", "hi"),
            HistoryItem("agent", "Your order", 4, interrupted=False),
        ],
        pending=[PendingReply(4, "ships tomorrow. Anything else?")],
        action=PendingAction("hangup", reason="done"),
        reprompts=1,
        elapsed_s=12.5,
        saved_at=1_700_000_000.25,
        resumes=1,
        suspended=True,
        state={"slots": {"order": "A12"}},
    )


def test_round_trip_is_exact() -> None:
    snapshot = sample()
    assert CallSnapshot.from_json(snapshot.to_json()) == snapshot
    assert CallSnapshot.from_json(snapshot.to_json().encode()) == snapshot
    assert snapshot.pending_text == "ships tomorrow. Anything else?"


def test_minimal_snapshot_round_trips() -> None:
    snapshot = CallSnapshot(call_id="c", stream_id="s")
    assert CallSnapshot.from_json(snapshot.to_json()) == snapshot


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 99}, "version 99"),
        ({"turn": -1}, "snapshot.turn"),
        ({"turn": "3"}, "snapshot.turn"),
        ({"elapsed_s": float("inf")}, "snapshot.elapsed_s"),
        ({"call_id": ""}, "call_id"),
        ({"history": "nope"}, "snapshot.history"),
        ({"history": [{"role": "robot", "text": "x"}]}, "role"),
        ({"pending": [{"turn": 1}]}, "snapshot fields"),
        ({"action": {"kind": "explode"}}, "action.kind"),
        ({"suspended": "yes"}, "snapshot.suspended"),
        ({"surprise": 1}, "snapshot fields"),
    ],
)
def test_bad_snapshots_are_refused(change: dict[str, object], message: str) -> None:
    data = json.loads(sample().to_json())
    data.update(change)
    with pytest.raises(SnapshotError, match=message.replace("(", r"\(")):
        CallSnapshot.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["not json", "[1, 2]", "null"])
def test_non_objects_are_refused(text: str) -> None:
    with pytest.raises(SnapshotError):
        CallSnapshot.from_json(text)


def test_json_safe_keeps_only_serialisable_state() -> None:
    kept = json_safe({"a": 1, "b": {"c": [1, "x"]}, "d": object()})
    assert kept == {"a": 1, "b": {"c": [1, "x"]}}
