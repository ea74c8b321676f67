"""A fake of Google's Gemini Live API: a real WebSocket server over TLS on 127.0.0.1 (the SDK
always speaks ``wss`` to an API-key endpoint, so the fake makes itself a certificate for
127.0.0.1; point ``SSL_CERT_FILE`` at ``fake.cafile``), reached by the official ``google-genai``
SDK through ``HttpOptions(base_url=...)``.

It speaks the Live protocol: ``setup`` answered with ``setupComplete`` (a wrong
``x-goog-api-key`` closes with 1007 and Google's reason, an unknown model with 1008);
``realtimeInput`` audio (16 kHz PCM) through a small endpointer standing in for Gemini's activity
detection, or ``activityStart`` / ``activityEnd`` when it is disabled; caller speech over the
model's reply interrupts it (``serverContent.interrupted``: generation stops, what was sent
stays in the model's context); a turn's end is answered with the scripted reply: 24 kHz PCM in
``modelTurn`` parts, ``outputTranscription`` chunks, the caller's ``inputTranscription``, then
``turnComplete``. ``clientContent`` turns are kept as context (the initial history of a
``history_config`` session, notes) or, asking to say a line, answered with that line;
``toolCall`` waits for ``toolResponse``. Scripted faults: a dropped socket mid-reply, an error
mid-reply (Gemini closes with 1011 and its reason), a reply that never begins, ``goAway``
after a reply (the session is closed ``go_away_close_s`` later, if the client has not left), an
outage (``unavailable``: every setup is closed with 1011) and a setup left unanswered
(``hold_setup``, until ``release`` or the client leaves).

Session resumption: a setup with ``sessionResumption`` gets ``sessionResumptionUpdate``s, a new
handle (``resumable``) after ``setupComplete`` and after each reply, ``resumable: false`` while
one is generated; a setup that names a handle resumes that point of the conversation (the
model's context as it was), an unknown or forgotten one (``handles``) is refused with 1008.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import itertools
import json
import ssl
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fake_wait import hold_setup, wait_until
from websockets.asyncio.server import Server, ServerConnection, serve

from voicebridge.audio.l16 import l16_decode, l16_encode

SAY_PREFIX = "Say this to the caller, word for word"
SPEECH_RMS = 500.0


@dataclass
class Reply:
    text: str = "I see."
    ms_per_char: float = 60.0
    chunk_ms: int = 100
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    after_tools: str = ""  # said once the tools are answered
    drop_after_chunks: int | None = None
    fail: str = ""  # with drop_after_chunks: the close reason (Gemini's error message)
    never: bool = False  # no reply at all
    go_away: bool = False  # after turnComplete: goAway, then close after go_away_close_s


@dataclass
class FakeSession:
    number: int
    path: str
    headers: dict[str, str]
    setup: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)  # client messages, no audio
    audio_ms: float = 0.0
    context: list[tuple[str, str]] = field(default_factory=list)  # what the model remembers
    notes: list[str] = field(default_factory=list)
    tool_responses: list[Any] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)  # the initial history given
    resumption: bool = False  # the client asked for resumption handles
    resumed_from: str = ""  # the handle this session resumed
    closed: bool = False
    received: int = 0
    sent: int = 0
    speaking: bool = False
    quiet_ms: float = 0.0
    generating: asyncio.Task[Any] | None = None
    leaving: asyncio.Task[Any] | None = None  # goAway sent: the close to come
    interrupted: int = 0
    awaiting_history: bool = False
    awaiting_tools: bool = False  # a reply waits for the client's tool response
    pending_tools: asyncio.Event = field(default_factory=asyncio.Event)

    def of(self, key: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if key in m]


class FakeGemini:
    def __init__(self, api_key: str = "gm-fake", models: tuple[str, ...] = ()) -> None:
        self.api_key = api_key
        self.models = models
        self.replies: deque[Reply] = deque()
        self.default_reply = Reply()
        self.caller_lines: deque[str] = deque()
        self.sessions: list[FakeSession] = []
        self.changed = asyncio.Event()
        self.host = "127.0.0.1"
        self.port = 0
        self._server: Server | None = None
        self._connections: dict[int, ServerConnection] = {}
        self._ids = itertools.count(1)
        self._dir = tempfile.TemporaryDirectory()
        self.cafile = str(Path(self._dir.name) / "fake-gemini.pem")
        self.go_away_close_s = 5.0
        self.unavailable = False  # close every setup with 1011, as during an outage
        self.refused = 0  # setups refused while unavailable
        self.hold_setup = False  # leave setups unanswered until ``release``
        self.holding = 0  # setups being held
        self.held: set[int] = set()  # ...by their session (connection) number
        self.release = asyncio.Event()
        self.handles: dict[str, list[tuple[str, str]]] = {}  # handle -> the context it resumes

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}/"

    @property
    def session(self) -> FakeSession:
        return self.sessions[-1]

    @property
    def connections(self) -> int:
        """Connections that reached the fake (refused ones too), numbered from 1."""
        return len(self.sessions)

    @property
    def generating(self) -> bool:
        """A reply is being sent (not one waiting for a tool response)."""
        return any(
            s.generating is not None and not s.generating.done() and not s.awaiting_tools
            for s in self.sessions
        )

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def caller_says(self, *lines: str) -> None:
        self.caller_lines.extend(lines)

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        """Wait (real time) until ``predicate()`` holds."""
        await wait_until(self.changed, predicate, timeout, "the fake Gemini server")

    # --- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> FakeGemini:
        context = self._tls()
        self._server = await serve(
            self._handle, self.host, 0, ssl=context, compression=None, max_size=None
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        for session in self.sessions:
            for task in (session.generating, session.leaving):
                if task is not None:
                    task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._dir.cleanup()

    def _tls(self) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-gemini")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(self.host))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM)
        Path(self.cafile).write_bytes(pem)
        keyfile = Path(self._dir.name) / "key.pem"
        keyfile.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cafile, keyfile)
        return context

    async def drop(self, session: FakeSession, reason: str = "") -> None:
        connection = self._connections.get(session.number)
        if connection is not None:
            await connection.close(1011, reason or "Internal error encountered.")

    async def _resumable(self, session: FakeSession, out: _Out) -> None:
        """A new handle for this point of the conversation (when the client asked for them)."""
        if not session.resumption:
            return
        handle = f"handle-{session.number}-{next(self._ids)}"
        self.handles[handle] = list(session.context)
        update = {"newHandle": handle, "resumable": True}
        await out.send({"sessionResumptionUpdate": update})

    async def _go_away(self, session: FakeSession, out: _Out) -> None:
        await out.send({"goAway": {"timeLeft": f"{self.go_away_close_s:g}s"}})
        await asyncio.sleep(self.go_away_close_s)
        await self.drop(session, "Session closed after goAway.")

    # --- a session --------------------------------------------------------------------------
    async def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        session = FakeSession(
            len(self.sessions) + 1, request.path, dict(request.headers.raw_items())
        )
        self.sessions.append(session)
        self._connections[session.number] = connection
        out = _Out(connection, session, self)
        try:
            first = json.loads(await connection.recv())
            session.received += 1
            session.setup = first.get("setup") or {}
            if self.unavailable:
                self.refused += 1
                await connection.close(1011, "The service is currently unavailable.")
                return
            if self.hold_setup:
                await hold_setup(self, connection, session.number)
            if request.headers.get("x-goog-api-key") != self.api_key:
                await connection.close(1007, "API key not valid. Please pass a valid API key.")
                return
            model = str(session.setup.get("model", "")).removeprefix("models/")
            if self.models and model not in self.models:
                await connection.close(
                    1008,
                    f"models/{model} is not found for API version v1beta, or is not supported "
                    "for bidiGenerateContent.",
                )
                return
            resumption = _get(session.setup, "sessionResumption", "session_resumption")
            session.resumption = resumption is not None
            handle = str((resumption or {}).get("handle") or "")
            if handle:
                if handle not in self.handles:
                    await connection.close(1008, "Invalid session resumption handle.")
                    return
                session.context = list(self.handles[handle])
                session.resumed_from = handle
            history = _get(session.setup, "historyConfig", "history_config") or {}
            session.awaiting_history = bool(
                _get(history, "initialHistoryInClientContent", "initial_history_in_client_content")
            )
            await out.send({"setupComplete": {}})
            await self._resumable(session, out)
            async for raw in connection:
                message = json.loads(raw)
                await self._message(session, out, message)
                session.received += 1
                self.changed.set()
        except Exception:
            pass  # the client went away, or sent what this fake cannot read: the socket ends
        finally:
            session.closed = True
            if session.generating is not None:
                session.generating.cancel()
            self._connections.pop(session.number, None)
            self.changed.set()

    async def _message(self, session: FakeSession, out: _Out, message: dict[str, Any]) -> None:
        realtime = _get(message, "realtimeInput", "realtime_input")
        if realtime is not None:
            audio = realtime.get("audio")
            if audio is not None:
                await self._audio(session, out, _b64(str(audio.get("data", ""))))
                return
            session.messages.append(message)
            if _get(realtime, "activityStart", "activity_start") is not None:
                await self._interrupt(session, out)
            elif _get(realtime, "activityEnd", "activity_end") is not None:
                await self._caller_turn(session, out)
            return
        session.messages.append(message)
        content = _get(message, "clientContent", "client_content")
        if content is not None:
            await self._content(session, out, content)
        tools = _get(message, "toolResponse", "tool_response")
        if tools is not None:
            session.tool_responses.append(tools)
            session.pending_tools.set()

    async def _audio(self, session: FakeSession, out: _Out, data: bytes) -> None:
        pcm = l16_decode(data)
        ms = 1000.0 * len(pcm) / 16000
        session.audio_ms += ms
        detection = _get(
            _get(session.setup, "realtimeInputConfig") or {}, "automaticActivityDetection"
        )
        if detection and detection.get("disabled"):
            return
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
        if rms >= SPEECH_RMS:
            session.quiet_ms = 0.0
            if not session.speaking:
                session.speaking = True
                await self._interrupt(session, out)
            return
        if not session.speaking:
            return
        session.quiet_ms += ms
        silence = float((detection or {}).get("silenceDurationMs", 500))
        if session.quiet_ms >= silence:
            session.speaking = False
            await self._caller_turn(session, out)

    async def _interrupt(self, session: FakeSession, out: _Out) -> None:
        task = session.generating
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            session.interrupted += 1
            await out.send({"serverContent": {"interrupted": True}})

    async def _caller_turn(self, session: FakeSession, out: _Out) -> None:
        words = self.caller_lines.popleft() if self.caller_lines else ""
        if words:
            session.context.append(("user", words))
        reply = self.replies.popleft() if self.replies else self.default_reply
        if reply.never and words:  # heard and transcribed, never answered
            await out.send({"serverContent": {"inputTranscription": {"text": words}}})
        self._generate(session, out, reply, caller=words)

    async def _content(self, session: FakeSession, out: _Out, content: dict[str, Any]) -> None:
        turns = content.get("turns") or []
        complete = bool(_get(content, "turnComplete", "turn_complete"))
        texts = [
            (
                str(turn.get("role", "user")),
                " ".join(str(p.get("text", "")) for p in turn.get("parts") or []),
            )
            for turn in turns
        ]
        if session.awaiting_history:
            session.history.extend(texts)
            session.context.extend(texts)
            session.awaiting_history = not complete
            return
        for role, text in texts:
            if text.startswith("(Note"):
                session.notes.append(text)
                session.context.append((role, text))
            elif text.startswith(SAY_PREFIX):
                self._generate(session, out, Reply(text=text.split("\n", 1)[1]))
            else:
                session.context.append((role, text))
                if complete:
                    reply = self.replies.popleft() if self.replies else self.default_reply
                    self._generate(session, out, reply)

    def _generate(self, session: FakeSession, out: _Out, reply: Reply, caller: str = "") -> None:
        if session.generating is not None and not session.generating.done():
            return
        if reply.never:
            return
        session.generating = asyncio.get_running_loop().create_task(
            self._speak(session, out, reply, caller)
        )

    async def _speak(self, session: FakeSession, out: _Out, reply: Reply, caller: str) -> None:
        said: list[str] = []
        if session.resumption:  # not while generating
            await out.send({"sessionResumptionUpdate": {"resumable": False}})
        session.context.append(("model", ""))
        index = len(session.context) - 1
        try:
            await self._say(session, out, reply, reply.text, said, index, caller)
            if reply.tool_calls:
                session.pending_tools.clear()
                calls = [
                    {"id": f"fc_{next(self._ids)}", "name": name, "args": args}
                    for name, args in reply.tool_calls
                ]
                await out.send({"toolCall": {"functionCalls": calls}})
                session.awaiting_tools = True
                try:
                    await session.pending_tools.wait()
                finally:
                    session.awaiting_tools = False
                follow = reply.after_tools
                answers = _get(
                    session.tool_responses[-1], "functionResponses", "function_responses"
                )
                for answer in answers or []:
                    result = str((answer.get("response") or {}).get("result", ""))
                    if "nothing else: " in result:
                        follow = result.split("nothing else: ", 1)[1]
                await self._say(session, out, Reply(text=follow), follow, said, index, "")
            await out.send({"serverContent": {"turnComplete": True}})
            await self._resumable(session, out)
        except asyncio.CancelledError:
            raise
        if reply.go_away:
            session.leaving = asyncio.get_running_loop().create_task(self._go_away(session, out))

    async def _say(
        self,
        session: FakeSession,
        out: _Out,
        reply: Reply,
        text: str,
        said: list[str],
        index: int,
        caller: str,
    ) -> None:
        if not text:
            if caller:
                await out.send({"serverContent": {"inputTranscription": {"text": caller}}})
            return
        total_ms = round(len(text) * reply.ms_per_char)
        words = text.split(" ")
        chunks = max(1, -(-total_ms // reply.chunk_ms))
        sent_words = 0
        for chunk in range(chunks):
            if reply.drop_after_chunks is not None and chunk == reply.drop_after_chunks:
                await self.drop(session, reply.fail)
                return
            ms = min(reply.chunk_ms, total_ms - chunk * reply.chunk_ms)
            audio = _tone(ms, chunk * reply.chunk_ms)
            part = {
                "inlineData": {
                    "mimeType": "audio/pcm;rate=24000",
                    "data": base64.b64encode(audio).decode(),
                }
            }
            await out.send({"serverContent": {"modelTurn": {"parts": [part]}}})
            if chunk == 0 and caller:  # the caller's words come late, during the reply
                await out.send({"serverContent": {"inputTranscription": {"text": caller}}})
            due = min(len(words), round(len(words) * (chunk + 2) / chunks))
            while sent_words < due:
                delta = words[sent_words] + (" " if sent_words < len(words) - 1 else "")
                said.append(delta)
                sent_words += 1
                await out.send({"serverContent": {"outputTranscription": {"text": delta}}})
                session.context[index] = ("model", "".join(said).strip())


class _Out:
    def __init__(
        self, connection: ServerConnection, session: FakeSession, fake: FakeGemini
    ) -> None:
        self.connection = connection
        self.session = session
        self.fake = fake

    async def send(self, message: dict[str, Any]) -> None:
        if self.session.closed:
            return
        self.session.sent += 1
        try:
            await self.connection.send(json.dumps(message))
        except Exception:
            self.session.sent -= 1
        self.fake.changed.set()
        await asyncio.sleep(0)


def _b64(data: str) -> bytes:
    """The SDK sends bytes URL-safe base64 encoded, unpadded; Google takes either form."""
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _get(data: Any, *keys: str) -> Any:
    if not isinstance(data, dict):
        return None
    for key in keys:
        if key in data:
            return data[key]
    return None


def _tone(ms: int, offset_ms: int) -> bytes:
    rate = 24000
    start = rate * offset_ms // 1000
    t = (np.arange(rate * ms // 1000) + start) / rate
    return l16_encode((np.sin(2 * np.pi * 440.0 * t) * 6000).astype(np.int16))
