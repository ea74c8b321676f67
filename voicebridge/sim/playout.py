"""A model of Plivo's playout buffer, as the simulator's side of a call.

Plivo queues the audio of every ``playAudio`` and plays it to the caller in order at real time.
A ``checkpoint`` sits in that queue; when playback reaches it Plivo answers ``playedStream``.
``clearAudio`` drops everything queued, checkpoints included (they are never acknowledged), and is
answered with ``clearedAudio``. Time is passed in explicitly, so the model runs on any clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from voicebridge.frames import PCM


@dataclass(slots=True)
class _Audio:
    pcm: PCM
    piece: int  # index in ``PlayoutModel.pieces``
    offset: int = 0  # samples of it already played


@dataclass
class ReceivedPiece:
    """The agent audio up to one ``checkpoint``: one piece of a reply as the caller got it.

    ``heard_samples`` of it played before any ``clearAudio`` (audio plays in order, so that is
    its beginning); ``name`` is the checkpoint that closed it (None while open or if a clear
    came first)."""

    arrived_s: float
    chunks: list[PCM] = field(default_factory=list)
    name: str | None = None
    heard_samples: int = 0
    cleared: bool = False  # a clear dropped part of it

    @property
    def pcm(self) -> PCM:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)

    @property
    def samples(self) -> int:
        return sum(len(c) for c in self.chunks)


@dataclass(slots=True)
class _Mark:
    name: str


@dataclass(slots=True)
class HeardSegment:
    """Agent audio that reached the caller's ear, starting at ``start_s`` on the call's clock."""

    start_s: float
    pcm: PCM


@dataclass
class PlayoutModel:
    """Plays queued agent audio at ``rate`` samples per second of model time."""

    rate: int
    _queue: deque[_Audio | _Mark] = field(default_factory=deque)
    _time: float = 0.0
    heard: list[HeardSegment] = field(default_factory=list)
    pieces: list[ReceivedPiece] = field(default_factory=list)
    dropped_marks: list[str] = field(default_factory=list)
    dropped_samples: int = 0
    _due: list[str] = field(default_factory=list)  # acks reached but not yet handed out
    _open: ReceivedPiece | None = None  # the piece new audio belongs to

    def play(self, pcm: PCM, now: float) -> None:
        """A ``playAudio`` arrived."""
        self._due.extend(self._play_until(now))
        if len(pcm):
            if self._open is None:
                self._open = ReceivedPiece(now)
                self.pieces.append(self._open)
            self._open.chunks.append(pcm)
            self._queue.append(_Audio(pcm, len(self.pieces) - 1))

    def checkpoint(self, name: str, now: float) -> list[str]:
        """A ``checkpoint`` arrived; returns every ack now due (this one too if nothing was
        queued before it)."""
        self._due.extend(self._play_until(now))
        if self._open is not None:
            self._open.name = name
            self._open = None
        self._queue.append(_Mark(name))
        self._due.extend(self._acks())
        return self._take_due()

    def clear(self, now: float) -> list[str]:
        """A ``clearAudio`` arrived: drop the queue. Returns the checkpoints that will never ack
        (acks reached before the clear are still handed out by the next ``advance``)."""
        self._due.extend(self._play_until(now))
        dropped: list[str] = []
        for item in self._queue:
            if isinstance(item, _Mark):
                dropped.append(item.name)
            else:
                self.dropped_samples += len(item.pcm) - item.offset
                self.pieces[item.piece].cleared = True
        self._queue.clear()
        self._open = None
        self.dropped_marks.extend(dropped)
        return dropped

    def advance(self, now: float) -> list[str]:
        """Play until ``now``; returns the names of checkpoints reached, in order."""
        self._due.extend(self._play_until(now))
        return self._take_due()

    def _take_due(self) -> list[str]:
        due, self._due = self._due, []
        return due

    def _play_until(self, now: float) -> list[str]:
        acks: list[str] = []
        while now > self._time or (self._queue and isinstance(self._queue[0], _Mark)):
            acks.extend(self._acks())
            if not self._queue:
                break
            head = self._queue[0]
            assert isinstance(head, _Audio)
            remaining = len(head.pcm) - head.offset
            budget = round((now - self._time) * self.rate)
            if budget <= 0:
                break
            take = min(remaining, budget)
            self.heard.append(HeardSegment(self._time, head.pcm[head.offset : head.offset + take]))
            self.pieces[head.piece].heard_samples += take
            head.offset += take
            self._time += take / self.rate
            if head.offset >= len(head.pcm):
                self._queue.popleft()
        if not self._queue or now > self._time:
            self._time = max(self._time, now)
        acks.extend(self._acks())
        return acks

    def _acks(self) -> list[str]:
        acks: list[str] = []
        while self._queue and isinstance(self._queue[0], _Mark):
            mark = self._queue.popleft()
            assert isinstance(mark, _Mark)
            acks.append(mark.name)
        return acks

    @property
    def buffered_s(self) -> float:
        samples = sum(len(i.pcm) - i.offset for i in self._queue if isinstance(i, _Audio))
        return samples / self.rate

    @property
    def idle(self) -> bool:
        return not self._queue

    def heard_track(self, total_s: float) -> PCM:
        """The agent channel as the caller heard it, on the call's timeline."""
        out = np.zeros(round(total_s * self.rate), np.int16)
        for seg in self.heard:
            start = round(seg.start_s * self.rate)
            end = min(len(out), start + len(seg.pcm))
            if end > start:
                out[start:end] = seg.pcm[: end - start]
        return out
