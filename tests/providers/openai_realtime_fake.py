"""A fake of OpenAI's Realtime API: a real WebSocket server on 127.0.0.1 (the ``websockets``
library), reached by the official SDK through ``base_url`` (``ws://127.0.0.1:PORT/v1/realtime``).

It speaks the GA event protocol: the handshake checks the bearer key (401 with OpenAI's JSON
error body otherwise); ``session.update`` is answered with ``session.updated`` (an unknown voice
with an ``error``); caller audio (``input_audio_buffer.append``, μ-law 8 kHz or PCM 24 kHz) runs
through a small endpointer standing in for server VAD: loud audio is speech
(``input_audio_buffer.speech_started``), ``silence_duration_ms`` of quiet ends it
(``speech_stopped``, ``committed``, then a response, and the next scripted caller line as the
input transcription). ``response.create`` answers at once (a zero-latency model): a tone whose
length follows the scripted text (``ms_per_char``), cut in ``chunk_ms`` deltas, with transcript
deltas running ahead of the audio, function calls, then ``response.done``. A response asked to
say a line (the stage's ``SAY`` instructions) says exactly that line. ``response.cancel`` and
``conversation.item.truncate`` act on the fake's conversation, which tests compare with the
call's history. Scripted faults: a failed response (``status: failed``), a socket dropped
mid-reply, an unknown model (every response fails with ``model_not_found``, as OpenAI does), an
outage (``unavailable``: every handshake is refused with 503) and a session that never answers
its ``session.update`` (``hold_setup``, until ``release``).

Run it alone (for ``voicebridge simulate`` against it)::

    python tests/providers/openai_realtime_fake.py --port 8765 --say "We open at seven."
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fake_wait import hold_setup, wait_until
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from voicebridge.audio.l16 import l16_decode, l16_encode
from voicebridge.audio.mulaw import mulaw_decode, mulaw_encode_bytes

SAY_PREFIX = "Say the following to the caller, word for word"
SPEECH_RMS = 500.0


@dataclass
class Reply:
    """How the fake model answers one response it makes on its own."""

    text: str = "I see."
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ms_per_char: float = 60.0
    chunk_ms: int = 100
    fail: str | None = None  # fail the response (status failed) with this message...
    fail_code: str = "server_error"
    fail_after_chunks: int = 0  # ...after this many audio chunks
    drop_after_chunks: int | None = None  # close the socket after this many audio chunks
    hold_after_chunks: int | None = None  # wait for FakeRealtime.release after this many
    never: bool = False  # a stalled model: no response is ever created


@dataclass
class Item:
    """One item of a session's conversation, as the fake keeps it."""

    id: str
    type: str  # "message", "function_call", "function_call_output"
    role: str = ""
    text: str = ""  # a transcript or a text content
    audio_ms: int = 0
    truncated_at: int | None = None
    name: str = ""
    call_id: str = ""

    @property
    def heard(self) -> str:
        """The item's text as the model now has it (truncation deletes the transcript)."""
        return "" if self.truncated_at is not None else self.text


@dataclass
class FakeSession:
    """One WebSocket connection: what the client sent, and the conversation."""

    number: int
    path: str
    headers: dict[str, str]
    model: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # client events, no appends
    appended_ms: float = 0.0
    items: list[Item] = field(default_factory=list)
    truncates: list[dict[str, Any]] = field(default_factory=list)
    cancels: list[dict[str, Any]] = field(default_factory=list)
    responses: int = 0
    closed: bool = False
    speaking: bool = False
    speech_start_ms: float = 0.0
    quiet_ms: float = 0.0
    active: str | None = None  # the response in progress
    cancel_requested: bool = False
    received: int = 0  # client events handled
    sent: int = 0  # server events sent

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    def conversation(self) -> list[tuple[str, str]]:
        """(role, text) of every message, as the model has it now."""
        return [(i.role, i.heard) for i in self.items if i.type == "message"]


