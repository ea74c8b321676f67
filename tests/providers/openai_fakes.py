"""A local fake of the OpenAI HTTP API, for the openai-family stage tests.

Real HTTP on 127.0.0.1 (Starlette under uvicorn, in the test's event loop), reached through the
official SDK's ``base_url``, so the SDK's request building, SSE parsing, retries, timeouts and
stream closing are all exercised on the wire:

* ``POST /v1/chat/completions`` with ``stream: true`` answers server-sent events
  (``data: {chunk}`` ... ``data: [DONE]``), content tokens and ``tool_calls`` deltas;
* ``POST /v1/audio/speech`` answers raw 24 kHz 16-bit mono PCM (a 440 Hz tone whose length
  follows the input text), streamed in odd-sized chunks.

Replies and faults are scripted per request (:class:`ChatReply`, :class:`SpeechReply`); each
request is recorded with its JSON body and whether the client hung up before the end
(``disconnected``), which is how barge-in tests see that a stream was really closed.

The endpoints are raw ASGI apps mounted in Starlette, not ``StreamingResponse``: a test needs to
know the instant the client disconnects, even while the fake is holding a stream open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fake_wait import wait_until
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.frames import AgentAudio, AgentText, Frame
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.stage import Stage
from voicebridge.server.run import LoopServer, loopback_config

PCM_RATE = 24000


@dataclass
class ChatReply:
    """How the fake answers one chat completion request."""

    text: str = ""
    tool_calls: list[tuple[str, Any]] = field(default_factory=list)  # (name, args dict or str)
    status: int | None = None  # answer this HTTP error instead (JSON error body)
    error_message: str = "fake failure"
    error_type: str = "invalid_request_error"
    retry_after_ms: int | None = None
    stream_error: str | None = None  # an error event in the stream, after the tokens
    first_token_delay_s: float = 0.0
    token_delay_s: float = 0.0
    hold_after: int | None = None  # after this many tokens, wait for FakeOpenAI.release
    cut_after: int | None = None  # after this many tokens, drop the connection


@dataclass
class SpeechReply:
    """How the fake answers one speech request."""

    status: int | None = None
    error_message: str = "fake failure"
    error_type: str = "invalid_request_error"
    ms_per_char: float = 40.0  # audio length per input character
    chunk_bytes: int = 4801  # odd on purpose: samples straddle chunks
    first_byte_delay_s: float = 0.0
    hold_after: int | None = None  # after this many chunks, wait for FakeOpenAI.release
    cut_after: int | None = None  # after this many chunks, drop the connection


@dataclass
class Recorded:
    """One request as the fake saw it."""

    path: str
    headers: dict[str, str]
    body: Any
    time: float
    status: int = 200
    chunks_sent: int = 0
    completed: bool = False
    disconnected: bool = False
    audio_samples: int = 0  # speech: PCM samples in the full answer

    @property
    def auth(self) -> str:
        return self.headers.get("authorization", "")


class _Disconnected(Exception):
    pass


def tokens(text: str) -> list[str]:
    """Split text the way a model streams it: a word and its trailing space per token."""
    return re.findall(r"\S+\s*|\s+", text)


def tone(samples: int, rate: int = PCM_RATE, freq: float = 440.0, level: int = 8000) -> bytes:
    t = np.arange(samples) / rate
    return (np.sin(2 * np.pi * freq * t) * level).astype("<i2").tobytes()


def speech_samples(text: str, ms_per_char: float) -> int:
    return round(len(text) * ms_per_char * PCM_RATE / 1000)


class FakeOpenAI:
    """The fake API server. ``async with FakeOpenAI() as fake: ... fake.base_url``."""

    def __init__(self, api_key: str | None = "sk-fake") -> None:
        self.api_key = api_key  # None: accept any key
        self.chat_replies: deque[ChatReply] = deque()
        self.speech_replies: deque[SpeechReply] = deque()
        self.default_chat = ChatReply(text="I see.")
        self.default_speech = SpeechReply()
        self.chat_requests: list[Recorded] = []
        self.speech_requests: list[Recorded] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._server: LoopServer | None = None
        self.release = asyncio.Event()  # held streams go on once this is set
        self.holding = 0  # streams waiting for release right now (a stalled provider)
        self.changed = asyncio.Event()  # set whenever something was recorded

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # --- scripting --------------------------------------------------------------------------

    def reply(self, *replies: ChatReply) -> None:
        self.chat_replies.extend(replies)

    def speak(self, *replies: SpeechReply) -> None:
        self.speech_replies.extend(replies)

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        """Wait (real time) until ``predicate()`` holds."""
        await wait_until(self.changed, predicate, timeout, "the fake OpenAI server")

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", _Endpoint(self._chat), methods=["POST"]),
                Route("/v1/audio/speech", _Endpoint(self._speech), methods=["POST"]),
            ]
        )
        self._server = LoopServer(loopback_config(app, host=self.host, http="h11"))
        self.host, self.port = await self._server.start()

    async def stop(self) -> None:
        self.release.set()
        if self._server is None:
            return
        await self._server.stop()
        self._server = None

    # --- the endpoints ----------------------------------------------------------------------

    async def _begin(
        self, scope: Scope, receive: Receive, into: list[Recorded]
    ) -> tuple[Recorded, asyncio.Event, asyncio.Task[None]]:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = body
        record = Recorded(scope["path"], headers, parsed, time.monotonic())
        into.append(record)
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.get_running_loop().create_task(watch())
        self.changed.set()
        return record, gone, watcher

    def _auth_ok(self, record: Recorded) -> bool:
        return self.api_key is None or record.auth == f"Bearer {self.api_key}"

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        record, gone, watcher = await self._begin(scope, receive, self.chat_requests)
        reply = self.chat_replies.popleft() if self.chat_replies else self.default_chat
        try:
            if not self._auth_ok(record):
                await _error(send, record, 401, "Incorrect API key provided.", "invalid_api_key")
                return
            if reply.status is not None:
                headers = {}
                if reply.retry_after_ms is not None:
                    headers["retry-after-ms"] = str(reply.retry_after_ms)
                await _error(
                    send, record, reply.status, reply.error_message, reply.error_type, headers
                )
                return
            if not isinstance(record.body, dict) or record.body.get("stream") is not True:
                await _error(send, record, 400, "the fake only streams", "invalid_request_error")
                return
            await self._stream_chat(send, record, reply, gone)
        except _Disconnected:
            record.disconnected = True
        finally:
            watcher.cancel()
            self.changed.set()

    async def _stream_chat(
        self, send: Send, record: Recorded, reply: ChatReply, gone: asyncio.Event
    ) -> None:
        model = record.body.get("model", "")
        events: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        events += [{"content": token} for token in tokens(reply.text)]
        for index, (name, arguments) in enumerate(reply.tool_calls):
            raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
            events.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": f"call_{index}_{name}",
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
            half = len(raw) // 2  # arguments arrive in pieces, as from the real API
            for piece in (raw[:half], raw[half:]):
                events.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        finish = "tool_calls" if reply.tool_calls else "stop"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
            }
        )
        await _pause(reply.first_token_delay_s, gone)
        for index, delta in enumerate(events):
            sent = index  # the role-only first event does not count as a token
            if reply.cut_after is not None and sent == reply.cut_after + 1:
                return  # ends without completing the body: uvicorn drops the connection
            if reply.hold_after is not None and sent == reply.hold_after + 1:
                await self._hold(gone)
            if index and reply.token_delay_s:
                await _pause(reply.token_delay_s, gone)
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            await _sse(send, chunk, gone)
            record.chunks_sent += 1
            self.changed.set()
        if reply.stream_error is not None:
            error = {"error": {"message": reply.stream_error, "type": "server_error"}}
            await _sse(send, error, gone)
        final = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
        }
        await _sse(send, final, gone)
        if gone.is_set():
            raise _Disconnected
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        record.completed = True

    async def _hold(self, gone: asyncio.Event) -> None:
        self.holding += 1
        self.changed.set()
        try:
            await _wait(self.release, gone)
        finally:
            self.holding -= 1
            self.changed.set()

    async def _speech(self, scope: Scope, receive: Receive, send: Send) -> None:
        record, gone, watcher = await self._begin(scope, receive, self.speech_requests)
        reply = self.speech_replies.popleft() if self.speech_replies else self.default_speech
        try:
            if not self._auth_ok(record):
                await _error(send, record, 401, "Incorrect API key provided.", "invalid_api_key")
                return
            if reply.status is not None:
                await _error(send, record, reply.status, reply.error_message, reply.error_type)
                return
            text = str(record.body.get("input", "")) if isinstance(record.body, dict) else ""
            samples = speech_samples(text, reply.ms_per_char)
            record.audio_samples = samples
            audio = tone(samples)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")],
                }
            )
            await _pause(reply.first_byte_delay_s, gone)
            step = reply.chunk_bytes
            for index, start in enumerate(range(0, len(audio), step)):
                if reply.cut_after is not None and index == reply.cut_after:
                    return
                if reply.hold_after is not None and index == reply.hold_after:
                    await self._hold(gone)
                if gone.is_set():
                    raise _Disconnected
                chunk = audio[start : start + step]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                record.chunks_sent += 1
                self.changed.set()
                await asyncio.sleep(0)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            record.completed = True
        except _Disconnected:
            record.disconnected = True
        finally:
            watcher.cancel()
            self.changed.set()


class _Endpoint:
    """A raw ASGI endpoint (Starlette mounts a non-function endpoint as an ASGI app)."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


