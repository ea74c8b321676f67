"""A load generator of N concurrent Plivo callers over real WebSockets on loopback.

Each caller opens ``/stream``, sends ``start``, then streams its track as 20 ms ``media`` events
(μ-law 8 kHz, or L16 at 8 or 16 kHz) in real time, plays the agent's ``playAudio`` through
Plivo's playout model (by duration: the audio is never decoded, the generator must stay light),
answers each ``checkpoint`` with ``playedStream`` when playback reaches it and each
``clearAudio`` with ``clearedAudio``, and closes the socket when its track ends. Every media
frame's send time and every agent message's arrival time are recorded on CLOCK_MONOTONIC (which
the server process shares), and analysed afterwards (:func:`analyse`).

Hundreds of callers share one event loop, so the generator is built to be cheap: websockets'
sans-I/O client on plain asyncio protocols (no task per connection or per message), one
scheduler that wakes when the next frame is due (a heap of due times, at most one wake-up every
``tick_s``) and sends every frame due (or due within ``EARLY_S``), media JSON formatted
around pre-encoded base64 payloads, and a string scan instead of a JSON parse for
``playAudio``.

The generator checks itself, so that a saturated generator is never mistaken for a slow
server: how late it sent each frame against the caller's schedule (``send_late``), and how late
its own loop woke against what it asked for (``loop_lag``; when it is late, arrival stamps are
late too), per process (:func:`gen_stats`).

**Several processes.** :func:`run_load_procs` splits the callers over K worker processes
(``python -m bench.loadgen --worker``, each pinned to the load cores), gives them one shared
schedule on CLOCK_MONOTONIC, sums their live-call counts while they run and gathers their
:class:`CallLog` s and their own lateness and CPU afterwards. :func:`run_load` runs the callers
in this process instead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import heapq
import json
import os
import pickle
import resource
import sys
import tempfile
import time
import uuid
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

REPO = Path(__file__).resolve().parents[1]
MULAW = "audio/x-mulaw"
L16 = "audio/x-l16"
RATE = 8000  # the default stream: μ-law 8 kHz
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_S = 0.02
TICK_S = 0.001  # the scheduler wakes at most this often (bounds its lateness at high load)
# What is due this soon is sent now: asyncio rounds its sleeps up to whole milliseconds (epoll),
# so without this every frame would leave up to 1 ms late even on an idle machine.
EARLY_S = 0.001
MAX_SLEEP_S = 0.010  # ... and at least this often (a connection may have opened meanwhile)
STATUS_EVERY_S = 0.1  # workers report their live calls at most this often
RT_PRIORITY = 10  # SCHED_FIFO priority of the worker processes (see run_load_procs)


@dataclass
class Track:
    """One caller's audio: 20 ms frames (base64 in the stream's codec), and where its
    utterances start and end (sample indices at ``rate``)."""

    payloads: list[str]
    onsets: list[int]  # sample index of each utterance's first sound
    ends: list[int]  # sample index just after its last sound
    barge: list[bool]  # True: this utterance is planned to talk over the agent's reply
    encoding: str = MULAW
    rate: int = RATE

    @property
    def frames(self) -> int:
        return len(self.payloads)

    @property
    def frame_samples(self) -> int:
        return self.rate // 50

    @property
    def bytes_per_s(self) -> int:
        """Of agent audio in this stream's codec (μ-law: one byte a sample; L16: two)."""
        return self.rate * (1 if self.encoding == MULAW else 2)


def voiced_span(pcm: np.ndarray, threshold: int = 400, window: int = 80) -> tuple[int, int]:
    """First and last+1 sample of the part of ``pcm`` that is sound (``window``-sample windows
    whose peak passes ``threshold``): the caller's real onset and end of speech."""
    n = len(pcm) // window
    peaks = np.abs(pcm[: n * window].reshape(n, window).astype(np.int32)).max(axis=1)
    loud = np.flatnonzero(peaks >= threshold)
    if not len(loud):
        return 0, 0
    return int(loud[0]) * window, int(loud[-1] + 1) * window


def encode_frames(pcm: np.ndarray, encoding: str, rate: int) -> list[str]:
    """``pcm`` (int16 at ``rate``, whole frames) as base64 payloads of 20 ms each."""
    from voicebridge.audio.mulaw import mulaw_encode

    size = rate // 50
    if encoding == MULAW:
        data, step = mulaw_encode(pcm).tobytes(), size
    elif encoding == L16:
        data, step = pcm.astype("<i2").tobytes(), 2 * size
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    return [base64.b64encode(data[i : i + step]).decode("ascii") for i in range(0, len(data), step)]


