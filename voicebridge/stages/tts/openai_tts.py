"""The ``openai_tts`` stage: the agent's reply spoken by OpenAI's speech API (or a compatible one).

Each sentence is one streamed request with ``response_format="pcm"``: raw 16-bit little-endian
mono at 24 kHz, so nothing has to be decoded. Chunks are converted to the stream's rate by a
streaming resampler as they arrive (no second pass at the end), and each sentence becomes one
``AgentAudio`` (the speaking loop is :class:`~voicebridge.stages.tts.speaker.Speaker`'s).

The first audio therefore leaves once the first sentence is synthesised, not at the first byte:
sentence pieces keep the record of what the caller heard in words (see the speaker). OpenAI
streams several times faster than real time, so that is typically a few hundred ms after the
first byte, and the dialogue already sends sentence-sized pieces, so the first sentence starts
while the LLM is still writing the rest.

Requests go through the shared :class:`~voicebridge.runtime.resilience.ProviderGuard`
(``resilience:`` params). A sentence's audio is emitted only once it is whole, so a failed or
cut request is safe to retry: the caller never hears part of a sentence twice.

A barge-in cancels ``process``: the HTTP response is closed (``async with``) and the rest of the
piece is never requested.
"""

from __future__ import annotations

import time
from typing import Any

import httpx2
import numpy as np
import openai
from pydantic import Field

from voicebridge.audio.resample import StreamResampler
from voicebridge.frames import PCM
from voicebridge.observe.trace_context import trace_headers
from voicebridge.runtime.resilience import Attempt
from voicebridge.runtime.stage import StageError, StageParams
from voicebridge.stages.openai_client import (
    ClientLease,
    OpenAIClientParams,
    api_key,
    openai_guard,
    provider_error,
    provider_name,
)
from voicebridge.stages.tts.speaker import Speaker, Speech

OPENAI_PCM_RATE = 24000  # response_format="pcm": 24 kHz, 16-bit signed little-endian, mono


class OpenAITtsParams(OpenAIClientParams):
    model: str = Field("gpt-4o-mini-tts", description="speech model")
    voice: str | dict[str, str] = Field(
        "alloy", description="a built-in voice name, or {id: voice_...} for a custom voice"
    )
    instructions: str | None = Field(
        None, description="how to speak (tone, pace, accent); not for tts-1/tts-1-hd"
    )
    speed: float | None = Field(None, ge=0.25, le=4.0, description="None = normal speed")
    pcm_rate: int = Field(
        OPENAI_PCM_RATE,
        ge=8000,
        le=48000,
        description="rate of the 'pcm' audio the endpoint returns (OpenAI: 24000)",
    )


class OpenAITts(Speaker):
    type_name = "openai_tts"
    description = "Speaks the agent's reply with OpenAI text-to-speech, sentence by sentence."
    Params = OpenAITtsParams

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.provider = provider_name(self.params.base_url)
        self._lease = ClientLease(self.params)
        self._client: openai.AsyncOpenAI | None = None
        self.guard = openai_guard(self.name, self.provider, self.params, self.params.model)

    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """At service start: refuse to run without a key rather than fail every call."""
        assert isinstance(params, OpenAITtsParams)
        api_key(cls.type_name, params)

    async def start(self) -> None:
        self._client = await self._lease.acquire(self.name)

    async def stop(self) -> None:
        self._client = None
        await self._lease.release()

    async def synthesize(self, text: str) -> Speech:
        """One sentence at the stream's rate, resampled chunk by chunk as it streams in."""
        rate = self.ctx.info.sample_rate
        turn = self.active_turn

        async def attempt(try_: Attempt) -> PCM:
            return await self._request(text, rate, turn, try_)

        pcm = await self.guard.call(attempt, clock=self.ctx.clock, log=self.log)
        return Speech(pcm, rate)

    async def _request(self, text: str, rate: int, turn: int | None, attempt: Attempt) -> PCM:
        p: OpenAITtsParams = self.params
        client = self._client
        if client is None:
            raise StageError(f"{self.name}: not started")
        request: dict[str, Any] = {
            "model": p.model,
            "voice": p.voice,
            "input": text,
            "response_format": "pcm",
        }
        if p.instructions:
            request["instructions"] = p.instructions
        if p.speed is not None:
            request["speed"] = p.speed
        headers = trace_headers()  # the call's W3C trace context, when tracing is on
        if headers:
            request["extra_headers"] = headers
        resampler = StreamResampler(p.pcm_rate, rate)
        parts: list[PCM] = []
        carry = b""
        started = time.perf_counter()
        first_byte = True
        try:
            async with client.audio.speech.with_streaming_response.create(**request) as response:
                async for chunk in response.iter_bytes():
                    if not chunk:
                        continue
                    if first_byte:
                        first_byte = False
                        attempt.progress()
                        self.log.info(
                            "tts_first_byte",
                            ms=round(1000 * (time.perf_counter() - started)),
                            turn=turn,
                        )
                    data = carry + chunk
                    even = len(data) - len(data) % 2  # a sample may straddle two chunks
                    carry = data[even:]
                    if even:
                        samples = np.frombuffer(data[:even], dtype="<i2").astype(np.int16)
                        parts.append(resampler.process(samples))
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise provider_error(self.name, self.provider, exc) from exc
        parts.append(resampler.flush())
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)
