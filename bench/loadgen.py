"""A load generator of N concurrent Plivo callers over real WebSockets on loopback.

Each caller opens ``/stream``, sends ``start``, then streams its track as 20 ms μ-law ``media``
events in real time, plays the agent's ``playAudio`` through Plivo's playout model (by duration:
the audio is never decoded, the generator must stay light), answers each ``checkpoint`` with
``playedStream`` when playback reaches it and each ``clearAudio`` with ``clearedAudio``, and
closes the socket when its track ends. Every media frame's send time and every agent message's
arrival time are recorded on CLOCK_MONOTONIC (which the server process shares), and analysed
afterwards (:func:`analyse`).

Hundreds of callers share one event loop, so the generator is built to be cheap: websockets'
sans-I/O client on plain asyncio protocols (no task per connection or per message), one ticker
that sends every caller's due frames, media JSON formatted around pre-encoded base64 payloads,
and a string scan instead of a JSON parse for ``playAudio``. The generator checks itself: how
late it sent each frame against the caller's real-time schedule is reported with the results.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms of μ-law at 8 kHz
FRAME_S = 0.02


@dataclass
class Track:
    """One caller's audio: μ-law frames (base64), and where its utterances start and end."""

    payloads: list[str]
    onsets: list[int]  # sample index of each utterance's first sound
    ends: list[int]  # sample index just after its last sound
    barge: list[bool]  # True: this utterance is planned to talk over the agent's reply

    @property
    def frames(self) -> int:
        return len(self.payloads)


def voiced_span(pcm: np.ndarray, threshold: int = 400, window: int = 80) -> tuple[int, int]:
    """First and last+1 sample of the part of ``pcm`` that is sound (10 ms windows whose peak
    passes ``threshold``): the caller's real onset and end of speech."""
    n = len(pcm) // window
    peaks = np.abs(pcm[: n * window].reshape(n, window).astype(np.int32)).max(axis=1)
    loud = np.flatnonzero(peaks >= threshold)
    if not len(loud):
        return 0, 0
    return int(loud[0]) * window, int(loud[-1] + 1) * window


def build_track(
    rng: np.random.Generator,
    utterance: np.ndarray,
    interjection: np.ndarray,
    duration_s: float,
    *,
    reply_s: float,
    silence_s: float,
) -> Track:
    """A call of ``duration_s``: the caller asks (``utterance``), the agent answers, the caller
    talks over the answer (``interjection``, 0.6-1.4 s into it), waits for the second answer to
    finish, and asks again; repeated. Offsets are drawn from ``rng`` so calls do not run in
    lockstep."""
    from voicebridge.audio.mulaw import mulaw_encode

    total = int(duration_s * RATE)
    parts: list[np.ndarray] = []
    onsets: list[int] = []
    ends: list[int] = []
    barge: list[bool] = []
    cursor = 0

    def add(pcm: np.ndarray, is_barge: bool) -> None:
        nonlocal cursor
        start, stop = voiced_span(pcm)
        onsets.append(cursor + start)
        ends.append(cursor + stop)
        barge.append(is_barge)
        parts.append(pcm)
        cursor += len(pcm)

    def pause(seconds: float) -> None:
        nonlocal cursor
        n = int(seconds * RATE)
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
    usable = total - total % FRAME_SAMPLES
    pcm = pcm[:usable]
    keep = [i for i, end in enumerate(ends) if end + int((silence_s + 0.8) * RATE) < usable]
    law = mulaw_encode(pcm)
    payloads = [
        base64.b64encode(law[i : i + FRAME_SAMPLES].tobytes()).decode("ascii")
        for i in range(0, usable, FRAME_SAMPLES)
    ]
    return Track(
        payloads,
        [onsets[i] for i in keep],
        [ends[i] for i in keep],
        [barge[i] for i in keep],
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
    connected_at: float | None = None
    closed_at: float | None = None
    error: str | None = None
    close_code: int | None = None


class _Caller(asyncio.Protocol):
    """One Plivo stream: sans-I/O WebSocket client plus the playout model (by duration)."""

    def __init__(self, url: str, log: CallLog, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.log = log
        self.ws = ClientProtocol(parse_uri(url), max_size=None)
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.done = loop.create_future()
        self.next_frame = 0
        self.seq = 0
        self.play_end = 0.0  # when the audio queued at "Plivo" runs out
        self.marks: deque[tuple[float, str]] = deque()
        self.stream_id = log.stream_id
        self._media_head = (
            '{"sequenceNumber":%d,"streamId":"' + self.stream_id + '","event":"media",'
            '"media":{"track":"inbound","timestamp":"%d","chunk":%d,"payload":"'
        )

    # --- asyncio protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
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
            elif event.opcode is Opcode.TEXT:
                self._on_text(event.data.decode(), now)
            elif event.opcode is Opcode.CLOSE and self.log.close_code is None:
                self.log.close_code = ws.close_code
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.log.closed_at = self.loop.time()
        if exc is not None and self.log.error is None:
            self.log.error = repr(exc)
        if not self.done.done():
            self.done.set_result(None)

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
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
                },
                "extra_headers": "{}",
            }
        )

    def send_due(self, now: float) -> None:
        """Send every frame now due (normally one), then any checkpoint acks now due."""
        if not self.open or self.ws.state is not State.OPEN:
            return
        log = self.log
        payloads = log.track.payloads
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
        self._flush()
        if self.next_frame >= len(payloads):
            self.ws.send_close(1000, "call ended")
            self._flush()

    # --- receiving: the playout model -----------------------------------------------------------
    def _on_text(self, text: str, now: float) -> None:
        head = text[:48]
        if "playAudio" in head:
            p = text.find('"payload"')
            start = text.find('"', p + 9) + 1
            end = text.find('"', start)
            n64 = end - start
            size = n64 // 4 * 3 - (text[end - 1] == "=") - (text[end - 2] == "=")
            seconds = size / RATE  # μ-law: one byte a sample
            self.log.audio.append((now, seconds))
            self.play_end = max(self.play_end, now) + seconds
            return
        message = json.loads(text)
        kind = message.get("event")
        if kind == "checkpoint":
            self.log.checkpoints += 1
            self.marks.append((max(self.play_end, now), str(message.get("name"))))
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