def build_track(
    rng: np.random.Generator,
    utterance: np.ndarray,
    interjection: np.ndarray,
    duration_s: float,
    *,
    reply_s: float,
    silence_s: float,
    encoding: str = MULAW,
    rate: int = RATE,
) -> Track:
    """A call of ``duration_s``: the caller asks (``utterance``), the agent answers, the caller
    talks over the answer (``interjection``, 0.6-1.4 s into it), waits for the second answer to
    finish, and asks again; repeated. Offsets are drawn from ``rng`` so calls do not run in
    lockstep. ``utterance`` and ``interjection`` are int16 PCM at ``rate``; the stream is
    ``encoding`` (μ-law at 8 kHz, or L16 at 8 or 16 kHz)."""
    if encoding == MULAW and rate != 8000:
        raise ValueError("μ-law streams are 8 kHz")
    total = int(duration_s * rate)
    window = rate // 100  # 10 ms
    parts: list[np.ndarray] = []
    onsets: list[int] = []
    ends: list[int] = []
    barge: list[bool] = []
    cursor = 0

    def add(pcm: np.ndarray, is_barge: bool) -> None:
        nonlocal cursor
        start, stop = voiced_span(pcm, window=window)
        onsets.append(cursor + start)
        ends.append(cursor + stop)
        barge.append(is_barge)
        parts.append(pcm)
        cursor += len(pcm)

    def pause(seconds: float) -> None:
        nonlocal cursor
        n = int(seconds * rate)
        parts.append(np.zeros(n, np.int16))
        cursor += n

    pause(float(rng.uniform(0.3, 1.5)))
    while cursor < total:
        add(utterance, False)
        # The answer starts about silence_s after the end of speech; talk over it a while in.
        pause(silence_s + float(rng.uniform(0.6, 1.4)))
        add(interjection, True)
        pause(silence_s + reply_s + float(rng.uniform(0.5, 1.2)))
    pcm = np.concatenate(parts)
    size = rate // 50
    usable = total - total % size
    pcm = pcm[:usable]
    keep = [i for i, end in enumerate(ends) if end + int((silence_s + 0.8) * rate) < usable]
    return Track(
        encode_frames(pcm, encoding, rate),
        [onsets[i] for i in keep],
        [ends[i] for i in keep],
        [barge[i] for i in keep],
        encoding,
        rate,
    )


