"""Faults of the AWS and Google stages, injected at their wire fakes, through the shared guard.

The first-byte deadline runs on the call's virtual clock even though the AWS request waits in a
worker thread; breakers are shared by every call (stage instance) that uses the same endpoint.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.clock import VirtualClock
from voicebridge.frames import AgentText, Frame
from voicebridge.runtime import resilience
from voicebridge.runtime.providers import ProviderError
from voicebridge.stages.tts.google_tts import GoogleTts
from voicebridge.stages.tts.polly import Polly

PROVIDERS = Path(__file__).resolve().parents[1] / "providers"
sys.path.insert(0, str(PROVIDERS))
import aws_fakes as aws  # noqa: E402
from aws_fakes import aws_env  # noqa: E402, F401  (the fixture, for this module's tests)
from google_fakes import TTS, Driven, FakeGoogle, until  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Any:
    resilience.breakers.reset()
    yield
    resilience.breakers.reset()


async def bound(stage: Polly, clock: VirtualClock | None = None) -> list[Frame]:
    out: list[Frame] = []

    async def emit(frame: Frame) -> None:
        out.append(frame)

    stage.bind(CallContext(CallInfo(call_id="c-1", sample_rate=8000), clock=clock), emit)
    await stage.start()
    return out


@pytest.mark.usefixtures("aws_env")
async def test_a_stalled_polly_request_is_abandoned_on_call_time() -> None:
    async with aws.FakeAwsHttp() as fake:
        fake.slow_next(2.0)  # real seconds; read_timeout_s is 10
        clock = VirtualClock()
        stage = Polly(endpoint_url=fake.url, resilience={"retries": 0, "first_byte_timeout_s": 1.0})
        await bound(stage, clock)
        task = asyncio.ensure_future(stage.process(AgentText("Are you there?", turn=1)))
        await until(lambda: bool(fake.requests))
        await clock.advance(0.9)
        assert not task.done()
        await clock.advance(0.2)
        with pytest.raises(ProviderError) as caught:
            await task
        assert caught.value.kind == "timeout"
        assert "first_byte_timeout_s" in caught.value.provider_message


@pytest.mark.usefixtures("aws_env")
async def test_polly_down_opens_the_breaker_for_every_call() -> None:
    async with aws.FakeAwsHttp() as fake:
        fake.fail_next("ServiceUnavailable", 503, n=10)
        params: dict[str, Any] = {"max_attempts": 1, "resilience": {"breaker": {"failures": 2}}}
        first_call = Polly(endpoint_url=fake.url, **params)
        await bound(first_call)
        for turn in (1, 2):
            with pytest.raises(ProviderError) as caught:
                await first_call.process(AgentText("Hello.", turn=turn))
            assert caught.value.kind == "unavailable" and not caught.value.circuit_open
        other_call = Polly(endpoint_url=fake.url, **params)
        await bound(other_call)
        with pytest.raises(ProviderError) as refused:
            await other_call.process(AgentText("Hello.", turn=1))
        assert refused.value.circuit_open
        assert len(fake.requests) == 2  # refused without a request


@pytest.mark.usefixtures("aws_env")
async def test_polly_input_errors_never_open_the_breaker() -> None:
    async with aws.FakeAwsHttp() as fake:
        fake.fail_next("TextLengthExceededException", 400, n=3)
        stage = Polly(endpoint_url=fake.url, resilience={"breaker": {"failures": 1}})
        await bound(stage)
        for turn in (1, 2, 3):
            with pytest.raises(ProviderError) as caught:
                await stage.process(AgentText("Far too long.", turn=turn))
            assert caught.value.kind == "invalid"
        assert len(fake.requests) == 3
        await stage.process(AgentText("Short.", turn=4))
        assert len(fake.requests) == 4


@pytest.fixture
async def google() -> AsyncIterator[FakeGoogle]:
    async with FakeGoogle() as server:
        yield server


async def test_google_tts_down_opens_the_breaker(google: FakeGoogle) -> None:
    google.fail(TTS, grpc.StatusCode.UNAVAILABLE, "backend down", times=10)
    info = CallInfo(call_id="c-1", encoding="audio/x-mulaw", sample_rate=8000)

    def speaker() -> GoogleTts:
        return GoogleTts(
            endpoint=google.endpoint,
            insecure=True,
            retries=0,
            resilience={"breaker": {"failures": 2, "cooldown_s": 60}},
        )

    async with Driven([speaker()], info) as run:
        await run.push(AgentText("One.", turn=1), AgentText("Two.", turn=2))
        await run.drain()
    assert [e.circuit_open for e in run.provider_errors] == [False, False]
    async with Driven([speaker()], info) as other:
        await other.push(AgentText("Three.", turn=1))
        await other.drain()
    (refused,) = other.provider_errors
    assert refused.circuit_open and refused.kind == "unavailable"
    assert len(google.requests[TTS]) == 2
