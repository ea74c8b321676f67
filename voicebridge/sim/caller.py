"""Plivo's side of a call, over a real WebSocket: the simulator's caller and the tests' client.

It sends ``start``, then the caller's audio as 20 ms ``media`` events, plays the agent's
``playAudio`` through the playout model, answers checkpoints with ``playedStream`` and clears with
``clearedAudio``, and finally closes the socket as Plivo does when the call ends. Time is the
caller's stream time (20 ms per media event), paced in real time or as fast as the server keeps up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicebridge.audio.codec import codec_for
from voicebridge.frames import PCM
from voicebridge.plivo.formats import StreamFormat
from voicebridge.sim.playout import PlayoutModel, ReceivedPiece


@dataclass(frozen=True)
class Keypress:
    """Keypad digits the caller presses instead of speaking: one ``dtmf`` event per digit,
    ``gap_ms`` of silence after each (people do not type instantly)."""

    digits: str
    gap_ms: int = 200


@dataclass
class WireEvent:
    """One message on the wire, stamped with the caller's stream time in seconds."""

    t: float
    direction: str  # "in" (to voicebridge) or "out" (from voicebridge)
    message: dict[str, Any]


@dataclass
class CallRecord:
    """Everything one simulated call saw."""

    fmt: StreamFormat
    call_id: str
    stream_id: str
    events: list[WireEvent] = field(default_factory=list)
    caller_audio: PCM = field(default_factory=lambda: np.zeros(0, np.int16))
    heard_audio: PCM = field(default_factory=lambda: np.zeros(0, np.int16))
    duration_s: float = 0.0
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str = ""  # "caller" or "agent"
    protocol_errors: list[str] = field(default_factory=list)
    # (start_s, end_s) of each scripted caller utterance on the call's timeline
    utterance_spans: list[tuple[float, float]] = field(default_factory=list)
    # (start_s, seconds) of each stretch of agent audio the caller heard
    played_spans: list[tuple[float, float]] = field(default_factory=list)
    # checkpoints a clearAudio dropped (Plivo never acknowledges those)
    dropped_checkpoints: list[str] = field(default_factory=list)
    # the agent's audio piece by piece (up to each checkpoint), and how much of each played
    pieces: list[ReceivedPiece] = field(default_factory=list)

    def sent_by_agent(self, event: str) -> list[WireEvent]:
        return [e for e in self.events if e.direction == "out" and e.message.get("event") == event]

    def sent_by_caller(self, event: str) -> list[WireEvent]:
        return [e for e in self.events if e.direction == "in" and e.message.get("event") == event]