@dataclass
class CallLog:
    """What one caller did and saw (monotonic seconds)."""

    stream_id: str
    track: Track
    start_at: float  # when frame 0 was due
    sent: np.ndarray  # send time of each media frame (nan: not sent)
    audio: list[tuple[float, float]] = field(default_factory=list)  # (arrival, seconds)
    clears: list[float] = field(default_factory=list)
    checkpoints: int = 0
    acks: int = 0
    other: dict[str, int] = field(default_factory=dict)
    connect_at: float | None = None  # when the TCP connection was attempted
    connected_at: float | None = None  # when the WebSocket handshake completed
    closed_at: float | None = None
    error: str | None = None
    close_code: int | None = None
    skipped: bool = False  # chained after a call that ended too late to start before `until`

    def state(self) -> dict[str, Any]:
        """Every field but the track (which the parent of a worker already has)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "track"}


FRAME, MARK = 0, 1  # what a scheduler entry is for: the caller's next frame, or an ack


class _Caller(asyncio.Protocol):
    """One Plivo stream: sans-I/O WebSocket client plus the playout model (by duration)."""

    def __init__(self, url: str, log: CallLog, driver: _Driver) -> None:
        self.driver = driver
        self.loop = driver.loop
        self.log = log
        self.track = log.track
        self.ws = ClientProtocol(parse_uri(url), max_size=None)
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.done = False
        self.next_frame = 0
        self.seq = 0
        self.play_end = 0.0  # when the audio queued at "Plivo" runs out
        self.marks: deque[tuple[float, str]] = deque()
        self.on_end: Callable[[], None] | None = None
        self.stream_id = log.stream_id
        self._media_head = (
            '{"sequenceNumber":%d,"streamId":"' + self.stream_id + '","event":"media",'
            '"media":{"track":"inbound","timestamp":"%d","chunk":%d,"payload":"'
        )

    # --- asyncio protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.driver.live += 1
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        now = self.loop.time()
        for event in ws.events_received():
            if isinstance(event, Response):
                if event.status_code != 101:
                    self.log.error = f"handshake refused: HTTP {event.status_code}"
                else:
                    self.open = True
                    self.log.connected_at = now
                    self._send_text(self._start_message())
                    # Opened late (a slow server): the stream starts live, as a phone call's
                    # would; the frames due before are never sent (the server's loss, counted
                    # in gen_stats), rather than all at once, which would stall this loop.
                    missed = int((now - self.log.start_at) / FRAME_S)
                    self.next_frame = max(self.next_frame, missed)
            elif not isinstance(event, Frame):
                continue
            elif event.opcode is Opcode.TEXT:
                self._on_text(str(event.data, "utf-8"), now)
            elif event.opcode is Opcode.CLOSE and self.log.close_code is None:
                self.log.close_code = ws.close_code
        self._flush()
        # A burst of replies to hundreds of sockets is hundreds of these callbacks in one turn
        # of the loop: send what fell due meanwhile rather than after the whole burst.
        self.driver.run_due_if_idle(now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.log.closed_at = self.loop.time()
        if exc is not None and self.log.error is None:
            self.log.error = repr(exc)
        if not self.done:
            self.done = True
            self.driver.ended(self)

    # --- sending ------------------------------------------------------------------------------
    def _flush(self) -> None:
        data = self.ws.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(data))

    def _send_text(self, text: str) -> None:
        self.ws.send_text(text.encode())
        self._flush()

    def _start_message(self) -> str:
        self.seq += 1
        return json.dumps(
            {
                "sequenceNumber": self.seq,
                "event": "start",
                "start": {
                    "callId": str(uuid.uuid4()),
                    "streamId": self.stream_id,
                    "accountId": "MABENCH",
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": self.track.encoding, "sampleRate": self.track.rate},
                },
                "extra_headers": "{}",
            }
        )

    def service(self, now: float) -> float | None:
        """Send every frame now due (normally one), then any checkpoint acks now due. Returns
        when the next frame is due (None: the track is over or the call is gone)."""
        if self.done:
            return None
        log = self.log
        if not self.open or self.ws.state is not State.OPEN:
            # Still in the handshake: look again shortly (its frames go out late, and say so).
            return max(now + TICK_S, log.start_at) if log.error is None else None
        payloads = self.track.payloads
        while self.next_frame < len(payloads) and log.start_at + self.next_frame * FRAME_S <= now:
            k = self.next_frame
            self.seq += 1
            head = self._media_head % (self.seq, int(now * 1000), k)
            self.ws.send_text((head + payloads[k] + '"},"extra_headers":"{}"}').encode())
            log.sent[k] = self.loop.time()
            self.next_frame = k + 1
        marks = self.marks
        while marks and marks[0][0] <= now:
            _, name = marks.popleft()
            self.seq += 1
            log.acks += 1
            self.ws.send_text(
                json.dumps(
                    {
                        "event": "playedStream",
                        "sequenceNumber": self.seq,
                        "streamId": self.stream_id,
                        "name": name,
                    }
                ).encode()
            )
        if self.next_frame >= len(payloads):
            self.ws.send_close(1000, "call ended")
            self._flush()
            return None
        self._flush()
        return log.start_at + self.next_frame * FRAME_S

    # --- receiving: the playout model -----------------------------------------------------------
    def _on_text(self, text: str, now: float) -> None:
        head = text[:48]
        if "playAudio" in head:
            p = text.find('"payload"')
            start = text.find('"', p + 9) + 1
            end = text.find('"', start)
            n64 = end - start
            size = n64 // 4 * 3 - (text[end - 1] == "=") - (text[end - 2] == "=")
            seconds = size / self.track.bytes_per_s
            self.log.audio.append((now, seconds))
            self.play_end = max(self.play_end, now) + seconds
            return
        message = json.loads(text)
        kind = message.get("event")
        if kind == "checkpoint":
            self.log.checkpoints += 1
            due = max(self.play_end, now)
            self.marks.append((due, str(message.get("name"))))
            self.driver.schedule(due, MARK, self)
        elif kind == "clearAudio":
            self.log.clears.append(now)
            self.marks.clear()
            self.play_end = now
            if self.ws.state is not State.OPEN:
                return
            self.seq += 1
            self.ws.send_text(
                json.dumps(
                    {
                        "sequenceNumber": self.seq,
                        "event": "clearedAudio",
                        "streamId": self.stream_id,
                    }
                ).encode()
            )
        else:
            self.log.other[str(kind)] = self.log.other.get(str(kind), 0) + 1


Status = Callable[[int, int, int], None]  # (live calls, calls ended, calls with an error)


class _Driver:
    """The callers of one process and the scheduler that sends their frames on time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_s: float) -> None:
        self.loop = loop
        self.tick_s = tick_s
        self.heap: list[tuple[float, int, int, _Caller]] = []
        self._seq = 0
        self.live = 0  # connections made and not yet lost
        self.finished = 0
        self.errors = 0
        self.callers: set[_Caller] = set()
        self.last_run = 0.0  # when run_due last ran
        self.loop_lag = array("d")  # how late each wake-up was against the sleep asked for
        self.late_wakes: list[tuple[float, float]] = []  # (when, lag) of wake-ups > 5 ms late

    def schedule(self, due: float, kind: int, caller: _Caller) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (due, self._seq, kind, caller))

    def ended(self, caller: _Caller) -> None:
        self.live -= 1
        self.finished += 1
        self.errors += caller.log.error is not None
        self.callers.discard(caller)
        if caller.on_end is not None:
            caller.on_end()

    def run_due(self, now: float) -> None:
        """Send what is due by ``now`` + ``EARLY_S``."""
        heap = self.heap
        self.last_run = now
        horizon = now + EARLY_S
        while heap and heap[0][0] <= horizon:
            _, _, kind, caller = heapq.heappop(heap)
            due = caller.service(horizon)
            if kind == FRAME and due is not None:
                self.schedule(due, FRAME, caller)

    def run_due_if_idle(self, now: float) -> None:
        """``run_due`` unless the scheduler ran less than ``tick_s`` ago."""
        if now - self.last_run >= self.tick_s:
            self.run_due(now)

    def next_sleep(self, now: float) -> float:
        if not self.heap:
            return MAX_SLEEP_S
        return min(max(self.heap[0][0] - EARLY_S - now, self.tick_s), MAX_SLEEP_S)


