"""Optional per-call files: a JSONL event log and a stereo WAV recording (event subscribers).

Both are off by default (``events.dir`` / ``recording.dir`` in the service settings). Files are
named after the call and stream ids (reduced to safe characters), so one call's log lines, events
and audio are found together. A resumed call (Plivo's retry after a dropped socket, often with
the same stream id) writes each segment to its own file, numbered by the stream's epoch
(``<call>-<stream>-1.wav`` for the first resumption); a file is never overwritten: a name
already taken gets ``~1``, ``~2``, ... The event log keeps at most ``max_events`` events in
memory; the rest are counted by kind in a last ``events_dropped`` line.

The recording puts the caller on the left channel and the agent on the right, on the call's own
timeline. While the call runs each channel is appended to a raw file beside the WAV, so memory
stays flat however long the call; at the end the two are interleaved into the WAV (in a worker
thread) and removed. Agent audio is placed where Plivo plays it: when it was sent, or right after
the agent audio before it, and a ``clearAudio`` cuts what had not played yet.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import wave
from collections import Counter
from pathlib import Path
from typing import IO, Any

import numpy as np

from voicebridge.audio.codec import codec_for
from voicebridge.call.events import (
    AgentAudioSent,
    BargeIn,
    CallAnswered,
    CallerAudio,
    CallEvent,
    CallFinished,
)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_MERGE_SAMPLES = 1 << 16  # samples per channel interleaved at a time when the call ends


def call_file_stem(call_id: str, stream_id: str, epoch: int = 0) -> str:
    """``<call id>-<stream id>`` with anything but letters, digits, ``_ . -`` replaced; both ids
    come from the caller's side of the wire, so they never choose a path. A resumed stream's
    ``epoch`` (> 0) is appended: each segment of a call has its own files."""
    call = _UNSAFE.sub("_", call_id)[:64].strip(".") or "call"
    stream = _UNSAFE.sub("_", stream_id)[:16].strip(".") or "stream"
    return f"{call}-{stream}" if epoch <= 0 else f"{call}-{stream}-{min(epoch, 999)}"


_MAX_CLAIMS = 1000


def claim_path(directory: Path, stem: str, suffix: str) -> Path:
    """A new, empty file ``<stem><suffix>`` (or ``<stem>~N<suffix>`` when that is taken),
    created exclusively: two segments or calls never write into one file."""
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(_MAX_CLAIMS):
        path = directory / f"{stem if n == 0 else f'{stem}~{n}'}{suffix}"
        try:
            with open(path, "x"):
                return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory / stem}{suffix}: {_MAX_CLAIMS} files of that name exist")


class EventLogWriter:
    """Writes a call's event timeline as ``<dir>/<call>.jsonl`` when the call ends.

    At most ``max_events`` events are kept (a peer can make events as fast as it sends
    messages); past that, events are counted by kind, and the call's last event is kept."""

    def __init__(
        self, directory: str | os.PathLike[str], pipeline: str = "", max_events: int = 20_000
    ) -> None:
        self.directory = Path(directory)
        self.pipeline = pipeline
        self.max_events = max_events
        self.path: Path | None = None
        self._answered: CallAnswered | None = None
        self._finished: CallFinished | None = None
        self._lines: list[str] = []
        self.dropped: Counter[str] = Counter()

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, CallAnswered):
            self._answered = event
        elif isinstance(event, CallFinished):
            self._finished = event
        elif len(self._lines) >= self.max_events:
            self.dropped[event.kind] += 1
            return
        self._lines.append(json.dumps(event.as_dict(), default=str))

    async def close(self) -> None:
        answered, finished = self._answered, self._finished
        if answered is None:
            return  # the stream never started: there is no call to write about
        stem = call_file_stem(answered.call_id, answered.stream_id, answered.epoch)
        header = {
            "t": 0.0,
            "kind": "call",
            "call_id": answered.call_id,
            "stream_id": answered.stream_id,
            "epoch": answered.epoch,
            "pipeline": self.pipeline,
            "end_reason": finished.reason if finished else None,
            "stats": finished.stats if finished else {},
        }
        lines = [json.dumps(header), *self._lines]
        if self.dropped:
            lines.append(json.dumps({"kind": "events_dropped", "counts": dict(self.dropped)}))
        text = "\n".join(lines) + "\n"
        self.path = await asyncio.to_thread(_write_new, self.directory, stem, text)