class FakeRealtime:
    """``async with FakeRealtime() as fake: ... fake.base_url``."""

    def __init__(self, api_key: str | None = "sk-fake", models: tuple[str, ...] = ()) -> None:
        self.api_key = api_key
        self.models = models  # non-empty: any other model fails every response
        self.replies: deque[Reply] = deque()
        self.default_reply = Reply()
        self.caller_lines: deque[str] = deque()  # input transcriptions, one per caller turn
        self.transcript_first = False  # send the caller's transcript before the response
        self.sessions: list[FakeSession] = []
        self.changed = asyncio.Event()
        self.release = asyncio.Event()
        self.handshakes = 0
        self.refused = 0
        self.unavailable = False  # refuse every handshake with 503, as during an outage
        self.hold_setup = False  # leave session.update unanswered until ``release``
        self.holding = 0  # sessions whose set-up is being held
        self.held: set[int] = set()  # ...by their connection number (``handshakes`` then)
        self._numbers: dict[int, int] = {}  # id(connection) -> its connection number
        self.host = "127.0.0.1"
        self.port = 0
        self._server: Server | None = None
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._drop_next_session_after: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def connections(self) -> int:
        """Connections that reached the fake (refused handshakes too), numbered from 1."""
        return self.handshakes

    # --- scripting --------------------------------------------------------------------------
    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def caller_says(self, *lines: str) -> None:
        self.caller_lines.extend(lines)

    @property
    def session(self) -> FakeSession:
        return self.sessions[-1]

    @property
    def generating(self) -> bool:
        """A response is being sent right now."""
        return any(not task.done() for task in self._tasks)

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        """Wait (real time) until ``predicate()`` holds."""
        await wait_until(self.changed, predicate, timeout, "the fake Realtime server")

    async def drop(self, session: FakeSession | None = None) -> None:
        """Close a session's socket without a word (code 1011), as a crashed server would."""
        target = session or self.session
        connection = self._connections.get(target.number)
        if connection is not None:
            await connection.close(1011, "internal error")

    # --- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> FakeRealtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, port: int = 0) -> None:
        self._connections: dict[int, ServerConnection] = {}
        self._server = await serve(
            self._handle,
            self.host,
            port,
            process_request=self._check,
            compression=None,
            max_size=None,
        )
        socket = next(iter(self._server.sockets))
        self.port = socket.getsockname()[1]

    async def stop(self) -> None:
        self.release.set()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # --- the handshake ----------------------------------------------------------------------
    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        self._numbers[id(connection)] = self.handshakes
        self.changed.set()
        if not request.path.startswith("/v1/realtime"):
            return _json_response(404, "Not found", "invalid_request_error", "not_found")
        if self.unavailable:
            self.refused += 1
            message = "The server is overloaded or not ready yet."
            return _json_response(503, message, "server_error", "service_unavailable")
        auth = request.headers.get("Authorization", "")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            self.refused += 1
            message = "Incorrect API key provided."
            return _json_response(401, message, "invalid_request_error", "invalid_api_key")
        return None

    # --- a session --------------------------------------------------------------------------
    async def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        number = len(self.sessions) + 1
        session = FakeSession(number, request.path, dict(request.headers.raw_items()))
        session.model = _query(request.path).get("model", "")
        self.sessions.append(session)
        self._connections[number] = connection
        self.changed.set()
        out = _Out(connection, session)
        await out.send({"type": "session.created", "session": {"model": session.model}})
        try:
            async for message in connection:
                event = json.loads(message)
                kind = event.get("type")
                if kind == "input_audio_buffer.append":
                    await self._audio(session, out, event)
                else:
                    session.events.append(event)
                    if kind == "session.update" and self.hold_setup:
                        await hold_setup(self, connection, self._numbers.get(id(connection), 0))
                    await self._client_event(session, out, event)
                session.received += 1
                self.changed.set()
        except Exception:
            pass
        finally:
            session.closed = True
            self._connections.pop(number, None)
            self.changed.set()

    async def _client_event(self, session: FakeSession, out: _Out, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            config = event.get("session") or {}
            voice = ((config.get("audio") or {}).get("output") or {}).get("voice")
            if voice == "nobody":
                await out.error("invalid_request_error", "invalid_value", f"Invalid voice {voice}")
                return
            session.config = config
            await out.send({"type": "session.updated", "session": config})
        elif kind == "input_audio_buffer.commit":
            await self._commit(session, out)
        elif kind == "response.create":
            await self._respond(session, out, event.get("response") or {})
        elif kind == "response.cancel":
            session.cancels.append(event)
            if session.active is None:
                await out.error(
                    "invalid_request_error",
                    "response_cancel_not_active",
                    "Cancellation failed: no active response found",
                )
            else:
                session.cancel_requested = True
        elif kind == "conversation.item.truncate":
            await self._truncate(session, out, event)
        elif kind == "conversation.item.create":
            self._create_item(session, event.get("item") or {})

    # --- caller audio and the endpointer ----------------------------------------------------
    async def _audio(self, session: FakeSession, out: _Out, event: dict[str, Any]) -> None:
        data = base64.b64decode(event.get("audio", ""))
        fmt = _input_format(session.config)
        pcm = mulaw_decode(data) if fmt == "pcmu" else l16_decode(data)
        rate = 8000 if fmt == "pcmu" else 24000
        ms = 1000.0 * len(pcm) / rate
        start = session.appended_ms
        session.appended_ms += ms
        vad = ((session.config.get("audio") or {}).get("input") or {}).get("turn_detection")
        if not vad:
            return
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
        if rms >= SPEECH_RMS:
            session.quiet_ms = 0.0
            if not session.speaking:
                session.speaking = True
                session.speech_start_ms = start
                await out.send(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": round(start),
                        "item_id": f"item_user_{session.number}_{session.responses}",
                    }
                )
            return
        if not session.speaking:
            return
        session.quiet_ms += ms
        if session.quiet_ms < float(vad.get("silence_duration_ms", 500)):
            return
        session.speaking = False
        end = session.appended_ms - session.quiet_ms
        item_id = f"item_user_{next(self._ids)}"
        await out.send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": round(end),
                "item_id": item_id,
            }
        )
        await self._commit(session, out, item_id)

    async def _commit(self, session: FakeSession, out: _Out, item_id: str | None = None) -> None:
        item = Item(item_id or f"item_user_{next(self._ids)}", "message", "user")
        session.items.append(item)
        await out.send({"type": "input_audio_buffer.committed", "item_id": item.id})
        words = self.caller_lines.popleft() if self.caller_lines else ""
        item.text = words
        vad = ((session.config.get("audio") or {}).get("input") or {}).get("turn_detection")
        transcribe = bool(
            ((session.config.get("audio") or {}).get("input") or {}).get("transcription")
        )
        if transcribe and self.transcript_first:
            await out.transcription(item)
        if vad and vad.get("create_response", True) and session.active is None:
            await self._respond(session, out, {}, after=item if transcribe else None)
        elif transcribe and not self.transcript_first:
            await out.transcription(item)

    # --- responses --------------------------------------------------------------------------
    async def _respond(
        self,
        session: FakeSession,
        out: _Out,
        request: dict[str, Any],
        after: Item | None = None,
    ) -> None:
        if session.active is not None:
            await out.error(
                "invalid_request_error",
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress",
            )
            return
        instructions = str(request.get("instructions") or "")
        if self.replies and self.replies[0].never and not instructions.startswith(SAY_PREFIX):
            self.replies.popleft()  # stalled: this request is never answered
            if after is not None:
                await out.transcription(after)  # transcription goes on regardless
            return
        session.responses += 1
        response_id = f"resp_{session.number}_{session.responses}"
        session.active = response_id  # before any await: the next event sees it
        session.cancel_requested = False
        task = asyncio.get_running_loop().create_task(
            self._generate(session, out, request, response_id, after)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _generate(
        self,
        session: FakeSession,
        out: _Out,
        request: dict[str, Any],
        response_id: str,
        after: Item | None,
    ) -> None:
        """One response's events, while the session goes on reading the client's."""
        metadata = request.get("metadata")
        base = {"object": "realtime.response", "id": response_id, "metadata": metadata}
        await out.send({"type": "response.created", "response": {**base, "status": "in_progress"}})
        instructions = str(request.get("instructions") or "")
        oob = request.get("conversation") == "none"
        if self.models and session.model not in self.models:
            await self._done(
                session,
                out,
                base,
                "failed",
                [],
                {
                    "type": "invalid_request_error",
                    "code": "model_not_found",
                    "message": f"The model `{session.model}` does not exist or you do not "
                    "have access to it.",
                },
            )
            return
        if oob:  # the start-up probe: one text token, out of band
            await out.send(
                {"type": "response.output_text.delta", "response_id": response_id, "delta": "OK"}
            )
            await self._done(session, out, base, "completed", [])
            return
        if instructions.startswith(SAY_PREFIX):
            reply = Reply(text=instructions.split("\n", 1)[1] if "\n" in instructions else "")
        else:
            reply = self.replies.popleft() if self.replies else self.default_reply
        if after is not None:
            await out.transcription(after)
        output = await self._speak(session, out, response_id, reply)
        if output is None:
            return  # the socket was dropped mid-reply
        if reply.fail is not None and not session.cancel_requested:
            await self._done(
                session,
                out,
                base,
                "failed",
                output,
                {"type": "server_error", "code": reply.fail_code, "message": reply.fail},
            )
            return
        status = "cancelled" if session.cancel_requested else "completed"
        await self._done(session, out, base, status, output)

    async def _speak(
        self, session: FakeSession, out: _Out, response_id: str, reply: Reply
    ) -> list[dict[str, Any]] | None:
        """The reply's audio item (and function calls); None when the socket was dropped."""
        output: list[dict[str, Any]] = []
        fmt = _output_format(session.config)
        if reply.text:
            item = Item(f"item_agent_{next(self._ids)}", "message", "assistant", reply.text)
            session.items.append(item)
            common = {"response_id": response_id, "item_id": item.id, "output_index": 0}
            await out.send(
                {
                    "type": "response.output_item.added",
                    "response_id": response_id,
                    "item": {"id": item.id, "type": "message", "role": "assistant"},
                }
            )
            total_ms = round(len(reply.text) * reply.ms_per_char)
            words = reply.text.split(" ")
            sent_words = 0
            chunks = max(1, -(-total_ms // reply.chunk_ms))
            for index in range(chunks):
                if session.cancel_requested:
                    break
                if reply.drop_after_chunks is not None and index == reply.drop_after_chunks:
                    await self.drop(session)
                    return None
                if reply.fail is not None and index == reply.fail_after_chunks:
                    break
                if reply.hold_after_chunks is not None and index == reply.hold_after_chunks:
                    await self._hold(session)
                    if session.cancel_requested:
                        break
                # The transcript runs a little ahead of the audio, as OpenAI's does.
                due = min(len(words), round(len(words) * (index + 2) / chunks))
                while sent_words < due:
                    delta = words[sent_words] + (" " if sent_words < len(words) - 1 else "")
                    sent_words += 1
                    await out.send(
                        {
                            "type": "response.output_audio_transcript.delta",
                            "content_index": 0,
                            "delta": delta,
                            **common,
                        }
                    )
                ms = min(reply.chunk_ms, total_ms - index * reply.chunk_ms)
                audio = _tone(ms, fmt, item.audio_ms)
                item.audio_ms += ms
                await out.send(
                    {
                        "type": "response.output_audio.delta",
                        "content_index": 0,
                        "delta": base64.b64encode(audio).decode(),
                        **common,
                    }
                )
            await out.send({"type": "response.output_audio.done", "content_index": 0, **common})
            await out.send(
                {
                    "type": "response.output_audio_transcript.done",
                    "content_index": 0,
                    "transcript": reply.text,
                    **common,
                }
            )
            done_item = {
                "id": item.id,
                "type": "message",
                "role": "assistant",
                "status": "completed",
            }
            await out.send(
                {"type": "response.output_item.done", "response_id": response_id, "item": done_item}
            )
            output.append(done_item)
        if session.cancel_requested:
            return output
        for index, (name, arguments) in enumerate(reply.tool_calls):
            call_id = f"call_{session.number}_{session.responses}_{index}"
            call = Item(
                f"item_call_{next(self._ids)}",
                "function_call",
                name=name,
                call_id=call_id,
                text=json.dumps(arguments),
            )
            session.items.append(call)
            call_item = {
                "id": call.id,
                "type": "function_call",
                "call_id": call_id,
                "name": name,
                "arguments": call.text,
                "status": "completed",
            }
            await out.send(
                {
                    "type": "response.function_call_arguments.done",
                    "response_id": response_id,
                    "item_id": call.id,
                    "call_id": call_id,
                    "name": name,
                    "arguments": call.text,
                }
            )
            await out.send(
                {"type": "response.output_item.done", "response_id": response_id, "item": call_item}
            )
            output.append(call_item)
        return output

    async def _done(
        self,
        session: FakeSession,
        out: _Out,
        base: dict[str, Any],
        status: str,
        output: list[dict[str, Any]],
        error: dict[str, Any] | None = None,
    ) -> None:
        session.active = None
        response = {**base, "status": status, "output": output}
        if error is not None:
            response["status_details"] = {"type": "failed", "error": error}
        elif status == "cancelled":
            response["status_details"] = {"type": "cancelled", "reason": "client_cancelled"}
        await out.send({"type": "response.done", "response": response})

    async def _hold(self, session: FakeSession) -> None:
        while not self.release.is_set() and not session.cancel_requested and not session.closed:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.01)

    # --- the conversation -------------------------------------------------------------------
    async def _truncate(self, session: FakeSession, out: _Out, event: dict[str, Any]) -> None:
        session.truncates.append(event)
        item = next((i for i in session.items if i.id == event.get("item_id")), None)
        end = event.get("audio_end_ms")
        if item is None or item.role != "assistant":
            await out.error("invalid_request_error", "item_not_found", "no such assistant item")
            return
        if not isinstance(end, int) or end < 0 or end > item.audio_ms:
            await out.error(
                "invalid_request_error",
                "invalid_value",
                f"audio_end_ms ({end}) must be between 0 and {item.audio_ms}",
            )
            return
        item.truncated_at = end
        await out.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item.id,
                "content_index": event.get("content_index", 0),
                "audio_end_ms": end,
            }
        )

    def _create_item(self, session: FakeSession, item: dict[str, Any]) -> None:
        kind = str(item.get("type") or "")
        if kind == "function_call_output":
            session.items.append(
                Item(
                    f"item_{next(self._ids)}",
                    kind,
                    call_id=str(item.get("call_id")),
                    text=str(item.get("output")),
                )
            )
            return
        content = item.get("content") or [{}]
        text = " ".join(str(part.get("text") or part.get("transcript") or "") for part in content)
        session.items.append(
            Item(f"item_{next(self._ids)}", kind, str(item.get("role") or ""), text)
        )


