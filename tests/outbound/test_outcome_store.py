"""The outcome stores every worker can share: the same story of a placed call (machine verdict,
voicemail, report, hang-up) read back the same from memory, a shared directory and Redis."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicebridge.server.call_outcomes import CallOutcomes
from voicebridge.server.outcome_store import (
    DirectoryOutcomes,
    MemoryOutcomes,
    OutcomeStore,
    RedisOutcomes,
    outcome_store,
)


@pytest.fixture(params=["memory", "directory", "redis"])
async def store(request, tmp_path: Path) -> AsyncIterator[OutcomeStore]:
    made: OutcomeStore
    if request.param == "memory":
        made = MemoryOutcomes()
    elif request.param == "directory":
        made = DirectoryOutcomes(tmp_path / "outcomes")
    else:
        made = RedisOutcomes(request.getfixturevalue("redis_server").url)
    yield made
    await made.close()


async def test_a_placed_call_story(store: OutcomeStore):
    # Two CallOutcomes over one store: as two workers would be.
    placer, other = CallOutcomes(store), CallOutcomes(store)
    await placer.placed("req-1")
    assert (await other.get("req-1")).status == "queued"
    await other.machine({"RequestUUID": "req-1", "CallUUID": "call-1", "Machine": "true"})
    await placer.machine({"CallUUID": "call-1", "Machine": "false"})  # only the first counts
    assert await placer.verdict("call-1") == "machine"  # the live call finds it on any worker
    await placer.voicemail_left("call-1")
    await placer.call_report("call-1", {"events": "events/call-1.jsonl", "page": ""})
    cause = {"RequestUUID": "req-1", "CallUUID": "call-1", "CallStatus": "completed"}
    assert await other.hung_up({**cause, "HangupCause": "NORMAL_CLEARING", "Duration": "17"})
    found = await placer.get("req-1")
    assert found is not None
    assert (found.call_uuid, found.status, found.hangup_cause, found.duration_s) == (
        "call-1",
        "completed",
        "NORMAL_CLEARING",
        17.0,
    )
    assert found.answered_by == "machine" and found.voicemail
    assert found.report == {"events": "events/call-1.jsonl"}
    # Not ours: ignored, and nothing made up.
    assert await other.hung_up({"RequestUUID": "stranger", "CallUUID": "c9"}) is None
    assert await other.get("stranger") is None


async def test_directory_keys_are_file_names_and_old_records_go(tmp_path: Path):
    store = DirectoryOutcomes(tmp_path, max_records=3, ttl_s=103.0, prune_every=10_000)
    await store.put("../../etc/passwd", "x", {"a": 1})
    assert next(p.name for p in tmp_path.iterdir()).startswith("h-")
    assert await store.get("../../etc/passwd") == {"x": {"a": 1}}
    for n in range(5):
        await store.put(f"k{n}", "placed", {"n": n})
        os.utime(tmp_path / f"k{n}", (1000.0 + n, 1000.0 + n))
    os.utime(next(p for p in tmp_path.iterdir() if p.name.startswith("h-")), (0.0, 0.0))
    assert store.prune(now=1103.5) == 3  # the too old (age > 103 s), then the oldest beyond 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k2", "k3", "k4"]


def test_which_store():
    assert outcome_store("memory", None).name == "memory"
    assert outcome_store("memory", "/tmp/x-outcomes").name == "directory"
    assert outcome_store("redis://127.0.0.1:1/0", "/tmp/x").name == "redis"
