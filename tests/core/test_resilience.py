"""Unit tests of the retry policy, the circuit breaker and the provider guard, on virtual time."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from voicebridge.call.options import ReplyOptions
from voicebridge.clock import VirtualClock
from voicebridge.config import ConfigError, load_pipeline_text
from voicebridge.runtime.providers import ErrorKind, ProviderError, retry_after_from_headers
from voicebridge.runtime.resilience import (
    Attempt,
    BreakerParams,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    ProviderGuard,
    ResilienceParams,
    RetryPolicy,
)


def err(kind: ErrorKind, retry_after_s: float | None = None) -> ProviderError:
    return ProviderError("llm", "fake", kind, "boom", retry_after_s=retry_after_s)


# --- the retry policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "retried"),
    [
        ("unavailable", True),
        ("timeout", True),
        ("quota", True),
        ("invalid", False),
        ("auth", False),
        ("other", False),
        ("cancelled", False),
    ],
)
def test_only_transient_kinds_are_retried(kind: ErrorKind, retried: bool) -> None:
    assert RetryPolicy(retries=2).should_retry(err(kind), 0) is retried


def test_retries_are_bounded_and_a_long_retry_after_is_not_waited_for() -> None:
    policy = RetryPolicy(retries=2, max_retry_after_s=3.0)
    assert policy.should_retry(err("unavailable"), 1)
    assert not policy.should_retry(err("unavailable"), 2)
    assert policy.should_retry(err("quota", retry_after_s=2.5), 0)
    assert not policy.should_retry(err("quota", retry_after_s=30), 0)


def test_backoff_doubles_is_capped_jittered_and_honours_retry_after() -> None:
    policy = RetryPolicy(backoff_s=0.2, backoff_max_s=1.0, rng=random.Random(7))
    delays = [policy.delay(n) for n in range(5)]
    for n, delay in enumerate(delays):
        base = min(1.0, 0.2 * 2**n)
        assert 0.75 * base <= delay <= 1.25 * base
    assert policy.delay(0, err("quota", retry_after_s=2.0)) == 2.0


def test_retry_after_headers() -> None:
    assert retry_after_from_headers({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_from_headers({"retry-after": "2"}) == 2.0
    assert retry_after_from_headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_from_headers({}) is None


# --- the breaker --------------------------------------------------------------------------------


def test_breaker_opens_after_the_threshold_and_probes_after_the_cooldown() -> None:
    breaker = CircuitBreaker("k", BreakerParams(failures=3, cooldown_s=10))
    for t in range(2):
        breaker.failure(err("unavailable"), t)
    assert breaker.state is BreakerState.CLOSED and breaker.allow(2)
    breaker.failure(err("timeout"), 2)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(11.9) and breaker.retry_in(5) == 7
    assert breaker.allow(12)  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow(12)  # one probe at a time
    breaker.failure(err("unavailable"), 12.5)  # the probe failed: open again, new cool-down
    assert breaker.state is BreakerState.OPEN and not breaker.allow(20)
    assert breaker.allow(22.5)
    breaker.success()
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0 and breaker.opened == 2


def test_a_calls_own_fault_does_not_count() -> None:
    breaker = CircuitBreaker("k", BreakerParams(failures=1))
    for kind in ("invalid", "cancelled", "other"):
        breaker.failure(err(kind), 0)  # type: ignore[arg-type]
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
    breaker.failure(err("auth"), 0)  # a bad key fails every call: it counts
    assert breaker.state is BreakerState.OPEN


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker("k", BreakerParams(failures=2))
    breaker.failure(err("unavailable"), 0)
    breaker.success()
    breaker.failure(err("unavailable"), 1)
    assert breaker.state is BreakerState.CLOSED


def test_a_disabled_breaker_never_refuses() -> None:
    breaker = CircuitBreaker("k", BreakerParams(enabled=False, failures=1))
    breaker.failure(err("unavailable"), 0)
    assert breaker.allow(0)


# --- the guard ----------------------------------------------------------------------------------


def guard(registry: BreakerRegistry, **params: Any) -> ProviderGuard:
    return ProviderGuard("llm", "fake", "http://x", ResilienceParams(**params), registry=registry)


class Script:
    """A request whose attempts fail or succeed as scripted; records what it was asked."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.attempts: list[int] = []

    async def __call__(self, attempt: Attempt) -> str:
        self.attempts.append(attempt.number)
        outcome = self.outcomes.pop(0)
        if outcome == "commit-then-fail":
            attempt.commit()
            raise err("unavailable")
        if outcome == "stall":
            await asyncio.Event().wait()
        if isinstance(outcome, ProviderError):
            raise outcome
        return str(outcome)


