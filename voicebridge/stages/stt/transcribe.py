"""The ``transcribe`` stage: caller audio streamed to Amazon Transcribe over its WebSocket API.

Why the WebSocket API and not the ``amazon-transcribe`` SDK: the SDK speaks HTTP/2 through an
``awscrt`` build that conflicts with boto3's. The WebSocket API needs only a SigV4 presigned URL
(signed with botocore, service ``transcribe``, valid 300 s) and AWS event-stream framing
(:mod:`voicebridge.stages.stt.eventstream`):

* audio goes up as ``AudioEvent`` messages: raw 16-bit little-endian PCM at the call's own rate,
  in ``chunk_ms`` pieces (AWS suggests 50-200 ms); an empty ``AudioEvent`` ends the stream;
* results come back as ``TranscriptEvent`` JSON (``Transcript.Results[].IsPartial`` and
  ``Alternatives[0].Transcript``); errors as ``:message-type`` ``exception`` messages.

One stream per call, opened with the first caller audio (audio is held while it connects) and
fed every frame after that, so speech is never cut off at its start. A stream that drops, or that
AWS ends with a retryable exception (internal failure, service unavailable, the 4-hour limit), is
reopened, at most ``max_reconnects`` times in a row. A failure that a new stream cannot fix
(credentials, quota, a bad parameter) is raised as one ``ProviderError`` from ``process`` (the
session speaks its fallback line); the stage then rests until the caller next starts speaking,
and tries once more.

The stage sits after ``vad`` with ``forward_audio: true``; it passes every frame on.

At the VAD's pause (``SpeechPaused``) the stage passes the caller's words so far back to the VAD's
end-of-turn decision (``text_cues``), as soon as a result reaches the pause by its own timing
(its last word's ``EndTime``): a partial that lags the audio and misses the last word is not
used (:mod:`voicebridge.stages.stt.pause_words`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from statistics import fmean
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import BotoCoreError
from pydantic import Field, field_validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from voicebridge.clock import wait_for
from voicebridge.frames import (
    AudioIn,
    CallEnded,
    Frame,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    Transcript,
)
from voicebridge.runtime.providers import ProviderError, kind_from_http_status
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.stages.aws_common import (
    USER_AGENT,
    empty_is_default,
    frozen_credentials,
    kind_from_aws_code,
    provider_error,
    resolve_region,
)
from voicebridge.stages.stt.early_words import PauseWordsFeed, early_words_field, slack_field
from voicebridge.stages.stt.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    Message,
    encode_message,
)
from voicebridge.stages.stt.finals import AfterSpeech, FinalWait, Piece, UtteranceFinals
from voicebridge.stages.stt.pause_words import Heard
from voicebridge.stages.stt.sent_audio import SentAudio

PROVIDER = "Amazon Transcribe"
SIGNING_SERVICE = "transcribe"
URL_EXPIRES_S = 300  # the most Transcribe accepts
PATH = "/stream-transcription-websocket"
_MAX_MESSAGE_BYTES = 1 << 20
_AUDIO_HEADERS = {
    ":message-type": "event",
    ":event-type": "AudioEvent",
    ":content-type": "application/octet-stream",
}
_RETRY_KINDS = ("unavailable", "timeout")
_END = object()


class TranscribeParams(StageParams):
    language: str = Field(
        "en-US", pattern=r"^[a-z]{2,3}-[A-Z]{2}$", description="language code, e.g. en-US, en-GB"
    )
    region: str | None = Field(None, description="default: AWS_REGION / AWS_DEFAULT_REGION")
    vocabulary_name: str | None = Field(
        None, min_length=1, max_length=200, description="a custom vocabulary in that region"
    )
    partial_results: bool = Field(
        True, description="emit interim transcripts (with partial-results stabilization)"
    )
    partial_stability: Literal["low", "medium", "high"] = Field(
        "high", description="stabilization level: high = fewer revisions, a little later"
    )
    endpoint: str | None = Field(
        None,
        pattern=r"^wss?://",
        description="override wss://transcribestreaming.<region>.amazonaws.com:8443 (tests)",
    )
    _empty_endpoint = field_validator("endpoint", mode="before")(empty_is_default)
    chunk_ms: int = Field(100, ge=20, le=200, description="audio per AudioEvent")
    open_timeout_s: float = Field(5.0, gt=0, le=60, description="WebSocket connect + handshake")
    max_reconnects: int = Field(3, ge=0, le=10, description="new streams in a row after a drop")
    reconnect_backoff_s: float = Field(0.25, ge=0, le=10, description="first wait, then doubled")
    max_buffer_s: float = Field(10.0, gt=0, le=60, description="audio held while (re)connecting")
    final_wait_s: float = Field(2.0, ge=0, le=30, description="wait for last results at call end")
    join_finals: bool = Field(
        True,
        description="hold final results until the VAD ends the utterance, then send them as "
        "one transcript (a reply never starts while the caller is still talking)",
    )
    final_timeout_ms: int = Field(
        1500, ge=0, le=10000, description="after the VAD's end, wait this long for the final"
    )
    early_words: bool = early_words_field()
    early_words_slack_ms: int = slack_field()


class _Retry(Exception):
    """The stream broke in a way a new stream may fix."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(str(error))
        self.error = error