class _Out:
    """Server events to one client, stamped with event ids."""

    def __init__(self, connection: ServerConnection, session: FakeSession) -> None:
        self.connection = connection
        self.session = session

    async def send(self, event: dict[str, Any]) -> None:
        if self.session.closed:
            return
        self.session.sent += 1
        number = self.session.sent
        try:
            await self.connection.send(json.dumps({"event_id": f"event_{number}", **event}))
        except Exception:
            self.session.sent -= 1
        await asyncio.sleep(0)

    async def error(self, kind: str, code: str, message: str) -> None:
        await self.send(
            {"type": "error", "error": {"type": kind, "code": code, "message": message}}
        )

    async def transcription(self, item: Item) -> None:
        if item.text:
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item.id,
                    "content_index": 0,
                    "transcript": item.text,
                }
            )


def _json_response(status: int, message: str, kind: str, code: str) -> Response:
    body = json.dumps({"error": {"message": message, "type": kind, "code": code}}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    reason = {401: "Unauthorized", 404: "Not Found", 503: "Service Unavailable"}.get(
        status, "Error"
    )
    return Response(status, reason, headers, body)


def _query(path: str) -> dict[str, str]:
    _, _, query = path.partition("?")
    pairs = (part.partition("=") for part in query.split("&") if part)
    return {key: value for key, _, value in pairs}


def _format(config: dict[str, Any], direction: str) -> str:
    fmt = (((config.get("audio") or {}).get(direction) or {}).get("format")) or {}
    return "pcmu" if fmt.get("type") == "audio/pcmu" else "pcm"


def _input_format(config: dict[str, Any]) -> str:
    return _format(config, "input")


def _output_format(config: dict[str, Any]) -> str:
    return _format(config, "output")


def _tone(ms: int, fmt: str, offset_ms: int) -> bytes:
    rate = 8000 if fmt == "pcmu" else 24000
    start = rate * offset_ms // 1000
    t = (np.arange(rate * ms // 1000) + start) / rate
    pcm = (np.sin(2 * np.pi * 440.0 * t) * 6000).astype(np.int16)
    return mulaw_encode_bytes(pcm) if fmt == "pcmu" else l16_encode(pcm)


async def _serve_forever(port: int, lines: list[str], says: list[str]) -> None:
    fake = FakeRealtime(api_key=None)
    fake.caller_says(*lines)
    fake.reply(*(Reply(text=text) for text in says))
    await fake.start(port)
    print(f"fake OpenAI Realtime on {fake.base_url} (OPENAI_BASE_URL={fake.base_url})", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--caller", action="append", default=[], help="a caller line (transcript)")
    parser.add_argument("--say", action="append", default=[], help="a reply of the model")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.port, args.caller, args.say))


if __name__ == "__main__":
    main()
