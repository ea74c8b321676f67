"""One WebSocket leg of a Plivo call, in lockstep with the service, that can drop mid-call.

Plivo retries a failed stream with a new socket and a new ``start`` for the same call id; each
leg here is one such socket. Playout is modelled (``PlayoutModel``): acks come once the audio
played, and what sits in the buffer when the socket dies is lost, as at Plivo. ``drop`` kills
the TCP connection without a close frame, as a network failure does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicebridge.audio.codec import codec_for
from voicebridge.frames import PCM
from voicebridge.session import Session
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.playout import PlayoutModel


class Watch(SessionWatch):
    """Every session the service made (``on_session``); the newest is ``session``."""

    @property
    def sessions(self) -> list[Session]:
        return self.all

    @property
    def session(self) -> Session:  # type: ignore[override]
        assert self.all, "no session yet"
        return self.all[-1]

    def of_stream(self, stream_id: str, after: int = 0) -> Session | None:
        """The session made for ``stream_id``, among those made after the first ``after``."""
        for session in self.all[after:]:
            if session.ctx is not None and session.ctx.info.stream_id == stream_id:
                return session
        return None

    async def started(self, stream_id: str, after: int, timeout_s: float = 30.0) -> Session:
        """The session a new socket got (one made after the first ``after``: a retry reuses
        the stream id), once its ``start`` has been handled."""

        async def found() -> Session:
            while (session := self.of_stream(stream_id, after)) is None:
                self.changed.clear()
                await self.changed.wait()
            return session

        return await asyncio.wait_for(found(), timeout_s)


class Leg:
    """With a ``watch`` (the service in this process) each frame waits for the service to catch
    up; without one (a service in another process) frames go out ``speed`` times real time."""

    def __init__(
        self,
        url: str,
        watch: Watch | None,
        call_id: str,
        stream_id: str,
        rate: int = 8000,
        speed: float = 1.0,
    ) -> None:
        self.url, self.watch, self.call_id, self.stream_id = url, watch, call_id, stream_id
        self.rate = rate
        self.speed = speed
        self.codec = codec_for("audio/x-l16")
        self.playout = PlayoutModel(rate)
        self.t = 0.0
        self.frames_sent = 0
        self.messages_received = 0
        self.activity = asyncio.Event()  # a message arrived, or the socket closed
        self.messages: list[dict[str, Any]] = []
        self.ws: ClientConnection | None = None
        self._receiver: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.session: Session | None = None

    async def __aenter__(self) -> Leg:
        known = len(self.watch.all) if self.watch is not None else 0
        self.ws = await connect(self.url, compression=None, max_size=None, close_timeout=2)
        self._receiver = asyncio.get_running_loop().create_task(self._receive())
        await self._send(
            {
                "sequenceNumber": 0,
                "event": "start",
                "start": {
                    "callId": self.call_id,
                    "streamId": self.stream_id,
                    "accountId": "MA-test",
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": self.rate},
                },
                "extra_headers": "{}",
            }
        )
        if self.watch is not None:
            self.session = await self.watch.started(self.stream_id, known)
            await self._lockstep()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None and not self.closed.is_set():
            await self.hang_up()
        elif self.ws is not None:
            await self._stop_receiver()

    # --- the caller --------------------------------------------------------------------------
    async def frame(self, pcm: PCM | None = None) -> None:
        if self.closed.is_set():
            return
        step = self.rate // 50
        pcm = np.zeros(step, np.int16) if pcm is None else pcm
        payload = base64.b64encode(self.codec.encode(pcm)).decode("ascii")
        self.frames_sent += 1
        await self._send({"event": "media", "media": {"track": "inbound", "payload": payload}})
        self.t += 0.02
        for name in self.playout.advance(self.t):
            await self._ack(name)
        if self.watch is not None:
            await self._lockstep()
        else:
            await asyncio.sleep(0.02 / self.speed)

    async def idle(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.02)):
            if self.closed.is_set():
                return
            await self.frame()

    async def speak(self, pcm: PCM) -> None:
        step = self.rate // 50
        for offset in range(0, len(pcm), step):
            if self.closed.is_set():
                return
            chunk = pcm[offset : offset + step]
            if len(chunk) < step:
                chunk = np.pad(chunk, (0, step - len(chunk)))
            await self.frame(chunk)

    async def drop(self) -> None:
        """The network fails: no close frame, buffered audio lost."""
        assert self.ws is not None
        self.ws.transport.abort()
        await self._stop_receiver()
        await self._server_noticed()

    async def hang_up(self) -> None:
        """Plivo ends the stream with the call: a normal close."""
        assert self.ws is not None
        await self.ws.close(1000, "call ended")
        await self._stop_receiver()
        await self._server_noticed()

    async def _server_noticed(self) -> None:
        if self.session is not None:
            await asyncio.wait_for(self.session.ended.wait(), 10)

    # --- wire ---------------------------------------------------------------------------------
    async def _send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):  # the service ended the call
            await self.ws.send(json.dumps(message))

    async def _ack(self, name: str) -> None:
        await self._send({"event": "playedStream", "streamId": self.stream_id, "name": name})

    async def _receive(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                self.messages_received += 1
                self.activity.set()
                event = message.get("event")
                if event == "playAudio":
                    pcm = self.codec.decode(base64.b64decode(message["media"]["payload"]))
                    self.playout.play(pcm, self.t)
                    message = {"event": "playAudio", "samples": len(pcm)}
                elif event == "checkpoint":
                    for name in self.playout.checkpoint(message["name"], self.t):
                        await self._ack(name)
                elif event == "clearAudio":
                    self.playout.clear(self.t)
                    await self._send({"event": "clearedAudio", "streamId": self.stream_id})
                self.messages.append(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self.activity.set()

    async def _stop_receiver(self) -> None:
        if self._receiver is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._receiver), 2)
            self._receiver.cancel()

    async def _lockstep(self, timeout_s: float = 30.0) -> None:
        """Wait until the session took every frame, went idle, and its messages arrived."""
        assert self.watch is not None and self.session is not None
        if self.closed.is_set():
            return
        session = self.session
        await self.watch.lockstep(self, lambda: session, timeout_s=timeout_s)

    def checkpoints(self) -> list[str]:
        return [m["name"] for m in self.messages if m.get("event") == "checkpoint"]

    def audio_s(self) -> float:
        """Seconds of agent audio received on this leg."""
        samples = sum(m["samples"] for m in self.messages if m.get("event") == "playAudio")
        return float(samples) / self.rate
