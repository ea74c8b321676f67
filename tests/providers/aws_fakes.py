"""Local fakes of the AWS APIs the ``aws`` stages use, speaking their wire protocols on 127.0.0.1.

* :class:`FakeAwsHttp`: Polly ``POST /v1/speech`` and Lex V2 runtime ``POST /bots/{botId}/
  botAliases/{aliasId}/botLocales/{localeId}/sessions/{sessionId}/text`` (rest-json), a Starlette
  app under uvicorn in the test's event loop, reached through boto3's ``endpoint_url``.
* :class:`FakeTranscribe`: Transcribe's streaming WebSocket API (``websockets`` server): checks
  the SigV4 presigned URL, decodes event-stream audio, and answers each utterance (speech, then
  silence) with partial and final ``TranscriptEvent``s, or with scripted exceptions and drops.

Both verify SigV4 signatures with their own implementation of the published algorithm (not
botocore's), using the dummy secret, so a test proves the request was really signed.

Tests import it by name (``import aws_fakes as fakes``): ``conftest.py`` puts this folder on
``sys.path`` and offers the ``aws_env`` fixture to the tests here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse

from voicebridge.server.run import LoopServer, loopback_config
from voicebridge.stages.aws_common import clear_clients
from voicebridge.stages.stt.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    encode_message,
)

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# --- environment ---------------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Dummy credentials and region from the environment only; no profile, no instance role."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    clear_clients()
    yield
    clear_clients()


# --- SigV4, independently of botocore ------------------------------------------------------------


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _signature(secret: str, date: str, region: str, service: str, string_to_sign: str) -> str:
    key = _sign(("AWS4" + secret).encode("utf-8"), date)
    key = _sign(key, region)
    key = _sign(key, service)
    key = _sign(key, "aws4_request")
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _uri_encode(value: str) -> str:
    return quote(value, safe="-_.~")


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    encoded = sorted((_uri_encode(k), _uri_encode(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"


def verify_presigned(
    raw_path: str, query: str, host: str, secret: str = SECRET_KEY, access_key: str = ACCESS_KEY
) -> tuple[bool, str, str]:
    """Check a query-signed GET: returns (ok, reason, signing service)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    params = dict(pairs)
    for name in (
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ):
        if name not in params:
            return False, f"missing {name}", ""
    if params["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
        return False, "bad algorithm", ""
    if int(params["X-Amz-Expires"]) > 300:
        return False, "X-Amz-Expires above 300", ""
    signed_headers = params["X-Amz-SignedHeaders"].split(";")
    if signed_headers != ["host"]:
        return False, f"unexpected signed headers {signed_headers}", ""
    key_id, date, region, service, terminal = params["X-Amz-Credential"].split("/")
    if key_id != access_key or terminal != "aws4_request":
        return False, "bad credential scope", service
    unsigned = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
    canonical = "\n".join(
        [
            "GET",
            quote(raw_path, safe="/~"),
            _canonical_query(unsigned),
            f"host:{host}\n",
            "host",
            EMPTY_SHA256,
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    expected = _signature(
        secret, date, region, service, _string_to_sign(params["X-Amz-Date"], scope, canonical)
    )
    if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        return False, "signature mismatch", service
    return True, "", service


def verify_authorization(
    method: str,
    raw_path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    secret: str = SECRET_KEY,
) -> tuple[bool, str, str]:
    """Check a header-signed request (``Authorization: AWS4-HMAC-SHA256 ...``)."""
    header = headers.get("authorization", "")
    if not header.startswith("AWS4-HMAC-SHA256 "):
        return False, "no SigV4 Authorization header", ""
    fields = dict(
        part.strip().split("=", 1) for part in header[len("AWS4-HMAC-SHA256 ") :].split(",")
    )
    access_key, date, region, service, _ = fields["Credential"].split("/")
    if access_key != ACCESS_KEY:
        return False, "unknown access key", service
    signed = fields["SignedHeaders"].split(";")
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed
    )
    payload_hash = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical = "\n".join(
        [
            method,
            quote(raw_path, safe="/~"),
            _canonical_query(parse_qsl(query, keep_blank_values=True)),
            canonical_headers,
            ";".join(signed),
            payload_hash,
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    expected = _signature(
        secret, date, region, service, _string_to_sign(headers["x-amz-date"], scope, canonical)
    )
    if not hmac.compare_digest(expected, fields["Signature"]):
        return False, "signature mismatch", service
    return True, "", service


# --- Polly + Lex over HTTP -----------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRecord:
    """One request as the fake saw it (after signature verification)."""

    method: str
    path: str  # percent-encoded, as sent
    headers: dict[str, str]
    json: Any
    signed: bool
    service: str
    status: int


@dataclass(frozen=True)
class Fault:
    status: int
    code: str
    message: str = "fake fault"


def tone(samples: int, rate: int, level: int = 4000) -> np.ndarray:
    t = np.arange(samples) / rate
    return (level * np.sin(2 * np.pi * 440.0 * t)).astype("<i2")


def default_lex_reply(text: str, request: dict[str, Any]) -> dict[str, Any]:
    """An echo bot: "bye" closes the Goodbye intent as Fulfilled."""
    if "bye" in text.lower():
        return {
            "messages": [{"contentType": "PlainText", "content": "Goodbye. Thanks for calling."}],
            "sessionState": {
                "dialogAction": {"type": "Close"},
                "intent": {"name": "Goodbye", "state": "Fulfilled"},
            },
        }
    return {
        "messages": [{"contentType": "PlainText", "content": f"You said {text}."}],
        "sessionState": {
            "dialogAction": {"type": "ElicitIntent"},
            "intent": {"name": "Echo", "state": "InProgress"},
        },
    }


@dataclass(eq=False)
class FakeAwsHttp:
    """Polly and Lex V2 runtime on one loopback port.

    Polly answers PCM of ``ms_per_char`` per character of text at the requested rate, and word
    speech marks on the same timing (``OutputFormat: json``). Lex answers
    with ``lex_replies`` in order while any are queued, else with ``lex_reply(text, body)``.
    ``fail_next`` answers the next requests with AWS rest-json errors; ``delay_s`` (or
    ``slow_next``) holds answers back so timeouts can be tested, and ``hold_next`` holds the
    next answer until the test releases it, so barge-in is tested without racing the clock.
    ``answered`` counts the answers handed back to the server, held or not.
    """

    ms_per_char: int = 20
    delay_s: float = 0.0
    mark_failures: int = 0
    lex_reply: Callable[[str, dict[str, Any]], dict[str, Any]] = default_lex_reply
    lex_replies: deque[dict[str, Any]] = field(default_factory=deque)
    faults: deque[Fault] = field(default_factory=deque)
    delays: deque[float] = field(default_factory=deque)
    requests: list[HttpRecord] = field(default_factory=list)
    answered: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._holds: deque[asyncio.Event] = deque()
        self._server: LoopServer | None = None
        self._closing = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, code: str, status: int, n: int = 1, message: str = "fake fault") -> None:
        self.faults.extend(Fault(status, code, message) for _ in range(n))

    def slow_next(self, delay_s: float, n: int = 1) -> None:
        self.delays.extend(delay_s for _ in range(n))

    def hold_next(self, n: int = 1) -> asyncio.Event:
        """Hold the answers to the next ``n`` requests until the returned event is set (or the
        fake closes)."""
        release = asyncio.Event()
        self._holds.extend(release for _ in range(n))
        return release

    def polly_requests(self) -> list[HttpRecord]:
        return [r for r in self.requests if r.path == "/v1/speech"]

    def lex_requests(self) -> list[HttpRecord]:
        return [r for r in self.requests if r.path.startswith("/bots/")]

    async def __aenter__(self) -> FakeAwsHttp:
        self._closing = asyncio.Event()
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST", "GET"])])
        # boto3's idle keep-alive connections need no wait at shutdown.
        self._server = LoopServer(loopback_config(app), force_exit=True)
        _, self.port = await self._server.start()

        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._server is not None:
            await self._server.stop()
        self._server = None

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1") if raw else request.url.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        ok, reason, service = verify_authorization(
            request.method, path, request.url.query, headers, body
        )
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        response = self._answer(path, parsed, ok, reason, service)
        self.requests.append(
            HttpRecord(request.method, path, headers, parsed, ok, service, response.status_code)
        )
        if self._holds:
            await _first_of(self._holds.popleft(), self._closing)
        delay = self.delays.popleft() if self.delays else self.delay_s
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
        self.answered += 1
        return response

    def _answer(self, path: str, body: Any, signed: bool, reason: str, service: str) -> Response:
        if self.faults:
            fault = self.faults.popleft()
            return _aws_error(fault.status, fault.code, fault.message)
        if not signed:
            return _aws_error(403, "InvalidSignatureException", reason)
        if path == "/v1/speech" and service == "polly":
            return self._polly(body)
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if (
            len(parts) == 9
            and parts[0::2] == ["bots", "botAliases", "botLocales", "sessions", "text"]
            and service == "lex"
        ):
            return self._lex(parts, body)
        return _aws_error(404, "ResourceNotFoundException", f"no route {path}")

    def _polly(self, body: Any) -> Response:
        if not isinstance(body, dict) or not body.get("Text") or not body.get("VoiceId"):
            return _aws_error(400, "ValidationException", "Text and VoiceId are required")
        if body.get("OutputFormat") == "json":
            return self._speech_marks(body)
        if body.get("OutputFormat") != "pcm":
            return _aws_error(400, "ValidationException", "this fake speaks pcm or json only")
        rate = body.get("SampleRate")
        if rate not in ("8000", "16000"):
            return _aws_error(400, "InvalidSampleRateException", f"bad SampleRate {rate!r}")
        text = str(body["Text"])
        if body.get("TextType") == "ssml" and not text.startswith("<speak>"):
            return _aws_error(400, "InvalidSsmlException", "SSML must be inside <speak>")
        samples = int(rate) * self.ms_per_char * len(text) // 1000
        pcm = tone(samples, int(rate)).tobytes()
        return Response(
            pcm,
            media_type="audio/pcm",
            headers={"x-amzn-RequestCharacters": str(len(text))},
        )

    def _speech_marks(self, body: dict[str, Any]) -> Response:
        """Word speech marks as Polly sends them: one JSON object per line, ``time`` the ms at
        which the word starts (``ms_per_char`` per character, as the audio), ``start``/``end``
        its byte offsets in the request's text. Marks for ``mark_failures`` requests fail."""
        if body.get("SpeechMarkTypes") != ["word"]:
            return _aws_error(400, "ValidationException", "this fake marks words only")
        if self.mark_failures > 0:
            self.mark_failures -= 1
            return _aws_error(500, "ServiceFailureException", "marks unavailable")
        text = str(body["Text"])
        lines = []
        for match in re.finditer(r"[\w'$%.,:-]*\w[\w'$%]*", text):
            start = len(text[: match.start()].encode())
            value = match.group().rstrip(".,:")
            mark = {
                "time": self.ms_per_char * match.start(),
                "type": "word",
                "start": start,
                "end": start + len(value.encode()),
                "value": value,
            }
            lines.append(json.dumps(mark))
        return Response(("\n".join(lines) + "\n").encode(), media_type="application/x-json-stream")

    def _lex(self, parts: list[str], body: Any) -> Response:
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return _aws_error(400, "ValidationException", "text is required")
        reply = (
            self.lex_replies.popleft() if self.lex_replies else self.lex_reply(body["text"], body)
        )
        reply = {
            "sessionId": parts[7],
            "requestAttributes": {},
            **reply,
        }
        return JSONResponse(reply)


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _aws_error(status: int, code: str, message: str) -> Response:
    return JSONResponse(
        {"message": message}, status_code=status, headers={"x-amzn-ErrorType": code}
    )


# --- Transcribe streaming over WebSocket ---------------------------------------------------------


@dataclass
class StreamRecord:
    """One WebSocket stream as the fake saw it."""

    query: dict[str, str]
    audio: bytearray = field(default_factory=bytearray)
    audio_events: int = 0
    ended: bool = False  # the client sent the empty AudioEvent
    bad_messages: list[str] = field(default_factory=list)


@dataclass
class StreamFault:
    """What to do to the stream number ``stream`` (0-based) after ``after_events`` audio events:
    send an exception message (``exception`` set) or drop the connection (``exception`` None)."""

    stream: int
    after_events: int
    exception: str | None = None
    message: str = "fake exception"


@dataclass(frozen=True)
class ScriptedResult:
    """A result the fake sends once its stream has received ``after_ms`` of audio, timed as
    scripted (seconds into the stream, as Transcribe times them): ``end_s`` is the result's
    ``EndTime``; with ``words_end_s`` its words come as items, the last ending there."""

    after_ms: float
    text: str
    partial: bool
    end_s: float
    words_end_s: float | None = None
    result_id: str = "scripted-1"


@dataclass(eq=False)
class FakeTranscribe:
    """Transcribe's ``/stream-transcription-websocket``: answers each utterance (at least
    ``min_speech_ms`` of audio louder than ``threshold`` RMS, then ``end_silence_ms`` quieter)
    with the next of ``lines``: a partial result per audio event while speech goes on, then the
    final one. With ``script``, it sends those results instead, each once the stream has heard
    enough audio; ``heard_ms`` counts the audio it has answered for, ``results_sent`` its
    results (so a test can wait until the stage has them)."""

    lines: list[str] = field(default_factory=list)
    threshold: float = 300.0
    min_speech_ms: int = 100
    end_silence_ms: int = 300
    reject_status: int | None = None  # answer every handshake with this HTTP status
    faults: list[StreamFault] = field(default_factory=list)
    streams: list[StreamRecord] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    finals_sent: list[str] = field(default_factory=list)
    script: list[ScriptedResult] | None = None
    heard_ms: float = 0.0
    results_sent: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._server: Server | None = None
        self._next_line = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeTranscribe:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._check,
            compression=None,
            ping_interval=None,
        )
        sockets = list(self._server.sockets)
        self.port = sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _check(self, connection: ServerConnection, request: WsRequest) -> WsResponse | None:
        if self.reject_status is not None:
            self.rejected.append((self.reject_status, "scripted"))
            return _ws_error(connection, self.reject_status, "AccessDeniedException", "scripted")
        parts = urlsplit(request.path)
        host = request.headers.get("Host", "")
        ok, reason, service = verify_presigned(parts.path, parts.query, host)
        if not ok or service != "transcribe":
            reason = reason or f"signed for {service!r}"
            self.rejected.append((403, reason))
            return _ws_error(connection, 403, "BadRequestException", reason)
        if parts.path != "/stream-transcription-websocket":
            self.rejected.append((404, parts.path))
            return _ws_error(connection, 404, "BadRequestException", "no such path")
        query = dict(parse_qsl(parts.query))
        if query.get("media-encoding") != "pcm" or not query.get("language-code"):
            self.rejected.append((400, "params"))
            return _ws_error(connection, 400, "BadRequestException", "bad parameters")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path if ws.request is not None else "")
        query = dict(parse_qsl(parts.query))
        record = StreamRecord(query)
        index = len(self.streams)
        self.streams.append(record)
        rate = int(query.get("sample-rate", "8000"))
        faults = [f for f in self.faults if f.stream == index]
        decoder = EventStreamDecoder()
        utterance = _Utterance()
        sent_ms = 0.0
        try:
            async for data in ws:
                if isinstance(data, str):
                    record.bad_messages.append("text frame")
                    continue
                try:
                    messages = decoder.feed(data)
                except EventStreamError as exc:
                    record.bad_messages.append(str(exc))
                    await _send_exception(ws, "BadRequestException", f"bad event stream: {exc}")
                    return
                for message in messages:
                    headers = message.headers
                    if (
                        headers.get(":message-type") != "event"
                        or headers.get(":event-type") != "AudioEvent"
                        or headers.get(":content-type") != "application/octet-stream"
                    ):
                        record.bad_messages.append(repr(headers))
                        continue
                    if not message.payload:
                        record.ended = True
                        if utterance.speech_ms >= self.min_speech_ms:
                            await self._final(ws, utterance, sent_ms)
                        await ws.close(1000)
                        return
                    record.audio += message.payload
                    record.audio_events += 1
                    for fault in faults:
                        if record.audio_events == fault.after_events:
                            if fault.exception is None:
                                await _drop(ws)
                            else:
                                await _send_exception(ws, fault.exception, fault.message)
                                await ws.close(1000)
                            return
                    chunk_ms = 1000.0 * len(message.payload) / 2 / rate
                    samples = np.frombuffer(message.payload, "<i2").astype(np.float64)
                    loud = bool(samples.size) and float(np.sqrt(np.mean(samples**2))) > (
                        self.threshold
                    )
                    sent_ms += chunk_ms
                    if self.script is None:
                        await self._track(ws, utterance, loud, chunk_ms, sent_ms)
                    else:
                        await self._scripted(ws, sent_ms)
                    self.heard_ms += chunk_ms
        except Exception:  # the client went away: nothing to answer
            return

    async def _track(
        self, ws: ServerConnection, u: _Utterance, loud: bool, chunk_ms: float, now_ms: float
    ) -> None:
        if loud:
            if u.speech_ms == 0:
                u.start_ms = now_ms - chunk_ms
                u.result_id = str(uuid.uuid4())
            u.speech_ms += chunk_ms
            u.silence_ms = 0
            u.end_ms = now_ms
            if u.speech_ms < self.min_speech_ms:
                return  # not an utterance yet: no partial, and no line taken
            words = self._line_for(u).split()
            count = max(1, min(len(words), round(u.speech_ms / 200)))
            if words:
                await _send_result(ws, u, " ".join(words[:count]), partial=True)
        elif u.speech_ms:
            u.silence_ms += chunk_ms
            if u.silence_ms >= self.end_silence_ms:
                if u.speech_ms >= self.min_speech_ms:
                    await self._final(ws, u, now_ms)
                u.reset()

    async def _scripted(self, ws: ServerConnection, sent_ms: float) -> None:
        assert self.script is not None
        while self.script and self.script[0].after_ms <= sent_ms:
            result = self.script.pop(0)
            words = result.text.split()
            end = result.words_end_s
            items = [
                {"Type": "pronunciation", "Content": w, "StartTime": 0.0, "EndTime": end}
                for w in words
            ]
            payload = {
                "Transcript": {
                    "Results": [
                        {
                            "ResultId": result.result_id,
                            "StartTime": 0.0,
                            "EndTime": result.end_s,
                            "IsPartial": result.partial,
                            "Alternatives": [
                                {"Transcript": result.text, "Items": items if end else []}
                            ],
                        }
                    ]
                }
            }
            await ws.send(encode_message(_TRANSCRIPT_HEADERS, json.dumps(payload).encode()))
            self.results_sent += 1

    def _line_for(self, u: _Utterance) -> str:
        if u.line is None:
            u.line = self.lines[self._next_line] if self._next_line < len(self.lines) else ""
            self._next_line += 1
        return u.line

    async def _final(self, ws: ServerConnection, u: _Utterance, now_ms: float) -> None:
        line = self._line_for(u)
        if line:
            await _send_result(ws, u, line, partial=False)
            self.finals_sent.append(line)
        u.reset()