def schedule_starts(n: int, stagger_s: float, lead_s: float = 0.8) -> list[float]:
    """Monotonic times frame 0 of each of ``n`` callers is due: spread evenly over
    ``stagger_s``, the first ``lead_s`` from now (the connections open 0.3 s before)."""
    began = time.monotonic() + lead_s
    return [began + (stagger_s * i / n if n > 1 else 0.0) for i in range(n)]


@dataclass
class LoadRun:
    """The callers' logs (in the order of the tracks) and each generator process's report on
    itself (:func:`gen_stats`)."""

    logs: list[CallLog]
    gen: list[dict[str, Any]]


async def drive(
    url: str,
    tracks: Sequence[Track],
    starts: Sequence[float],
    *,
    stream_ids: Sequence[str] | None = None,
    tick_s: float = TICK_S,
    connect_timeout_s: float = 10.0,
    on_status: Status | None = None,
    after: Sequence[int | None] | None = None,
    until: float | None = None,
) -> LoadRun:
    """Run one caller per track in this process, frame 0 of caller i due at ``starts[i]``
    (CLOCK_MONOTONIC); returns when every caller has finished (each ends with its track; the
    whole is bounded by the last start plus the longest track plus 30 s).

    ``after[i]``: the call that must have ended before call i starts (calls back to back in a
    slot, so that a slow server never has more calls than slots); call i then starts when
    both its time and that end have come, and is skipped (``skipped``) if that is past
    ``until``."""
    loop = asyncio.get_running_loop()
    cpu0, wall0 = time.process_time(), loop.time()
    uri = parse_uri(url)
    n = len(tracks)
    ids = list(stream_ids) if stream_ids is not None else [str(uuid.uuid4()) for _ in range(n)]
    logs = [
        CallLog(ids[i], track, float(starts[i]), np.full(track.frames, np.nan))
        for i, track in enumerate(tracks)
    ]
    driver = _Driver(loop, tick_s)
    gc_pauses = array("d")
    gc_began = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_began[0] = time.perf_counter()
        else:
            gc_pauses.append(time.perf_counter() - gc_began[0])

    gc.callbacks.append(on_gc)
    longest = max((t.frames for t in tracks), default=0) * FRAME_S
    last_start = max(starts, default=loop.time()) if until is None else until
    deadline = last_start + longest + 30.0
    pending = n  # connections not yet attempted or made
    chain = list(after) if after is not None else [None] * n
    gone = {j: asyncio.Event() for j in chain if j is not None}  # calls others wait for

    def end(i: int) -> None:
        if i in gone:
            gone[i].set()

    async def connect(i: int, log: CallLog) -> None:
        nonlocal pending
        caller: _Caller | None = None
        try:
            before = chain[i]
            if before is not None:
                await gone[before].wait()
                log.start_at = max(log.start_at, loop.time() + 0.3)
                if until is not None and log.start_at > until:
                    log.skipped = True
                    return
            await asyncio.sleep(max(0.0, log.start_at - 0.3 - loop.time()))
            log.connect_at = loop.time()
            _, caller = await asyncio.wait_for(
                loop.create_connection(lambda: _Caller(url, log, driver), uri.host, uri.port),
                connect_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            log.error = f"connect: {exc!r}"
            driver.finished += 1
            driver.errors += 1
            return
        finally:
            pending -= 1
            if caller is None or caller.done:
                end(i)
        assert caller is not None
        caller.on_end = lambda: end(i)
        driver.callers.add(caller)
        driver.schedule(log.start_at, FRAME, caller)

    connecting = [loop.create_task(connect(i, log)) for i, log in enumerate(logs)]
    reported = (-1, -1, -1)
    next_status = 0.0
    try:
        while True:
            now = loop.time()
            driver.run_due(now)
            if on_status is not None and now >= next_status:
                status = (driver.live, driver.finished, driver.errors)
                if status != reported:
                    reported = status
                    on_status(*status)
                next_status = now + STATUS_EVERY_S
            if (pending == 0 and driver.live == 0) or now >= deadline:
                break
            wait = driver.next_sleep(now)
            await asyncio.sleep(wait)
            lag = loop.time() - now - wait
            driver.loop_lag.append(lag)
            if lag > 0.005 and len(driver.late_wakes) < 500:
                driver.late_wakes.append((now + wait, lag))
    finally:
        for task in connecting:
            task.cancel()
        for caller in list(driver.callers):
            if caller.transport is not None and not caller.done:
                caller.log.error = caller.log.error or "still open at the deadline"
                caller.transport.close()
        if on_status is not None:
            on_status(0, driver.finished, driver.errors)
        gc.callbacks.remove(on_gc)
    cpu_s, wall_s = time.process_time() - cpu0, loop.time() - wall0
    stats = gen_stats(logs, driver.loop_lag, cpu_s, wall_s, gc_pauses)
    first = min(starts, default=wall0)
    # When the loop woke late, in seconds from the first caller's start: late at the end of a
    # level points at the end of calls (the parent's work), all through at load or the machine.
    stats["late_wakes"] = [(round(t - first, 3), round(v * 1000, 2)) for t, v in driver.late_wakes]
    return LoadRun(logs, [stats])


def _summary_ms(values: np.ndarray) -> dict[str, Any]:
    if not values.size:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    q = np.percentile(values, [50, 99], method="inverted_cdf")
    return {
        "n": int(values.size),
        "p50": round(float(q[0]) * 1000, 2),
        "p99": round(float(q[1]) * 1000, 2),
        "max": round(float(values.max()) * 1000, 2),
    }


def send_lateness(logs: Sequence[CallLog]) -> np.ndarray:
    """How late each frame was sent against its caller's schedule (seconds): the generator's
    own lateness. Frames due before the WebSocket was open are left out: their wait is the
    server's (a slow handshake, see :func:`handshake_times`), not the generator's."""
    parts = []
    for log in logs:
        if log.connected_at is None:
            continue
        due = log.start_at + np.arange(len(log.sent)) * FRAME_S
        keep = ~np.isnan(log.sent) & (due >= log.connected_at)
        parts.append((log.sent - due)[keep])
    return np.concatenate(parts) if parts else np.zeros(0)


def handshake_times(logs: Sequence[CallLog]) -> np.ndarray:
    """From opening the TCP connection to the WebSocket being open (seconds), per call: the
    server's, as is the wait of the frames due meanwhile."""
    return np.array(
        [
            log.connected_at - log.connect_at
            for log in logs
            if log.connected_at is not None and log.connect_at is not None
        ],
        dtype=np.float64,
    )


def gen_stats(
    logs: Sequence[CallLog],
    loop_lag: Sequence[float],
    cpu_s: float,
    wall_s: float,
    gc_pauses: Sequence[float] = (),
) -> dict[str, Any]:
    """One generator process on itself: its calls, how late it sent its frames and how late its
    loop woke (ms), its garbage collector's pauses, and the CPU it used (a share of one core
    over its wall time). Beside them, the server's handshake times and how many frames were due
    before their WebSocket was open (sent at once when it opened)."""
    before_open = sum(
        int(np.count_nonzero(log.start_at + np.arange(len(log.sent)) * FRAME_S < log.connected_at))
        for log in logs
        if log.connected_at is not None
    )
    return {
        "pid": os.getpid(),
        "cores": sorted(os.sched_getaffinity(0)),
        "calls": len(logs),
        "send_late_ms": _summary_ms(send_lateness(logs)),
        "loop_lag_ms": _summary_ms(np.asarray(loop_lag, dtype=np.float64)),
        "gc_pause_ms": _summary_ms(np.asarray(gc_pauses, dtype=np.float64)),
        "handshake_ms": _summary_ms(handshake_times(logs)),
        "frames_due_before_open": before_open,
        "cpu_s": round(cpu_s, 2),
        "wall_s": round(wall_s, 2),
        "cpu_pct_of_core": round(100 * cpu_s / max(wall_s, 1e-6), 1),
        # CPU per frame sent (everything the process did: sending, receiving the agent's audio)
        "cpu_us_per_frame": round(
            1e6 * cpu_s / max(int(sum((~np.isnan(log.sent)).sum() for log in logs)), 1), 1
        ),
    }


async def run_load(
    url: str,
    tracks: Sequence[Track],
    *,
    stagger_s: float,
    tick_s: float = TICK_S,
    connect_timeout_s: float = 10.0,
    on_active: Callable[[int], None] | None = None,
) -> list[CallLog]:
    """Run one caller per track in this process, starts spread evenly over ``stagger_s``;
    returns their logs when every caller has finished (see :func:`drive`)."""

    def status(live: int, ended: int, errors: int) -> None:
        if on_active is not None:
            on_active(live)

    run = await drive(
        url,
        tracks,
        schedule_starts(len(tracks), stagger_s),
        tick_s=tick_s,
        connect_timeout_s=connect_timeout_s,
        on_status=status,
    )
    return run.logs


# --- several processes --------------------------------------------------------------------------


class _Worker:
    """The parent's side of one worker process."""

    def __init__(self, proc: asyncio.subprocess.Process, result: Path) -> None:
        self.proc = proc
        self.result = result
        self.status = (0, 0, 0)
        self.done = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def line(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        return json.loads(raw) if raw else None


async def run_load_procs(
    url: str,
    tracks: Sequence[Track],
    *,
    procs: int,
    stagger_s: float = 0.0,
    starts: Sequence[float] | None = None,
    cores: set[int] | None = None,
    tick_s: float = TICK_S,
    on_active: Callable[[int], None] | None = None,
    on_status: Status | None = None,
    on_spawn: Callable[[list[int]], None] | None = None,
    realtime: bool = True,
    after: Sequence[int | None] | None = None,
    until: float | None = None,
) -> LoadRun:
    """Run the callers in ``procs`` worker processes (callers dealt round-robin), each pinned to
    ``cores`` (default: this process's cores). Frame 0 of caller i is due at ``starts[i]``
    (CLOCK_MONOTONIC), or starts spread over ``stagger_s`` from when every worker is ready.
    ``on_active`` / ``on_status`` see the sums over the workers; ``on_spawn`` their pids.
    ``after`` and ``until`` as for :func:`drive` (``after[i] < i``; a chain of calls stays in
    one worker).

    ``realtime``: each worker asks for SCHED_FIFO (needs root or CAP_SYS_NICE; without it the
    worker runs as it is, and its report says ``sched: other``). On a machine shared with other
    work, a worker at normal priority waits for its core behind others and sends late, though
    it needs little CPU (600 callers: about 12 % of a core); real-time priority takes the same
    CPU without the wait, and the kernel caps real-time tasks at 95 % of each second."""
    procs = max(1, min(procs, len(tracks)))
    chain = list(after) if after is not None else [None] * len(tracks)
    worker_of: list[int] = []
    roots = 0
    for before in chain:
        if before is None:
            worker_of.append(roots % procs)
            roots += 1
        else:
            worker_of.append(worker_of[before])
    share = [[i for i in range(len(tracks)) if worker_of[i] == w] for w in range(procs)]
    cores = cores or set(os.sched_getaffinity(0))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys([str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    )
    tmp = Path(tempfile.mkdtemp(prefix="loadgen-"))
    workers: list[_Worker] = []
    try:
        for i in range(procs):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.loadgen",
                "--worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=str(REPO),
                env=env,
                limit=1 << 20,
            )
            workers.append(_Worker(proc, tmp / f"worker-{i}.pickle"))
        for worker in workers:
            ready = await worker.line(60.0)
            if not ready or ready.get("type") != "ready":
                raise RuntimeError(f"load generator worker {worker.pid} did not start")
        if on_spawn is not None:
            on_spawn([w.pid for w in workers])
        variants: list[Track] = []
        index: dict[int, int] = {}
        for track in tracks:
            if id(track) not in index:
                index[id(track)] = len(variants)
                variants.append(track)
        ids = [str(uuid.uuid4()) for _ in tracks]
        when = list(starts) if starts is not None else schedule_starts(len(tracks), stagger_s)
        for w, worker in enumerate(workers):
            mine = share[w]
            local = {i: k for k, i in enumerate(mine)}
            job = {
                "url": url,
                "variants": variants,
                "calls": [(index[id(tracks[i])], when[i], ids[i]) for i in mine],
                "after": [None if (b := chain[i]) is None else local[b] for i in mine],
                "until": until,
                "tick_s": tick_s,
                "realtime": realtime,
                "cores": sorted(cores),
                "result": str(worker.result),
            }
            assert worker.proc.stdin is not None
            worker.proc.stdin.write(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
            await worker.proc.stdin.drain()
            worker.proc.stdin.close()

        async def follow(worker: _Worker) -> None:
            while True:
                message = await worker.line()
                if message is None or message.get("type") == "done":
                    worker.done = message is not None
                    return
                if message.get("type") == "status":
                    worker.status = (message["live"], message["ended"], message["errors"])
                    live = sum(w.status[0] for w in workers)
                    ended = sum(w.status[1] for w in workers)
                    errors = sum(w.status[2] for w in workers)
                    if on_active is not None:
                        on_active(live)
                    if on_status is not None:
                        on_status(live, ended, errors)

        await asyncio.gather(*(follow(w) for w in workers))
        for worker in workers:
            await worker.proc.wait()
        logs: list[CallLog | None] = [None] * len(tracks)
        gen: list[dict[str, Any]] = []
        for w, worker in enumerate(workers):
            if not worker.done or not worker.result.exists():
                raise RuntimeError(f"load generator worker {worker.pid} failed")
            result = pickle.loads(worker.result.read_bytes())
            gen.append(result["gen"])
            for i, state in zip(share[w], result["logs"], strict=True):
                logs[i] = CallLog(track=tracks[i], **state)
        return LoadRun([log for log in logs if log is not None], gen)
    finally:
        for worker in workers:
            if worker.proc.returncode is None:
                worker.proc.kill()
                await worker.proc.wait()
        for path in tmp.iterdir():
            path.unlink()
        tmp.rmdir()


def _worker_main() -> None:
    """A worker process: says it is ready, reads its job (a pickle) from stdin, runs its
    callers, reports its live calls on stdout as it goes, and writes its logs to a file."""

    def say(kind: str, **fields_: Any) -> None:
        sys.stdout.write(json.dumps({"type": kind, **fields_}) + "\n")
        sys.stdout.flush()

    say("ready")
    job = pickle.loads(sys.stdin.buffer.read())
    if job.get("cores"):
        os.sched_setaffinity(0, set(job["cores"]))
    sched = "other"
    if job.get("realtime"):
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
            sched = "fifo"
        except (PermissionError, OSError):
            pass
    variants = job["variants"]
    calls = job["calls"]

    def status(live: int, ended: int, errors: int) -> None:
        say("status", live=live, ended=ended, errors=errors)

    run = asyncio.run(
        drive(
            job["url"],
            [variants[v] for v, _, _ in calls],
            [start for _, start, _ in calls],
            stream_ids=[sid for _, _, sid in calls],
            tick_s=job["tick_s"],
            on_status=status,
            after=job["after"],
            until=job["until"],
        )
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    gen = run.gen[0] | {"cpu_s_process": round(usage.ru_utime + usage.ru_stime, 2), "sched": sched}
    payload = {"logs": [log.state() for log in run.logs], "gen": gen}
    Path(job["result"]).write_bytes(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    say("done")


# --- analysis -----------------------------------------------------------------------------------


def _wall(log: CallLog, sample: int) -> float:
    """When the caller's sample ``sample`` went out: its frame's send time plus its place in
    the frame (nan when that frame was never sent)."""
    size = log.track.frame_samples
    k = sample // size
    if k >= len(log.sent):
        return float("nan")
    return float(log.sent[k]) + (sample - k * size) / log.track.rate


def analyse(log: CallLog, silence_s: float) -> dict[str, Any]:
    """Per call: reply latencies, barge-in reactions, outgoing audio lateness (playout gaps
    within a reply), and how late the generator itself sent its frames."""
    audio = log.audio
    arrivals = np.array([a for a, _ in audio]) if audio else np.zeros(0)
    onsets = [_wall(log, s) for s in log.track.onsets]
    ends = [_wall(log, s) for s in log.track.ends]
    latencies: list[float] = []
    missing_replies = 0
    reply_firsts: set[int] = set()
    for j, end in enumerate(ends):
        if np.isnan(end):
            continue
        limit = onsets[j + 1] if j + 1 < len(onsets) else float("inf")
        idx = int(np.searchsorted(arrivals, end + 0.25))
        if idx < len(arrivals) and arrivals[idx] < limit:
            latencies.append(arrivals[idx] - end - silence_s)
            reply_firsts.add(idx)
        elif not log.track.barge[j] or j + 1 < len(onsets):
            missing_replies += 1
    # Replay the playout to know what was playing when, and the gaps inside a reply.
    clears = sorted(log.clears)
    events = sorted([(t, 0, i) for i, (t, _) in enumerate(audio)] + [(t, 1, -1) for t in clears])
    play_end = 0.0
    playing: list[tuple[float, float]] = []
    gaps: list[float] = []
    after_clear = True
    for t, kind, i in events:
        if kind == 1:
            if playing and playing[-1][1] > t:
                playing[-1] = (playing[-1][0], t)
            play_end = t
            after_clear = True
            continue
        seconds = audio[i][1]
        first = i in reply_firsts or after_clear
        if not first:
            gaps.append(max(0.0, t - play_end))
        start = max(play_end, t)
        if playing and abs(playing[-1][1] - start) < 1e-9:
            playing[-1] = (playing[-1][0], start + seconds)
        else:
            playing.append((start, start + seconds))
        play_end = start + seconds
        after_clear = False
    bargeins: list[float] = []
    pairs: list[tuple[float, float]] = []
    barge_missed = 0
    barge_not_playing = 0
    for j, onset in enumerate(onsets):
        if not log.track.barge[j] or np.isnan(onset):
            continue
        if not any(a <= onset < b - 0.05 for a, b in playing):
            barge_not_playing += 1
            continue
        idx = int(np.searchsorted(np.array(clears), onset)) if clears else 0
        if clears and idx < len(clears) and clears[idx] < onset + 2.0:
            bargeins.append(clears[idx] - onset)
            pairs.append((onset, clears[idx]))
        else:
            barge_missed += 1
    gen_late = send_lateness([log])
    return {
        "latency": latencies,
        "missing_replies": missing_replies,
        "bargein": bargeins,
        "bargein_pairs": pairs,
        "barge_missed": barge_missed,
        "barge_not_playing": barge_not_playing,
        "out_gaps": gaps,
        "gen_late": gen_late,
        "frames_sent": int((~np.isnan(log.sent)).sum()),
        "frames": len(log.sent),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="bench/loadgen.py: " + __doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help="run as a worker (stdin: its job)")
    args = parser.parse_args(argv)
    if not args.worker:
        parser.error("this module is a library; --worker runs one worker process")
    _worker_main()


if __name__ == "__main__":
    main()
