"""A call resumed after a dropped socket, with Plivo's retry reusing the stream id: the
recording and the event log keep both segments, each in its own file."""

from __future__ import annotations

import json
from pathlib import Path

from voicebridge.clock import StreamClock, VirtualClock
from voicebridge.server.resume_registry import ResumeRegistry
from voicebridge.server.run import running_service
from voicebridge.state.store import MemoryStore

from ..e2e.plivo_leg import Leg, Watch
from ..e2e.test_resume import spec
from ..server.test_call_files import read_wav
from .conftest import settings

CALL = "call-resumed-files"


async def test_a_resumed_call_keeps_both_segments(tmp_path: Path) -> None:
    events_dir, recording_dir = tmp_path / "events", tmp_path / "recordings"
    files = {"events": {"dir": str(events_dir)}, "recording": {"dir": str(recording_dir)}}
    registry = ResumeRegistry(MemoryStore(), grace_s=10.0, clock=VirtualClock())
    watch = Watch()
    async with running_service(
        settings(**files),
        spec(["what now"]),
        clock_factory=StreamClock,
        on_session=watch,
        resumes=registry,
    ) as svc:
        async with Leg(svc.ws_url, watch, CALL, "stream-a") as first:
            await first.idle(1.0)
            await first.drop()
        old = watch.session
        await old.ended.wait()
        async with Leg(svc.ws_url, watch, CALL, "stream-a") as second:  # the same stream id
            new = watch.session
            await second.idle(0.6)
            await second.hang_up()
        await new.ended.wait()
    assert new is not old and new.resumed_from is not None
    assert sorted(p.name for p in recording_dir.iterdir()) == [
        f"{CALL}-stream-a-1.wav",
        f"{CALL}-stream-a.wav",
    ]
    first_rate, first_frames = read_wav(recording_dir / f"{CALL}-stream-a.wav")
    _, second_frames = read_wav(recording_dir / f"{CALL}-stream-a-1.wav")
    assert len(first_frames) >= old.core.stats.media * 160 >= 0.9 * first_rate
    assert len(second_frames) >= new.core.stats.media * 160 >= 0.5 * first_rate
    logs = sorted(p.name for p in events_dir.iterdir())
    assert logs == [f"{CALL}-stream-a-1.jsonl", f"{CALL}-stream-a.jsonl"]
    headers = [json.loads((events_dir / name).open().readline()) for name in logs]
    assert [(h["epoch"], h["end_reason"]) for h in headers] == [
        (1, "socket_closed"),
        (0, "suspended"),
    ]