async def _error(
    send: Send,
    record: Recorded,
    status: int,
    message: str,
    error_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    """An error answer shaped like OpenAI's: {"error": {"message", "type", "code"}}."""
    record.status = status
    body = json.dumps({"error": {"message": message, "type": error_type, "code": None}}).encode()
    raw_headers = [(b"content-type", b"application/json")]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    if "retry-after-ms" not in (headers or {}):
        raw_headers.append((b"x-should-retry", b"false"))  # retried only when a test asks
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    record.completed = True


async def _sse(send: Send, data: dict[str, Any], gone: asyncio.Event) -> None:
    if gone.is_set():
        raise _Disconnected
    payload = f"data: {json.dumps(data)}\n\n".encode()
    await send({"type": "http.response.body", "body": payload, "more_body": True})
    await asyncio.sleep(0)


async def _pause(seconds: float, gone: asyncio.Event) -> None:
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone.wait(), seconds)
    if gone.is_set():
        raise _Disconnected


async def _wait(event: asyncio.Event, gone: asyncio.Event) -> None:
    """Hold the stream until ``event`` is set or the client goes away."""
    waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(gone.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if gone.is_set():
        raise _Disconnected


# --- user tools the tests declare in YAML as openai_fakes:<name> ---------------------------------

TOOL_CALLS: list[tuple[str, dict[str, Any], str]] = []  # (tool, arguments, call_id)


def lookup_order(arguments: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A sync tool (runs in the worker pool)."""
    TOOL_CALLS.append(("lookup_order", arguments, ctx.call_id))
    return {"order": arguments.get("order_number"), "status": "out for delivery"}


async def opening_hours(arguments: dict[str, Any], ctx: Any) -> str:
    """An async tool."""
    TOOL_CALLS.append(("opening_hours", arguments, ctx.call_id))
    await asyncio.sleep(0)
    return f"open 7 to 6 on {arguments.get('day', 'weekdays')}"


async def slow_tool(arguments: dict[str, Any], ctx: Any) -> str:
    await asyncio.sleep(30)
    return "too late"


def broken_tool(arguments: dict[str, Any], ctx: Any) -> str:
    raise RuntimeError("database is down")


# --- a pipeline on the real clock, for stages that do real network I/O ---------------------------


class Rig:
    """Runs ``stages`` as a pipeline and keeps what comes out, stamped with real time::

    async with Rig([Llm(...)]) as rig:
        await rig.push(Transcript("hello"))
        await rig.wait_for(lambda: rig.texts())
    """

    def __init__(self, stages: list[Stage], info: CallInfo | None = None) -> None:
        self.ctx = CallContext(info or CallInfo(call_id="call-1", stream_id="stream-1"))
        self.out: list[tuple[float, Frame]] = []
        self.provider_errors: list[ProviderError] = []
        self.errors: list[BaseException] = []
        self.changed = asyncio.Event()
        self.pipeline = Pipeline(
            stages,
            self.ctx,
            self._sink,
            on_error=lambda stage, exc: self._failed(exc),
            on_provider_error=lambda stage, exc: self._failed(exc),
        )

    async def __aenter__(self) -> Rig:
        await self.pipeline.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pipeline.stop()

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, ProviderError):
            self.provider_errors.append(exc)
        else:
            self.errors.append(exc)
        self.changed.set()

    async def _sink(self, frame: Frame) -> None:
        self.out.append((time.monotonic(), frame))
        self.changed.set()

    async def push(self, frame: Frame) -> None:
        await self.pipeline.push(frame)

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; out={self.frames()} errors={self.errors}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.02)

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait until every frame pushed so far has been handled."""
        await self.wait_for(lambda: self.pipeline.idle, timeout)

    def frames(self) -> list[Frame]:
        return [frame for _, frame in self.out]

    def of(self, kind: type[Frame]) -> list[Any]:
        return [frame for frame in self.frames() if isinstance(frame, kind)]

    def texts(self) -> list[AgentText]:
        return self.of(AgentText)

    def audio(self) -> list[AgentAudio]:
        return self.of(AgentAudio)

    def time_of(self, frame: Frame) -> float:
        return next(t for t, f in self.out if f is frame)