def presign_url(
    base_url: str,
    query: dict[str, str],
    credentials: ReadOnlyCredentials,
    region: str,
    expires: int = URL_EXPIRES_S,
) -> str:
    """A SigV4 query-signed ``ws(s)://`` URL (service ``transcribe``, signed header ``host``)."""
    parts = urlsplit(base_url)
    http_scheme = {"wss": "https", "ws": "http"}.get(parts.scheme)
    if http_scheme is None:
        raise ValueError(f"not a WebSocket URL: {base_url!r}")
    path = parts.path if parts.path not in ("", "/") else PATH
    url = urlunsplit((http_scheme, parts.netloc, path, urlencode(query, quote_via=quote), ""))
    request = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(credentials, SIGNING_SERVICE, region, expires=expires).add_auth(request)
    signed = urlsplit(request.url)
    return urlunsplit((parts.scheme, signed.netloc, signed.path, signed.query, ""))


def audio_event(pcm: bytes) -> bytes:
    """One ``AudioEvent`` message; an empty one ends the stream."""
    return encode_message(_AUDIO_HEADERS, pcm)


class Transcribe(Stage):
    type_name = "transcribe"
    role = "stt"
    inline = (AudioIn,)  # caller audio is only buffered: taken directly while idle
    consumes = (AudioIn, SpeechEnded)  # streams the audio; finals wait for the end of speech
    description = "Streams caller audio to Amazon Transcribe (WebSocket API); interim + final."
    Params = TranscribeParams

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: TranscribeParams = self.params
        self._region = ""
        self._base_url = ""
        self._rate = 0
        self._chunk_bytes = 0
        self._buffer = bytearray()
        self._buffer_ms = 0.0
        self._queue: asyncio.Queue[Any] = asyncio.Queue(
            max(2, round(p.max_buffer_s * 1000 / p.chunk_ms))
        )
        self._runner: asyncio.Task[None] | None = None
        self._error: ProviderError | None = None
        self._down = False
        self._sent = SentAudio()  # the current stream's audio: result times -> stream ms
        self._stream_ok = False
        self._last_partial: tuple[str, str] | None = None
        self._dropped_chunks = 0
        self._streams = 0
        # join_finals: what the caller said in the current VAD utterance, not yet sent.
        self._finals = UtteranceFinals(hold=p.join_finals, confidence=fmean)
        self._final_wait = FinalWait(self, self._final_timed_out)
        self._open_results: dict[str, tuple[str, float]] = {}  # result id -> latest partial, at_ms
        self._promoted: set[str] = set()  # result ids sent from their partial text
        self.pause_words = PauseWordsFeed(p.early_words, p.early_words_slack_ms)

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        p: TranscribeParams = self.params
        self._region = resolve_region(p.region)
        self._base_url = p.endpoint or (
            f"wss://transcribestreaming.{self._region}.amazonaws.com:8443{PATH}"
        )
        self._rate = self.ctx.info.sample_rate
        self._chunk_bytes = 2 * self._rate * p.chunk_ms // 1000
        self.pause_words.start(self.ctx, self.log)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AudioIn):
            await self.emit(frame)
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if not self._down:
                self._add_audio(frame)
            return
        if isinstance(frame, SpeechPaused):
            self.pause_words.paused(frame.at_ms)
        elif isinstance(frame, SpeechStarted):
            self.pause_words.speech_started(frame.at_ms)
            self._finals.speech_started()
            self._final_wait.cancel()  # the caller goes on: what is held joins this utterance
            if self._down:
                self._down = False  # the caller speaks again: give the service another chance
                self.log.info("stt_retry_after_failure")
        elif isinstance(frame, SpeechEnded):
            self.pause_words.speech_ended()
            await self.emit(frame)
            await self._utterance_ended()
            return
        elif isinstance(frame, CallEnded):
            await self._finish()
            await self._flush(promote=True)
        await self.emit(frame)

    # --- audio in -----------------------------------------------------------------------------
    def _add_audio(self, frame: AudioIn) -> None:
        if not self._buffer:
            self._buffer_ms = frame.timestamp_ms
        self._buffer += frame.pcm.astype("<i2", copy=False).tobytes()
        if len(self._buffer) >= self._chunk_bytes:
            self._enqueue((bytes(self._buffer), self._buffer_ms))
            self._buffer.clear()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name=f"{self.name}-stream"
            )

    def _enqueue(self, item: Any) -> None:
        """Queue a chunk; when the service lags past ``max_buffer_s`` the oldest audio goes."""
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self._dropped_chunks += 1
            if self._dropped_chunks in (1, 10, 100) or self._dropped_chunks % 1000 == 0:
                self.log.warning("stt_audio_dropped", chunks=self._dropped_chunks)
        self._queue.put_nowait(item)

    async def _finish(self) -> None:
        """Call end: send what is buffered and the end-of-stream event, let the last results
        arrive (bounded by ``final_wait_s``), then close."""
        runner = self._runner
        if runner is None or runner.done():
            return
        if self._buffer:
            self._enqueue((bytes(self._buffer), self._buffer_ms))
            self._buffer.clear()
        self._enqueue(_END)
        try:
            await wait_for(self.ctx.clock, asyncio.shield(runner), self.params.final_wait_s + 1.0)
        except TimeoutError:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    # --- the stream ---------------------------------------------------------------------------
    async def _run(self) -> None:
        """Keep one stream open for the call, reopening it after drops (bounded)."""
        p: TranscribeParams = self.params
        failures = 0
        while True:
            self._stream_ok = False
            try:
                await self._stream()
                return
            except _Retry as exc:
                failures = 1 if self._stream_ok else failures + 1
                if failures > p.max_reconnects:
                    self._fail(exc.error)
                    return
                delay = p.reconnect_backoff_s * 2 ** (failures - 1)
                self.log.warning(
                    "stt_reconnect",
                    attempt=failures,
                    kind=exc.error.kind,
                    error=exc.error.provider_message[:200],
                    delay_ms=round(delay * 1000),
                )
                await self.ctx.clock.sleep(delay)
            except ProviderError as exc:
                self._fail(exc)
                return
            except Exception as exc:  # a bug or an unforeseen library error: fail the stream only
                self.log.exception("stt_stream_crashed")
                self._fail(ProviderError(self.name, PROVIDER, "other", repr(exc)))
                return

    def _fail(self, error: ProviderError) -> None:
        """Give up on the stream: the error surfaces from the next ``process`` call."""
        self.log.error("stt_failed", kind=error.kind, error=error.provider_message[:300])
        self._error = error
        self._down = True
        self._buffer.clear()
        while not self._queue.empty():
            self._queue.get_nowait()

    def _query(self) -> dict[str, str]:
        p: TranscribeParams = self.params
        query = {
            "language-code": p.language,
            "media-encoding": "pcm",
            "sample-rate": str(self._rate),
        }
        if p.vocabulary_name:
            query["vocabulary-name"] = p.vocabulary_name
        if p.partial_results:
            query["enable-partial-results-stabilization"] = "true"
            query["partial-results-stability"] = p.partial_stability
        return query

    async def _open(self) -> ClientConnection:
        p: TranscribeParams = self.params
        try:
            credentials = await asyncio.to_thread(frozen_credentials)
        except BotoCoreError as exc:
            raise provider_error(self.name, PROVIDER, exc) from exc
        url = presign_url(self._base_url, self._query(), credentials, self._region)
        try:
            return await connect(
                url,
                open_timeout=p.open_timeout_s,
                compression=None,
                max_size=_MAX_MESSAGE_BYTES,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=1.0,
                user_agent_header=USER_AGENT,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = bytes(exc.response.body or b"").decode("utf-8", "replace").strip()
            error = ProviderError(
                self.name,
                PROVIDER,
                kind_from_http_status(status),
                _error_text(body) or f"WebSocket handshake refused with HTTP {status}",
                status=status,
            )
            if error.kind in _RETRY_KINDS:
                raise _Retry(error) from exc
            raise error from exc
        except TimeoutError as exc:
            error = ProviderError(self.name, PROVIDER, "timeout", "WebSocket connect timed out")
            raise _Retry(error) from exc
        except (OSError, InvalidHandshake) as exc:
            error = ProviderError(self.name, PROVIDER, "unavailable", f"cannot connect: {exc}")
            raise _Retry(error) from exc

    async def _stream(self) -> None:
        """One WebSocket stream: send queued audio until the end marker; results come in on a
        receiver task. Returns after a clean end; raises _Retry / ProviderError otherwise."""
        started = time.perf_counter()
        ws = await self._open()
        self._streams += 1
        self._sent = SentAudio()
        self._last_partial = None
        self.log.info(
            "stt_stream_open",
            stream=self._streams,
            ms=round(1000 * (time.perf_counter() - started)),
            rate=self._rate,
        )
        receiver = asyncio.get_running_loop().create_task(self._receive(ws))
        getter: asyncio.Future[Any] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait(
                    {getter, receiver}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    receiver.result()  # raises the stream's error
                    raise _Retry(self._error_closed("the service closed the stream"))
                item = getter.result()
                if item is _END:
                    await self._end_stream(ws, receiver)
                    return
                pcm, timestamp_ms = item
                self._sent.sent(timestamp_ms, 1000.0 * len(pcm) / 2 / self._rate)
                try:
                    await ws.send(audio_event(pcm))
                except ConnectionClosed as exc:
                    with contextlib.suppress(TimeoutError):
                        await wait_for(self.ctx.clock, asyncio.wait({receiver}), 0.5)
                    if receiver.done():
                        receiver.result()
                    raise _Retry(self._error_closed(f"connection lost: {exc}")) from exc
        finally:
            if getter is not None and not getter.done():
                getter.cancel()  # a waiting get must not swallow the next stream's audio
            if not receiver.done():
                receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
            with contextlib.suppress(Exception):
                await ws.close()

    async def _end_stream(self, ws: ClientConnection, receiver: asyncio.Task[None]) -> None:
        """Send the empty AudioEvent and wait (bounded) for the service's last results."""
        try:
            await ws.send(audio_event(b""))
        except ConnectionClosed:
            return
        with contextlib.suppress(TimeoutError):
            await wait_for(self.ctx.clock, asyncio.wait({receiver}), self.params.final_wait_s)
        if receiver.done() and receiver.exception() is not None:
            exc = receiver.exception()
            self.log.warning("stt_end_of_stream_error", error=str(exc)[:200])

    def _error_closed(self, message: str) -> ProviderError:
        return ProviderError(self.name, PROVIDER, "unavailable", message)

    async def _receive(self, ws: ClientConnection) -> None:
        decoder = EventStreamDecoder()
        try:
            async for data in ws:
                if isinstance(data, str):
                    continue  # the API sends binary messages only
                for message in decoder.feed(data):
                    await self._on_message(message)
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == 1000:
                return
            raise _Retry(self._error_closed(f"connection lost: {exc}")) from exc
        except EventStreamError as exc:
            raise _Retry(self._error_closed(f"malformed event-stream message: {exc}")) from exc

    async def _on_message(self, message: Message) -> None:
        kind = message.header_str(":message-type")
        if kind in ("exception", "error"):
            code = message.header_str(":exception-type") or message.header_str(":error-code")
            text = _error_text(message.payload.decode("utf-8", "replace")) or (
                message.header_str(":error-message") or ""
            )
            error = ProviderError(
                self.name,
                PROVIDER,
                kind_from_aws_code(code),
                f"{code}: {text}" if code else text or "unknown error",
                status=code,
            )
            if error.kind in _RETRY_KINDS:
                raise _Retry(error)
            raise error
        if kind == "event" and message.header_str(":event-type") == "TranscriptEvent":
            try:
                payload = json.loads(message.payload)
            except ValueError:
                self.log.warning("stt_bad_event", size=len(message.payload))
                return
            await self._on_transcript(payload)

    async def _on_transcript(self, payload: dict[str, Any]) -> None:
        self._stream_ok = True
        results = ((payload or {}).get("Transcript") or {}).get("Results") or []
        for result in results:
            alternatives = result.get("Alternatives") or []
            if not alternatives:
                continue
            best = alternatives[0]
            text = " ".join(str(best.get("Transcript") or "").split())
            partial = bool(result.get("IsPartial"))
            result_id = f"{self._streams}:{result.get('ResultId') or ''}"
            at_ms = self._sent.stream_ms(1000.0 * _seconds(result.get("EndTime")))
            words_end = _last_word_end(best.get("Items") or [])
            heard = Heard(
                result_id,
                text,
                not partial,
                at_ms,
                None if words_end is None else self._sent.stream_ms(1000.0 * words_end),
            )
            self.pause_words.result(heard)
            if partial:
                if not text or result_id in self._promoted:
                    continue
                self._open_results[result_id] = (text, at_ms)
                if not self.params.partial_results or self._last_partial == (result_id, text):
                    continue  # stabilization resends unchanged text; say it once
                self._last_partial = (result_id, text)
                await self.emit(Transcript(text, False, None, at_ms))
                continue
            self._open_results.pop(result_id, None)
            if result_id in self._promoted:
                self._promoted.discard(result_id)
                continue  # already sent from its last partial when the wait ran out
            if text:
                confidence = _confidence(best.get("Items") or [])
                self.log.info("stt_final", chars=len(text), at_ms=round(at_ms))
            else:
                confidence = None
            # Sent now unless the caller still speaks or another result is still open.
            owed = bool(self._open_results)
            await self._send(self._finals.final(text, confidence, at_ms, owed=owed))

    # --- one transcript per utterance (join_finals) ------------------------------------------
    async def _utterance_ended(self) -> None:
        """The VAD ended the utterance: send what is held, or wait (bounded) for the final."""
        after = self._finals.speech_ended(owed=bool(self._open_results))
        if after is AfterSpeech.RELEASE:
            await self._flush()
        elif after is AfterSpeech.WAIT:
            self._final_wait.start(self.params.final_timeout_ms / 1000.0)

    async def _final_timed_out(self) -> None:
        self.log.info("stt_final_timeout", open=len(self._open_results))
        await self._flush(promote=True)

    async def _flush(self, *, promote: bool = False) -> None:
        """Emit the held finals as one transcript; with ``promote``, results still open count
        with their latest partial text (their finals, if they ever come, are then dropped)."""
        unfinished: list[Piece] = []
        if promote and self._open_results:
            for result_id, (text, at_ms) in self._open_results.items():
                unfinished.append(Piece(text, None, at_ms))
                self._promoted.add(result_id)
            self._open_results.clear()
        await self._send(self._finals.release(unfinished))

    async def _send(self, transcript: Transcript | None) -> None:
        if transcript is not None:
            self._final_wait.arrived()
            await self.emit(transcript)


def _seconds(value: Any) -> float:
    """A time off the wire (seconds); anything that is not a finite number counts as 0."""
    try:
        seconds = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return seconds if math.isfinite(seconds) else 0.0


def _last_word_end(items: list[dict[str, Any]]) -> float | None:
    """Where the result's last word ends (seconds into the stream), if its items say."""
    ends = [
        _seconds(item.get("EndTime"))
        for item in items
        if isinstance(item, dict)
        and item.get("Type") == "pronunciation"
        and item.get("EndTime") is not None
    ]
    return max(ends) if ends else None


def _confidence(items: list[dict[str, Any]]) -> float | None:
    """Mean word confidence (Transcribe reports it per item on final results)."""
    values = [
        float(item["Confidence"])
        for item in items
        if item.get("Type") == "pronunciation" and item.get("Confidence") is not None
    ]
    return sum(values) / len(values) if values else None


def _error_text(body: str) -> str:
    """The ``Message`` of an AWS JSON error body, else the body itself (trimmed)."""
    if not body:
        return ""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:300]
    if isinstance(parsed, dict):
        for key in ("Message", "message"):
            if parsed.get(key):
                return str(parsed[key])
    return body[:300]