@dataclass
class _Utterance:
    speech_ms: float = 0.0
    silence_ms: float = 0.0
    start_ms: float = 0.0
    end_ms: float = 0.0
    result_id: str = ""
    line: str | None = None

    def reset(self) -> None:
        self.speech_ms = self.silence_ms = 0.0
        self.line = None


async def _send_result(ws: ServerConnection, u: _Utterance, text: str, *, partial: bool) -> None:
    items = [
        {
            "Type": "pronunciation",
            "Content": word,
            "StartTime": u.start_ms / 1000,
            "EndTime": u.end_ms / 1000,
            **({} if partial else {"Confidence": 0.9}),
        }
        for word in text.split()
    ]
    payload = {
        "Transcript": {
            "Results": [
                {
                    "ResultId": u.result_id,
                    "StartTime": round(u.start_ms / 1000, 3),
                    "EndTime": round(u.end_ms / 1000, 3),
                    "IsPartial": partial,
                    "Alternatives": [{"Transcript": text, "Items": items}],
                }
            ]
        }
    }
    await ws.send(encode_message(_TRANSCRIPT_HEADERS, json.dumps(payload).encode()))


_TRANSCRIPT_HEADERS = {
    ":message-type": "event",
    ":event-type": "TranscriptEvent",
    ":content-type": "application/json",
}


