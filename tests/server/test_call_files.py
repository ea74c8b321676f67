"""The optional per-call event log (JSONL) and stereo recording (WAV) of the real service."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from voicebridge.call.context import CallInfo
from voicebridge.call.events import AgentAudioSent, BargeIn, CallAnswered, CallerAudio
from voicebridge.clock import StreamClock
from voicebridge.observe.recording import CallRecorder, call_file_stem
from voicebridge.server.run import running_service
from voicebridge.sim.signals import utterances

from .conftest import Sessions, echo_spec, fast_caller, settings, until


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (2, 2)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
        return wav.getframerate(), frames


async def test_a_call_writes_its_event_log_and_stereo_recording(tmp_path: Path) -> None:
    events_dir, recording_dir = tmp_path / "events", tmp_path / "recordings"
    sessions = Sessions()
    files = {"events": {"dir": str(events_dir)}, "recording": {"dir": str(recording_dir)}}
    async with running_service(
        settings(**files),
        echo_spec(),
        clock_factory=StreamClock,
        on_session=sessions,
        record_events=True,
    ) as service:
        audio = utterances([("silence", 0.3), ("speech", 0.8), ("silence", 1.5)], 8000)
        caller = fast_caller(service.ws_url, sessions)
        record = await caller.run(audio, tail_s=1.0)
        session = sessions.all[0]
        await session.ended.wait()  # the files are written before the session counts as ended
        await until(lambda: len(service.app.state.calls) == 0)

    stem = f"{record.call_id}-{record.stream_id[:16]}"
    assert sorted(p.name for p in events_dir.iterdir()) == [f"{stem}.jsonl"]
    assert sorted(p.name for p in recording_dir.iterdir()) == [f"{stem}.wav"]  # no leftovers

    # The event log: a header line, then the session's own timeline, one event per line.
    header, *lines = [json.loads(line) for line in (events_dir / f"{stem}.jsonl").open()]
    assert header["call_id"] == record.call_id and header["stream_id"] == record.stream_id
    assert header["end_reason"] == "socket_closed" and header["pipeline"] == "echo"
    assert session.timeline is not None
    assert lines == json.loads(json.dumps(session.timeline.dicts(), default=str))
    kinds = [line["kind"] for line in lines]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    assert {"speech_started", "speech_ended", "checkpoint", "played", "turn_played"} <= set(kinds)

    # The recording: caller left, exactly what was sent; agent right, where it was sent.
    rate, frames = read_wav(recording_dir / f"{stem}.wav")
    assert rate == 8000
    sent_samples = session.core.stats.media * 160
    assert len(frames) >= sent_samples
    assert np.array_equal(frames[: len(audio), 0], audio)
    assert not frames[len(audio) :, 0].any()  # then the caller's silence
    # The agent's channel holds what the caller heard (its playout model), placed where the
    # session sent it: at most one 20 ms frame before the caller's side received it.
    heard = record.heard_audio
    played = np.flatnonzero(heard)
    h0, h1 = int(played[0]), int(played[-1]) + 1
    agent = frames[:, 1]
    a0 = int(np.flatnonzero(agent)[0])
    assert 0 <= h0 - a0 <= 160
    assert np.array_equal(agent[a0 : a0 + h1 - h0], heard[h0:h1])
    assert not agent[a0 + h1 - h0 :].any()


async def test_a_clear_cuts_the_unplayed_agent_audio_from_the_recording(tmp_path: Path) -> None:
    recorder = CallRecorder(tmp_path)
    tone = np.full(8000, 1000, np.int16)  # 1 s
    for event in [
        CallAnswered(0.0, "c", "s", "MA", "audio/x-l16", 8000),
        CallerAudio(0.0, np.zeros(16000, np.int16).tobytes(), 0.0),
        AgentAudioSent(0.0, tone.tobytes(), 0.0),
        AgentAudioSent(0.1, tone.tobytes(), 0.1),  # sent early: queued after the first second
        # the caller barged in halfway through the second
        BargeIn(1.5, "speech", ["turn-1/piece-2"], "", 0.2, 1, 1.5),
        AgentAudioSent(1.75, tone[:800].tobytes(), 1.75),
    ]:
        recorder.on_event(event)
    await recorder.close()
    _, frames = read_wav(tmp_path / "c-s.wav")
    agent = frames[:, 1]
    assert len(frames) == 16000
    assert (agent[:12000] == 1000).all()  # 1.5 s of agent audio played before the clear
    assert not agent[12000:14000].any()
    assert (agent[14000:14800] == 1000).all() and not agent[14800:].any()


def test_file_names_come_from_the_ids_but_never_leave_the_folder() -> None:
    info = CallInfo("../../etc/passwd", "s/../x" * 10)
    stem = call_file_stem(info.call_id, info.stream_id)
    assert "/" not in stem and not stem.startswith(".")
    assert call_file_stem("abc-123", "def") == "abc-123-def"