async def run_load(
    url: str,
    tracks: Sequence[Track],
    *,
    stagger_s: float,
    tick_s: float = 0.004,
    connect_timeout_s: float = 10.0,
    on_active: Any = None,
) -> list[CallLog]:
    """Run one caller per track, starts spread evenly over ``stagger_s``; returns when every
    caller has finished (each ends with its track; the whole is bounded by the longest track
    plus ``stagger_s`` plus 30 s)."""
    loop = asyncio.get_running_loop()
    uri = parse_uri(url)
    n = len(tracks)
    began = loop.time() + 0.5
    logs: list[CallLog] = []
    callers: list[_Caller] = []
    for i, track in enumerate(tracks):
        start_at = began + (stagger_s * i / n if n > 1 else 0.0) + 0.3
        sent = np.full(track.frames, np.nan)
        logs.append(CallLog(str(uuid.uuid4()), track, start_at, sent))
    longest = max(t.frames for t in tracks) * FRAME_S
    deadline = began + stagger_s + longest + 30.0

    async def connect(i: int) -> None:
        log = logs[i]
        await asyncio.sleep(max(0.0, log.start_at - 0.3 - loop.time()))
        try:
            _, caller = await asyncio.wait_for(
                loop.create_connection(lambda: _Caller(url, log, loop), uri.host, uri.port),
                connect_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            log.error = f"connect: {exc!r}"
            return
        callers.append(caller)

    connecting = [loop.create_task(connect(i)) for i in range(n)]
    active_count = -1
    try:
        while loop.time() < deadline:
            now = loop.time()
            live = 0
            for caller in callers:
                if not caller.done.done():
                    live += 1
                    caller.send_due(now)
            if on_active is not None and live != active_count:
                active_count = live
                on_active(live)
            if all(t.done() for t in connecting) and live == 0:
                break
            await asyncio.sleep(tick_s)
    finally:
        for task in connecting:
            task.cancel()
        for caller in callers:
            if caller.transport is not None and not caller.done.done():
                caller.log.error = caller.log.error or "still open at the deadline"
                caller.transport.close()
        if on_active is not None:
            on_active(0)
    return logs


# --- analysis -----------------------------------------------------------------------------------


def _wall(log: CallLog, sample: int) -> float:
    """When the caller's sample ``sample`` went out: its frame's send time plus its place in
    the frame (nan when that frame was never sent)."""
    k = sample // FRAME_SAMPLES
    if k >= len(log.sent):
        return float("nan")
    return float(log.sent[k]) + (sample - k * FRAME_SAMPLES) / RATE


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
    due = log.start_at + np.arange(len(log.sent)) * FRAME_S
    gen_late = (log.sent - due)[~np.isnan(log.sent)]
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


def now_monotonic() -> float:
    return time.monotonic()