class PlivoCaller:
    """One simulated Plivo stream against a voicebridge (or any Plivo-protocol) server."""

    def __init__(
        self,
        url: str,
        fmt: StreamFormat,
        *,
        speed: float = 1.0,
        call_id: str | None = None,
        stream_id: str | None = None,
        extra_headers: str = "{}",
        frame_ms: int = 20,
        on_event: Callable[[WireEvent], None] | None = None,
        probe: Callable[[PlivoCaller], Awaitable[None]] | None = None,
    ) -> None:
        self.url = url
        self.fmt = fmt
        self.speed = speed
        self.frame_ms = frame_ms
        self.codec = codec_for(fmt.encoding)
        self.record = CallRecord(fmt, call_id or str(uuid.uuid4()), stream_id or str(uuid.uuid4()))
        self.extra_headers = extra_headers
        self.playout = PlayoutModel(fmt.sample_rate)
        self._t = 0.0
        self._seq = 0
        self._on_event = on_event
        self._probe = probe  # awaited before each frame: lockstep with an in-process server
        self._closed = asyncio.Event()
        self.frames_sent = 0
        self.messages_received = 0
        self.activity = asyncio.Event()  # set at each message received (lockstep waits on it)
        self._t0: float | None = None
        self._last_audio_t = -1.0  # caller time the last agent audio arrived
        self._busy_until = -1.0  # caller time agent audio was last heard playing
        self._interrupt_after_s: float | None = None

    # --- the call -----------------------------------------------------------------------------
    async def run(
        self,
        caller_audio: PCM,
        *,
        tail_s: float = 3.0,
        wait_for_agent_s: float = 10.0,
        hang_up: bool = True,
    ) -> CallRecord:
        """Stream ``caller_audio`` (at the stream rate), then silence until the agent's audio has
        played and ``tail_s`` has passed with nothing queued (at most ``wait_for_agent_s``)."""
        async with connect(
            self.url, compression=None, max_size=None, open_timeout=10, close_timeout=2
        ) as ws:
            receiver = asyncio.get_running_loop().create_task(self._receive(ws))
            try:
                await self._start(ws)
                await self._stream(ws, caller_audio)
                await self._linger(ws, tail_s, wait_for_agent_s)
            except ConnectionClosed:
                pass
            finally:
                if hang_up:
                    await self._hang_up(ws)
                await asyncio.wait({receiver}, timeout=5)
                receiver.cancel()
        self.record.caller_audio = caller_audio
        self.record.duration_s = self._t
        self._finish_record()
        return self.record

    async def run_turns(
        self,
        utterances: Sequence[PCM | Keypress],
        *,
        first_wait_s: float = 1.5,
        gap_s: float = 0.8,
        reply_timeout_s: float = 15.0,
        tail_s: float = 1.0,
        interrupt_after_s: float | None = None,
        more: Callable[[int], Awaitable[PCM | Keypress | None]] | None = None,
        barge_in_s: Sequence[float | None] | None = None,
    ) -> CallRecord:
        """A conversation: let the agent finish (its greeting, then each reply), then speak the
        next utterance. The agent is done when its audio has played out and nothing new came for
        ``gap_s``; a reply that never comes is given up on after ``reply_timeout_s``.

        With ``interrupt_after_s`` the caller does not wait for replies to finish: it speaks its
        next line that long after the reply started playing (a barge-in). The reply to its last
        line has no next line to cut it off, so it plays to the end.

        ``barge_in_s`` gives each utterance its own moment instead: utterance ``i`` starts that
        long after the agent's speech before it (the greeting, for the first) began playing;
        None waits for that speech to end. It replaces ``interrupt_after_s``.

        With ``more``, once ``utterances`` are spoken the caller asks ``more(index)`` for each
        next utterance after the agent's reply (None: hang up); it may take its time, the call's
        clock waits in lockstep. A caller that decides as it goes never barges in."""
        track: list[PCM] = []
        async with connect(
            self.url, compression=None, max_size=None, open_timeout=10, close_timeout=2
        ) as ws:
            receiver = asyncio.get_running_loop().create_task(self._receive(ws))
            try:
                await self._start(ws)
                if barge_in_s is not None:
                    barges = list(barge_in_s)
                else:  # every line but the first cuts the reply before it; a persona never
                    barges = [
                        interrupt_after_s if i and more is None else None
                        for i in range(len(utterances))
                    ]
                self._interrupt_after_s = barges[0] if barges else None
                await self._wait_for_agent(ws, track, first_wait_s, gap_s, reply_timeout_s, False)
                index = 0
                while not self._closed.is_set():
                    if index < len(utterances):
                        pcm: PCM | Keypress | None = utterances[index]
                    else:
                        pcm = await more(index) if more is not None else None
                    if pcm is None:
                        break
                    index += 1
                    self._interrupt_after_s = barges[index] if index < len(barges) else None
                    start = self._t
                    if isinstance(pcm, Keypress):
                        await self._press(ws, pcm, track)
                        self.record.utterance_spans.append((start, self._t))
                    else:
                        await self._stream(ws, pcm, track)
                        self.record.utterance_spans.append(
                            (start, start + len(pcm) / self.fmt.sample_rate)
                        )
                    await self._wait_for_agent(ws, track, 0.0, gap_s, reply_timeout_s, True)
                await self._silence(ws, track, tail_s)
            except ConnectionClosed:
                pass
            finally:
                await self._hang_up(ws)
                await asyncio.wait({receiver}, timeout=5)
                receiver.cancel()
        self.record.caller_audio = np.concatenate(track) if track else np.zeros(0, np.int16)
        self.record.duration_s = self._t
        self._finish_record()
        return self.record

    async def _hang_up(self, ws: ClientConnection) -> None:
        """Close the call from the caller's side, unless the agent's close came first: a send
        can meet the agent's close before the receiver has seen it, and the call was then
        ended by the agent, not by us."""
        if self._closed.is_set() or ws.protocol.close_rcvd is not None:
            return
        self.record.closed_by = "caller"
        await ws.close(1000, "call ended")

    def _finish_record(self) -> None:
        self.record.heard_audio = self.playout.heard_track(self._t)
        rate = self.fmt.sample_rate
        self.record.played_spans = [
            (seg.start_s, len(seg.pcm) / rate) for seg in self.playout.heard
        ]
        self.record.dropped_checkpoints = list(self.playout.dropped_marks)
        self.record.pieces = list(self.playout.pieces)

    async def _wait_for_agent(
        self,
        ws: ClientConnection,
        track: list[PCM],
        min_wait_s: float,
        gap_s: float,
        timeout_s: float,
        expect_reply: bool,
    ) -> None:
        silence = np.zeros(self.fmt.sample_rate * self.frame_ms // 1000, np.int16)
        began = self._t
        first_heard: float | None = None
        while not self._closed.is_set() and self._t - began < timeout_s:
            replied = self._last_audio_t >= began
            barge = self._interrupt_after_s
            speaking = first_heard is None and not self.playout.idle  # the agent's speech began
            if speaking and (expect_reply or barge is not None):
                first_heard = self._t
            if barge is not None and first_heard is not None and self._t - first_heard >= barge:
                return
            quiet_for = self._t - max(self._last_audio_t, self._busy_until, began)
            settled = self.playout.idle and quiet_for >= gap_s and self._t - began >= min_wait_s
            if settled and (replied or not expect_reply):
                return
            await self._frame(ws, silence)
            track.append(silence)

    async def _silence(self, ws: ClientConnection, track: list[PCM], seconds: float) -> None:
        silence = np.zeros(self.fmt.sample_rate * self.frame_ms // 1000, np.int16)
        end = self._t + seconds
        while not self._closed.is_set() and self._t < end - 1e-9:
            await self._frame(ws, silence)
            track.append(silence)

    async def _stream(
        self, ws: ClientConnection, audio: PCM, track: list[PCM] | None = None
    ) -> None:
        step = self.fmt.sample_rate * self.frame_ms // 1000
        for offset in range(0, len(audio), step):
            if self._closed.is_set():
                return
            chunk = audio[offset : offset + step]
            if len(chunk) < step:
                chunk = np.pad(chunk, (0, step - len(chunk)))
            await self._frame(ws, chunk)
            if track is not None:
                track.append(chunk)

    async def _press(self, ws: ClientConnection, keys: Keypress, track: list[PCM]) -> None:
        """Press each digit as Plivo reports it (a ``dtmf`` event), silence in between."""
        for digit in keys.digits:
            if self._closed.is_set():
                return
            self._seq += 1
            message = {
                "sequenceNumber": self._seq,
                "streamId": self.record.stream_id,
                "event": "dtmf",
                "dtmf": {"track": "inbound", "digit": digit},
                "extra_headers": "{}",
            }
            await self._send(ws, message)
            await self._silence(ws, track, keys.gap_ms / 1000)

    async def _linger(self, ws: ClientConnection, tail_s: float, max_s: float) -> None:
        silence = np.zeros(self.fmt.sample_rate * self.frame_ms // 1000, np.int16)
        quiet_since = self._t
        deadline = self._t + max_s
        while not self._closed.is_set() and self._t < deadline:
            await self._frame(ws, silence)
            if not self.playout.idle:
                quiet_since = self._t
            elif self._t - quiet_since >= tail_s:
                return

    async def _start(self, ws: ClientConnection) -> None:
        """Send ``start``: the call's clock starts here (time 0), as the service's does."""
        self._t0 = asyncio.get_running_loop().time()
        await self._send(ws, self._start_message())

    def _now(self) -> float:
        """The call time to stamp a message arriving now with, and the time Plivo's playout
        runs on. In lockstep it is the stream time. In real time it is the time since
        ``start``: agent audio starts playing when it arrives, not back at the last frame
        boundary, and plays at real speed even when this caller's frames run late (a busy
        machine) and go out in a burst to catch up. Played on the frames' clock, a burst
        played the agent's audio faster than real time and acknowledged checkpoints before
        their audio could have played."""
        if self._t0 is None or self.speed == float("inf"):
            return self._t
        elapsed = (asyncio.get_running_loop().time() - self._t0) * self.speed
        return max(elapsed, self._t)

    async def _frame(self, ws: ClientConnection, pcm: PCM) -> None:
        if self._probe is not None:
            await self._probe(self)
        frame_s = self.frame_ms / 1000.0
        loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        if self.speed != float("inf"):
            # A frame goes out once its 20 ms have passed, as Plivo sends audio it has recorded.
            # Sent at the start of its 20 ms, the service's clock of caller audio received
            # would run up to a frame ahead of real time (and of the playout it measures).
            # Paced on an absolute schedule so sleep overshoot does not accumulate.
            due = self._t0 + (self._t + frame_s) / self.speed
            await asyncio.sleep(max(0.0, due - loop.time()))
        payload = self.codec.encode(pcm)
        self._seq += 1
        self.frames_sent += 1
        await self._send(
            ws,
            {
                "sequenceNumber": self._seq,
                "streamId": self.record.stream_id,
                "event": "media",
                "media": {
                    "track": "inbound",
                    "timestamp": str(int(time.time() * 1000)),
                    "chunk": self._seq,
                    "payload": base64.b64encode(payload).decode("ascii"),
                },
                "extra_headers": "{}",
            },
            log=False,
        )
        if self.speed == float("inf"):
            await asyncio.sleep(0)
        self._t += frame_s
        if not self.playout.idle:
            self._busy_until = self._t
        await self._ack(ws, self.playout.advance(self._now()))

    # --- messages -----------------------------------------------------------------------------
    def _start_message(self) -> dict[str, Any]:
        return {
            "sequenceNumber": 0,
            "event": "start",
            "start": {
                "callId": self.record.call_id,
                "streamId": self.record.stream_id,
                "accountId": "MA0000SIMULATOR",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": self.fmt.encoding, "sampleRate": self.fmt.sample_rate},
            },
            "extra_headers": self.extra_headers,
        }

    async def _send(self, ws: ClientConnection, message: dict[str, Any], log: bool = True) -> None:
        if log or message.get("event") != "media":
            self._log(WireEvent(self._now(), "in", message))
        await ws.send(json.dumps(message))

    async def _ack(self, ws: ClientConnection, names: list[str]) -> None:
        for name in names:
            self._seq += 1
            await self._send(
                ws,
                {
                    "event": "playedStream",
                    "sequenceNumber": self._seq,
                    "streamId": self.record.stream_id,
                    "name": name,
                },
            )

    async def _receive(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                await self._handle(ws, raw)
        except ConnectionClosed:
            pass
        finally:
            if ws.close_code is not None and not self.record.closed_by:
                self.record.closed_by = "agent"
            self.record.close_code = ws.close_code
            self.record.close_reason = ws.close_reason or ""
            self._closed.set()
            self.activity.set()

    async def _handle(self, ws: ClientConnection, raw: str | bytes) -> None:
        self.messages_received += 1
        self.activity.set()
        if isinstance(raw, bytes):
            self.record.protocol_errors.append("binary frame from agent")
            return
        try:
            message = json.loads(raw)
        except ValueError:
            self.record.protocol_errors.append(f"non-JSON message: {raw[:60]!r}")
            return
        event = message.get("event")
        logged = message
        if event == "playAudio":
            logged = _summarise_play(message)
        now = self._now()
        self._log(WireEvent(now, "out", logged))
        if event == "playAudio":
            self._on_play(message, now)
        elif event == "checkpoint":
            await self._ack(ws, self.playout.checkpoint(str(message.get("name", "")), now))
        elif event == "clearAudio":
            self.playout.clear(now)
            await self._send(
                ws,
                {"sequenceNumber": 0, "event": "clearedAudio", "streamId": self.record.stream_id},
            )
        elif event == "sendDTMF":
            pass
        else:
            self.record.protocol_errors.append(f"unknown event from agent: {event!r}")

    def _on_play(self, message: dict[str, Any], now: float) -> None:
        media = message.get("media") or {}
        content_type = media.get("contentType")
        rate = media.get("sampleRate")
        if content_type != self.fmt.encoding or rate != self.fmt.sample_rate:
            self.record.protocol_errors.append(
                f"playAudio format {content_type}/{rate} differs from the stream's "
                f"{self.fmt.encoding}/{self.fmt.sample_rate}"
            )
            return
        try:
            payload = base64.b64decode(media.get("payload", ""), validate=True)
            pcm = self.codec.decode(payload)
        except ValueError as exc:
            self.record.protocol_errors.append(f"bad playAudio payload: {exc}")
            return
        self.playout.play(pcm, now)
        self._last_audio_t = now

    def _log(self, event: WireEvent) -> None:
        self.record.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    # --- extra actions for tests --------------------------------------------------------------
    async def send_raw(self, ws: ClientConnection, text: str | bytes) -> None:
        await ws.send(text)


def _summarise_play(message: dict[str, Any]) -> dict[str, Any]:
    media = dict(message.get("media") or {})
    payload = media.pop("payload", "")
    size = len(payload) * 3 // 4 - payload.count("=") if isinstance(payload, str) else 0
    media["payload_bytes"] = size
    return {**message, "media": media}