async def _send_exception(ws: ServerConnection, code: str, message: str) -> None:
    headers = {
        ":message-type": "exception",
        ":exception-type": code,
        ":content-type": "application/json",
    }
    await ws.send(encode_message(headers, json.dumps({"Message": message}).encode()))


async def _drop(ws: ServerConnection) -> None:
    """Cut the TCP connection without a closing handshake (a network failure)."""
    transport = ws.transport
    transport.abort()


def _ws_error(connection: ServerConnection, status: int, code: str, message: str) -> WsResponse:
    response = connection.respond(HTTPStatus(status), json.dumps({"Message": message}) + "\n")
    headers = Headers(response.headers)
    headers["x-amzn-ErrorType"] = code
    headers["Content-Type"] = "application/json"
    return WsResponse(response.status_code, response.reason_phrase, headers, response.body)


# --- driving stages in real time -----------------------------------------------------------------


class LiveRun:
    """A pipeline of stages on the real clock, for stages whose work is network I/O: frames go
    in one by one, and ``until`` waits (really) for what the fakes answer. Provider errors are
    collected instead of being spoken."""

    def __init__(self, stages: list[Any], info: Any = None) -> None:
        from voicebridge.call.context import CallContext, CallInfo

        self.info = info or CallInfo(call_id="live-call", stream_id="live-stream")
        self.ctx = CallContext(self.info)
        self.frames: list[Any] = []
        self.provider_errors: list[Any] = []
        self.errors: list[BaseException] = []
        self.stages = stages
        self.pipeline: Any = None

    async def __aenter__(self) -> LiveRun:
        from voicebridge.runtime.pipeline import Pipeline
        from voicebridge.testing.harness import call_started

        async def sink(frame: Any) -> None:
            self.frames.append(frame)

        self.pipeline = Pipeline(
            self.stages,
            self.ctx,
            sink,
            on_error=lambda stage, exc: self.errors.append(exc),
            on_provider_error=lambda stage, exc: self.provider_errors.append(exc),
        )
        await self.pipeline.start()
        await self.pipeline.push(call_started(self.info))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pipeline.stop()

    def of(self, kind: type) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]

    async def push(self, frame: Any) -> None:
        await self.pipeline.push(frame)

    async def audio(self, pcm: np.ndarray, *, start_ms: float = 0.0, pace_s: float = 0.0) -> float:
        """Push ``pcm`` as 20 ms AudioIn frames; returns the stream time after the last one."""
        from voicebridge.frames import AudioIn

        rate = self.info.sample_rate
        step = rate // 50
        t = start_ms
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            if len(chunk) < step:
                chunk = np.pad(chunk, (0, step - len(chunk)))
            await self.pipeline.push(AudioIn(chunk.astype(np.int16), t))
            t += 20.0
            await asyncio.sleep(pace_s)
        return t

    async def settled(self) -> None:
        """Wait until the stages have handled every frame pushed so far: a marker pushed after
        them comes out only once they are done (so "nothing came of it" can be asserted). The
        marker is a keypad digit: for stages that pass one on untouched, as STT stages do."""
        from voicebridge.frames import Dtmf

        marker = Dtmf("#")
        await self.pipeline.push(marker)
        await self.until(lambda: any(f is marker for f in self.frames))

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.005)

    async def end(self, timeout: float = 5.0) -> None:
        """Push CallEnded and let every frame flow out."""
        from voicebridge.frames import CallEnded

        await self.pipeline.push(CallEnded("test over"))
        await self.pipeline.drain(timeout)
