"""The ``polly`` stage: the agent's reply spoken by Amazon Polly (boto3 ``synthesize_speech``).

Polly renders raw 16-bit little-endian mono PCM at 8000 or 16000 Hz, the two rates Plivo streams
use, so audio goes out exactly as Polly made it: no resampling, no codec. The speaking loop (one
request and one ``AgentAudio`` per sentence) is :class:`~voicebridge.stages.tts.speaker.Speaker`'s.
A piece that is SSML (it starts with ``<speak>``) is sent whole as SSML; the text recorded as
heard is the SSML with its tags removed.

The blocking boto3 call runs in the process-wide ``polly`` worker pool. It is idempotent, so
throttling, 5xx and timeouts are retried a bounded number of times. A barge-in cancels
``process``: the sentence in flight is discarded and the rest of the reply is never requested.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import numpy as np
from botocore.exceptions import ClientError
from pydantic import Field, field_validator

from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.resilience import ResilienceParams, stage_guard
from voicebridge.runtime.stage import StageParams
from voicebridge.stages.aws_common import (
    ClientSettings,
    empty_is_default,
    get_client,
    run_guarded,
    ssml_to_text,
)
from voicebridge.stages.tts.speaker import Speaker, Speech
from voicebridge.text import split_sentences

POOL_NAME = "polly"
PROVIDER = "Amazon Polly"
NATIVE_RATES = (8000, 16000)  # Polly's PCM rates


class PollyParams(StageParams):
    voice_id: str = Field("Joanna", min_length=1, description="Polly voice, e.g. Joanna, Matthew")
    engine: Literal["neural", "standard", "generative"] = Field(
        "neural", description="the voice must support it (most English voices have neural)"
    )
    language_code: str | None = Field(
        None, description="for bilingual voices only, e.g. en-IN for Aditi; else the voice's own"
    )
    lexicon_names: list[str] = Field(
        default_factory=list, max_length=5, description="pronunciation lexicons in the region"
    )
    region: str | None = Field(None, description="default: AWS_REGION / AWS_DEFAULT_REGION")
    endpoint_url: str | None = Field(None, description="override the Polly endpoint (tests, VPC)")
    _empty_endpoint = field_validator("endpoint_url", mode="before")(empty_is_default)
    connect_timeout_s: float = Field(3.0, gt=0, le=60, description="per request")
    read_timeout_s: float = Field(10.0, gt=0, le=120, description="per request")
    max_attempts: int = Field(3, ge=1, le=6, description="tries per sentence (throttling, 5xx)")
    retry_backoff_s: float = Field(0.2, ge=0, le=5, description="first retry delay, then doubled")
    workers: int = Field(16, ge=1, le=256, description="requests in flight per process")
    word_timings: bool = Field(
        False,
        description="also ask for word speech marks (a second request, billed like the audio) so "
        "the words an interrupted caller heard are known exactly",
    )
    resilience: ResilienceParams = Field(
        default_factory=lambda: ResilienceParams(),
        description="first-byte deadline, circuit breaker; retries override max_attempts",
    )


def is_ssml(text: str) -> bool:
    return text.lstrip().startswith("<speak")


def _speech_marks(settings: ClientSettings, request: dict[str, Any]) -> list[dict[str, Any]]:
    """One blocking request for the word speech marks of the same text (JSON lines)."""
    marks_request = {**request, "OutputFormat": "json", "SpeechMarkTypes": ["word"]}
    marks_request.pop("SampleRate", None)
    raw = _synthesize(settings, marks_request)
    marks = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.strip():
            mark = json.loads(line)
            if isinstance(mark, dict) and mark.get("type") == "word":
                marks.append(mark)
    return marks


def word_ends_from_marks(
    text: str, marks: list[dict[str, Any]], duration_ms: float
) -> tuple[float, ...] | None:
    """Each whitespace word's end from Polly's word marks, which give only where words start:
    a word ends by the time the next one starts (late by the pause between them, never
    early), the last one with the audio. A word with no mark of its own (a dash, "&") ends with
    the word before it."""
    spans = []
    position = 0
    encoded = text.encode()
    for word in text.split():
        start = encoded.index(word.encode(), position)
        spans.append((start, start + len(word.encode())))
        position = spans[-1][1]
    starts: list[float | None] = [None] * len(spans)
    for mark in marks:
        try:
            begin, time_ms = int(mark["start"]), float(mark["time"])
        except (KeyError, TypeError, ValueError):
            return None
        for k, (lo, hi) in enumerate(spans):
            if lo <= begin < hi and starts[k] is None:
                starts[k] = time_ms
                break
    if not spans or all(s is None for s in starts):
        return None
    ends: list[float] = []
    for k in range(len(spans)):
        following = [s for s in starts[k + 1 :] if s is not None]
        if starts[k] is None and ends:
            ends.append(ends[-1])
        else:
            ends.append(min(following[0], duration_ms) if following else duration_ms)
    return tuple(ends)


def _synthesize(settings: ClientSettings, request: dict[str, Any]) -> bytes:
    """One blocking request: the whole PCM body (runs in the worker pool)."""
    response = get_client(settings).synthesize_speech(**request)
    stream = response["AudioStream"]
    try:
        data: bytes = stream.read()
    finally:
        stream.close()
    return data


class Polly(Speaker):
    type_name = "polly"
    description = "Speaks the agent's reply with Amazon Polly (PCM at the call's own rate)."
    Params = PollyParams

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._settings: ClientSettings | None = None
        p: PollyParams = self.params
        self.guard = stage_guard(
            self.name,
            PROVIDER,
            f"{p.region or 'default-region'} {p.endpoint_url or ''}",
            p.resilience,
            retries=p.max_attempts - 1,
            backoff_s=p.retry_backoff_s,
            retry_if=lambda error: _retryable(error.__cause__ or error, error),
        )

    @staticmethod
    def _client_settings(p: PollyParams) -> ClientSettings:
        return ClientSettings.for_stage("polly", p)

    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """Build the client at start-up (loading Polly's model takes tens of ms)."""
        assert isinstance(params, PollyParams)
        await asyncio.to_thread(get_client, cls._client_settings(params))

    async def start(self) -> None:
        self._settings = self._client_settings(self.params)

    def pieces(self, text: str) -> list[str]:
        # SSML is one document: never split it.
        return [text.strip()] if is_ssml(text) else split_sentences(text)

    def heard(self, said: str) -> str:
        return ssml_to_text(said) if is_ssml(said) else said

    def _request(self, text: str, rate: int) -> dict[str, Any]:
        p: PollyParams = self.params
        request: dict[str, Any] = {
            "Text": text,
            "TextType": "ssml" if is_ssml(text) else "text",
            "OutputFormat": "pcm",
            "SampleRate": str(rate),
            "VoiceId": p.voice_id,
            "Engine": p.engine,
        }
        if p.language_code:
            request["LanguageCode"] = p.language_code
        if p.lexicon_names:
            request["LexiconNames"] = list(p.lexicon_names)
        return request

    async def synthesize(self, text: str) -> Speech:
        """One sentence (or SSML document) at a rate Polly makes; its word marks beside it."""
        p: PollyParams = self.params
        rate = self.ctx.info.sample_rate
        polly_rate = rate if rate in NATIVE_RATES else 16000
        settings = self._settings or self._client_settings(p)
        request = self._request(text, polly_rate)
        audio = self._call(_synthesize, settings, request)
        if not p.word_timings or is_ssml(text):
            data, marks = await audio, None
        else:
            data, marks = await asyncio.gather(audio, self._marks(settings, request))
        if len(data) % 2:
            data = data[:-1]
        pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
        duration_ms = 1000.0 * pcm.size / polly_rate
        ends = word_ends_from_marks(text, marks, duration_ms) if marks else None
        return Speech(pcm, polly_rate, ends)

    async def _call(self, function: Any, settings: ClientSettings, request: Any) -> Any:
        p: PollyParams = self.params
        return await run_guarded(
            POOL_NAME,
            function,
            settings,
            request,
            guard=self.guard,
            stage=self.name,
            provider=PROVIDER,
            workers=p.workers,
            clock=self.ctx.clock,
            log=self.log,
        )

    async def _marks(
        self, settings: ClientSettings, request: dict[str, Any]
    ) -> list[dict[str, Any]] | None:
        """Word marks, or None: without them the audio still plays (heard words estimated)."""
        try:
            marks: list[dict[str, Any]] = await self._call(_speech_marks, settings, request)
        except (ProviderError, ValueError) as exc:
            self.log.warning("polly_speech_marks_failed", error=str(exc)[:200])
            return None
        return marks


def _retryable(exc: BaseException, error: ProviderError) -> bool:
    """synthesize_speech has no side effect: retry whatever a retry can fix."""
    if isinstance(exc, ClientError) and error.kind == "quota":
        return True
    return error.kind in ("unavailable", "timeout")