async def test_guard_retries_after_the_backoff_on_the_clock() -> None:
    clock = VirtualClock()
    g = guard(BreakerRegistry(clock), retries=2, backoff_s=1.0, backoff_max_s=1.0)
    script = Script(err("unavailable"), "ok")
    task = asyncio.ensure_future(g.call(script, clock=clock))
    await clock.advance(0.7)
    assert script.attempts == [0] and not task.done()  # waiting out the backoff
    await clock.advance(0.6)
    assert await task == "ok" and script.attempts == [0, 1]


async def test_guard_never_retries_a_committed_attempt() -> None:
    clock = VirtualClock()
    g = guard(BreakerRegistry(clock), retries=3)
    script = Script("commit-then-fail", "ok")
    with pytest.raises(ProviderError):
        await g.call(script, clock=clock)
    assert script.attempts == [0]


async def test_guard_gives_up_on_a_stall_at_the_first_byte_deadline() -> None:
    clock = VirtualClock()
    g = guard(BreakerRegistry(clock), retries=1, first_byte_timeout_s=2.0, backoff_s=0.1)
    script = Script("stall", "late but fine")
    task = asyncio.ensure_future(g.call(script, clock=clock))
    await clock.advance(1.9)
    assert not task.done()
    await clock.advance(0.5)
    assert await task == "late but fine" and script.attempts == [0, 1]


async def test_progress_stops_the_first_byte_deadline() -> None:
    clock = VirtualClock()
    g = guard(BreakerRegistry(clock), first_byte_timeout_s=1.0)

    async def slow_stream(attempt: Attempt) -> str:
        attempt.progress()
        await clock.sleep(5.0)
        return "done"

    task = asyncio.ensure_future(g.call(slow_stream, clock=clock))
    await clock.advance(6.0)
    assert await task == "done"


async def test_an_open_breaker_fails_fast_and_is_shared_by_key() -> None:
    clock = VirtualClock()
    registry = BreakerRegistry(clock)
    params: dict[str, Any] = {"retries": 0, "breaker": {"failures": 2, "cooldown_s": 5}}
    first, second = guard(registry, **params), guard(registry, **params)
    assert first.breaker is second.breaker
    for _ in range(2):
        with pytest.raises(ProviderError):
            await first.call(Script(err("timeout")), clock=clock)
    script = Script("never")
    with pytest.raises(ProviderError) as refused:
        await second.call(script, clock=clock)
    assert refused.value.circuit_open and refused.value.kind == "unavailable"
    assert script.attempts == []
    await clock.advance(5.0)
    assert await second.call(Script("probe ok"), clock=clock) == "probe ok"
    assert first.breaker.state is BreakerState.CLOSED


async def test_no_retry_once_the_breaker_opened() -> None:
    clock = VirtualClock()
    g = guard(BreakerRegistry(clock), retries=3, breaker={"failures": 1})
    script = Script(err("unavailable"), "ok")
    with pytest.raises(ProviderError):
        await g.call(script, clock=clock)
    assert script.attempts == [0]


async def test_a_cancelled_probe_frees_the_half_open_slot() -> None:
    clock = VirtualClock()
    g = guard(BreakerRegistry(clock), retries=0, breaker={"failures": 1, "cooldown_s": 1})
    with pytest.raises(ProviderError):
        await g.call(Script(err("unavailable")), clock=clock)
    await clock.advance(1.0)
    task = asyncio.ensure_future(g.call(Script("stall"), clock=clock))
    await clock.settle()
    task.cancel()  # a barge-in
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await g.call(Script("ok"), clock=clock) == "ok"


# --- configuration ------------------------------------------------------------------------------

BAD_STAGE = """
stages:
  - type: voicebridge.stages.dialogue.llm:Llm
    params:
      base_url: http://127.0.0.1:9/v1
      resilience: {retries: 9, first_byte_timeout_s: 0, breaker: {cooldown: 3}}
  - type: voicebridge.testing:ToneSpeaker
"""


def test_bad_resilience_params_are_reported_with_their_path() -> None:
    with pytest.raises(ConfigError) as failure:
        load_pipeline_text(BAD_STAGE)
    text = str(failure.value)
    assert "resilience.retries" in text
    assert "resilience.first_byte_timeout_s" in text
    assert "resilience.breaker.cooldown" in text


def test_reply_options_are_checked() -> None:
    with pytest.raises(ValueError, match="reply_timeout_ms must be longer"):
        ReplyOptions(filler_after_ms=3000, reply_timeout_ms=2000)
    with pytest.raises(ValueError, match="filler_texts"):
        ReplyOptions(filler_texts=[])
    assert ReplyOptions(filler_after_ms=None, filler_texts=[]).filler_after_ms is None
    spec = load_pipeline_text(
        "session: {replies: {filler_after_ms: null, reply_timeout_ms: 4000}}\n"
        "stages: [{type: decode}, {type: vad}, {type: echo}, {type: encode}]\n"
    )
    assert spec.session.replies.reply_timeout_ms == 4000