def _write_new(directory: Path, stem: str, text: str) -> Path:
    path = claim_path(directory, stem, ".jsonl")
    path.write_text(text, encoding="utf-8")
    return path


class CallRecorder:
    """Records one call as ``<dir>/<call>.wav``: 16-bit stereo at the stream's rate."""

    event_types = (CallAnswered, CallerAudio, AgentAudioSent, BargeIn)

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path: Path | None = None
        self._rate = 0
        self._decode: Any = None
        self._caller: IO[bytes] | None = None
        self._agent: IO[bytes] | None = None
        self._agent_end = 0  # sample index where queued agent audio ends
        self._caller_end = 0

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, CallerAudio):
            self.caller_audio(event.payload, event.at_s)
        elif isinstance(event, AgentAudioSent):
            self.agent_audio(event.payload, event.at_s)
        elif isinstance(event, BargeIn):
            self.agent_cleared(event.at_s)
        elif isinstance(event, CallAnswered):
            self.call_started(event)

    def call_started(self, event: CallAnswered) -> None:
        stem = call_file_stem(event.call_id, event.stream_id, event.epoch)
        self.path = claim_path(self.directory, stem, ".wav")  # filled in when the call ends
        self._rate = event.sample_rate
        self._decode = codec_for(event.encoding).decode
        self._caller = open(self.path.with_suffix(".caller.raw"), "w+b")  # noqa: SIM115
        self._agent = open(self.path.with_suffix(".agent.raw"), "w+b")  # noqa: SIM115

    def _sample(self, at_s: float) -> int:
        return max(0, round(at_s * self._rate))

    def caller_audio(self, payload: bytes, at_s: float) -> None:
        if self._caller is None:
            return
        pcm = self._decode(payload)
        start = self._sample(at_s)
        if start != self._caller_end:
            self._caller.seek(2 * start)
        self._caller.write(pcm.astype("<i2", copy=False).tobytes())
        self._caller_end = start + len(pcm)

    def agent_audio(self, payload: bytes, at_s: float) -> None:
        if self._agent is None:
            return
        pcm = self._decode(payload)
        start = max(self._sample(at_s), self._agent_end)
        self._agent.seek(2 * start)  # past the end: the gap reads back as silence
        self._agent.write(pcm.astype("<i2", copy=False).tobytes())
        self._agent_end = start + len(pcm)

    def agent_cleared(self, at_s: float) -> None:
        if self._agent is None:
            return
        cut = self._sample(at_s)
        if cut < self._agent_end:
            self._agent.truncate(2 * cut)
            self._agent_end = cut

    async def close(self) -> None:
        caller, agent, path = self._caller, self._agent, self.path
        self._caller = self._agent = None
        if caller is None or agent is None or path is None:
            return
        await asyncio.to_thread(_merge, caller, agent, path, self._rate)


def _merge(caller: IO[bytes], agent: IO[bytes], path: Path, rate: int) -> None:
    """Interleave the two raw channels into ``path`` block by block, then delete them."""
    try:
        sizes = [f.seek(0, os.SEEK_END) // 2 for f in (caller, agent)]
        total = max(sizes)
        for f in (caller, agent):
            f.seek(0)
        block = np.zeros((_MERGE_SAMPLES, 2), dtype="<i2")
        with wave.open(str(path), "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(rate)
            for offset in range(0, total, _MERGE_SAMPLES):
                n = min(_MERGE_SAMPLES, total - offset)
                block[:n] = 0
                for channel, f in enumerate((caller, agent)):
                    data = np.frombuffer(f.read(2 * n), dtype="<i2")
                    block[: len(data), channel] = data
                out.writeframes(block[:n].tobytes())
    finally:
        for f in (caller, agent):
            name = f.name
            f.close()
            Path(name).unlink(missing_ok=True)
