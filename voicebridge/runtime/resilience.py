"""Provider resilience in one place: bounded retries, a first-output deadline, circuit breakers.

Every cloud stage sends its requests through a :class:`ProviderGuard` instead of retrying on its
own. The guard:

* retries a failed request only when that is safe and can help: the error's kind is transient
  (``unavailable``, ``timeout``, ``quota`` i.e. HTTP 429) and the attempt has *committed* nothing
  downstream (no text or audio of it left the stage), so the caller never hears a word twice;
* waits between attempts with capped exponential backoff and jitter, or the provider's
  ``Retry-After`` when it is longer, on the call's clock (tests run it on a ``VirtualClock``);
* gives up on an attempt that produced nothing within ``first_byte_timeout_s`` (a stalled
  provider), on the same clock;
* consults a :class:`CircuitBreaker` shared by every call of the process for the same provider
  endpoint. After ``failures`` provider-side failures in a row it opens and requests fail at once
  with ``ProviderError(kind="unavailable")`` (``circuit_open`` set), so the session can speak its
  fallback without waiting for another timeout; after ``cooldown_s`` one probe is let through
  (half-open) and its outcome closes or re-opens the circuit. A call's own fault (a bad request,
  an input the provider refuses) never counts against the provider.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from voicebridge.clock import Clock, MonotonicClock
from voicebridge.runtime.providers import ProviderError

T = TypeVar("T")

# Kinds a retry may fix; "quota" is HTTP 429 / RESOURCE_EXHAUSTED (rate limits).
RETRY_KINDS: frozenset[str] = frozenset({"unavailable", "timeout", "quota"})
# Kinds that say the provider (not this call) is in trouble: they count toward opening a breaker.
BREAKER_KINDS: frozenset[str] = frozenset({"unavailable", "timeout", "quota", "auth"})

_log = structlog.get_logger("voicebridge.runtime.resilience")


# --- configuration ------------------------------------------------------------------------------


class BreakerParams(BaseModel):
    """When a provider endpoint counts as down, and for how long calls skip it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    failures: int = Field(5, ge=1, le=1000, description="provider failures in a row that open it")
    cooldown_s: float = Field(
        30.0, gt=0, le=3600, description="open this long before one probe request is let through"
    )


class ResilienceParams(BaseModel):
    """The ``resilience:`` block of a cloud stage's params (every field has a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retries: int = Field(
        1, ge=0, le=5, description="extra attempts after a transient failure, when safe"
    )
    backoff_s: float = Field(0.2, ge=0, le=10, description="first retry delay, then doubled")
    backoff_max_s: float = Field(2.0, ge=0, le=60, description="cap on one retry delay")
    max_retry_after_s: float = Field(
        3.0,
        ge=0,
        le=60,
        description="a provider asking to wait longer than this (Retry-After) is not retried",
    )
    first_byte_timeout_s: float | None = Field(
        None,
        gt=0,
        le=600,
        description="an attempt that produced nothing this long is abandoned (None = no limit)",
    )
    breaker: BreakerParams = Field(default_factory=lambda: BreakerParams())

    @model_validator(mode="after")
    def _backoff_order(self) -> ResilienceParams:
        if self.backoff_max_s < self.backoff_s:
            raise ValueError("backoff_max_s must be at least backoff_s")
        return self


# --- retry policy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts, how long between them, and which failures deserve another one."""

    retries: int = 1
    backoff_s: float = 0.2
    backoff_max_s: float = 2.0
    max_retry_after_s: float = 3.0
    kinds: frozenset[str] = RETRY_KINDS
    rng: random.Random = field(default_factory=random.Random, compare=False)

    @classmethod
    def from_params(cls, params: ResilienceParams, **overrides: Any) -> RetryPolicy:
        values: dict[str, Any] = {
            "retries": params.retries,
            "backoff_s": params.backoff_s,
            "backoff_max_s": params.backoff_max_s,
            "max_retry_after_s": params.max_retry_after_s,
        }
        values.update(overrides)
        return cls(**values)

    def should_retry(self, error: ProviderError, attempt: int) -> bool:
        """``attempt`` is 0-based: the attempt that just failed."""
        if attempt >= self.retries or error.kind not in self.kinds:
            return False
        after = error.retry_after_s
        return after is None or after <= self.max_retry_after_s

    def delay(self, attempt: int, error: ProviderError | None = None) -> float:
        """Seconds to wait before the attempt after ``attempt``: jittered, capped, and never
        shorter than what the provider asked for."""
        base = min(self.backoff_max_s, self.backoff_s * (2**attempt))
        delay = base * self.rng.uniform(0.75, 1.25)
        after = error.retry_after_s if error is not None else None
        if after is not None:
            delay = max(delay, after)
        return delay


# --- circuit breaker ----------------------------------------------------------------------------


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """One provider endpoint's health, shared by every call that uses it.

    Sans-I/O: callers pass ``now`` (seconds on the registry's clock).
    """

    def __init__(self, key: str, params: BreakerParams) -> None:
        self.key = key
        self.params = params
        self.state = BreakerState.CLOSED
        self.failures = 0  # provider failures in a row
        self.opened_at = 0.0
        self.opened = 0  # how many times it opened (logs, tests)
        self._probing = False

    def allow(self, now: float) -> bool:
        """May a request go out now? In half-open state only one probe at a time may."""
        if not self.params.enabled or self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if now - self.opened_at < self.params.cooldown_s:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probing = False
            _log.info("circuit_half_open", key=self.key)
        if self._probing:
            return False
        self._probing = True
        return True

    def retry_in(self, now: float) -> float:
        """Seconds until a probe may go out (0 when one may now)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.params.cooldown_s - now)

    def success(self) -> None:
        if self.state is not BreakerState.CLOSED:
            _log.info("circuit_closed", key=self.key)
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._probing = False

    def failure(self, error: ProviderError, now: float) -> None:
        """Count ``error`` if it is the provider's fault; open when the threshold is reached."""
        if error.kind not in BREAKER_KINDS:
            # The call's own fault: says nothing about the provider. A probe that ends this way
            # still reached the provider, which is all half-open needed to know.
            if self.state is BreakerState.HALF_OPEN:
                self.success()
            return
        self.failures += 1
        self._probing = False
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self.failures >= self.params.failures
        ):
            self.state = BreakerState.OPEN
            self.opened_at = now
            self.opened += 1
            _log.warning(
                "circuit_open",
                key=self.key,
                failures=self.failures,
                kind=error.kind,
                cooldown_s=self.params.cooldown_s,
            )

    def release(self) -> None:
        """A request let through ended without a verdict (cancelled by a barge-in)."""
        self._probing = False


class BreakerRegistry:
    """The process's breakers, one per provider endpoint key, on one clock."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, key: str, params: BreakerParams) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(key, params)
        return breaker

    def __iter__(self) -> Any:
        return iter(list(self._breakers.values()))

    def reset(self, clock: Clock | None = None) -> None:
        """Forget every breaker (tests), optionally moving to another clock."""
        self._breakers.clear()
        if clock is not None:
            self.clock = clock


breakers = BreakerRegistry()


# --- the guard ----------------------------------------------------------------------------------


class Attempt:
    """One try of a request. The request reports its progress through it.

    ``progress()``: the provider answered something (stops the first-byte deadline).
    ``commit()``: output of this attempt went downstream; from now on it is never retried.
    """

    __slots__ = ("committed", "number", "progressed")

    def __init__(self, number: int) -> None:
        self.number = number
        self.progressed = False
        self.committed = False

    def progress(self) -> None:
        self.progressed = True

    def commit(self) -> None:
        self.progressed = True
        self.committed = True


RetryIf = Callable[[ProviderError], bool]


def stage_guard(
    stage: str,
    provider: str,
    endpoint: str,
    params: ResilienceParams,
    *,
    retries: int | None = None,
    backoff_s: float | None = None,
    retry_if: RetryIf | None = None,
) -> ProviderGuard:
    """A stage's guard. ``retries``/``backoff_s`` are the stage's own older settings (e.g.
    Polly's ``max_attempts``); they apply unless the ``resilience:`` block sets its own."""
    overrides: dict[str, Any] = {}
    if retries is not None and "retries" not in params.model_fields_set:
        overrides["retries"] = retries
    if backoff_s is not None and "backoff_s" not in params.model_fields_set:
        overrides["backoff_s"] = backoff_s
        overrides["backoff_max_s"] = max(params.backoff_max_s, backoff_s)
    policy = RetryPolicy.from_params(params, **overrides)
    return ProviderGuard(stage, provider, endpoint, params, retry_if=retry_if, policy=policy)


class ProviderGuard:
    """Runs a stage's provider requests under the retry policy, deadline and breaker."""

    def __init__(
        self,
        stage: str,
        provider: str,
        endpoint: str,
        params: ResilienceParams,
        *,
        retry_if: RetryIf | None = None,
        policy: RetryPolicy | None = None,
        registry: BreakerRegistry | None = None,
    ) -> None:
        self.stage = stage
        self.provider = provider
        self.params = params
        self.policy = policy or RetryPolicy.from_params(params)
        self.retry_if = retry_if
        self.registry = registry or breakers
        self.key = f"{provider}|{endpoint}"
        self.breaker = self.registry.get(self.key, params.breaker)

    async def call(
        self, request: Callable[[Attempt], Coroutine[Any, Any, T]], *, clock: Clock, log: Any = None
    ) -> T:
        """Run ``request`` until it succeeds or may not be tried again; raises ProviderError."""
        log = log or _log
        number = 0
        while True:
            self._check_breaker()
            attempt = Attempt(number)
            try:
                result = await self._attempt(request, attempt, clock)
            except ProviderError as error:
                self.breaker.failure(error, self.registry.clock.now())
                if not self._retry(error, attempt):
                    raise
                delay = self.policy.delay(number, error)
                log.warning(
                    "provider_retry",
                    provider=self.provider,
                    kind=error.kind,
                    status=error.status,
                    attempt=number + 1,
                    delay_ms=round(1000 * delay),
                    error=error.provider_message[:200],
                )
                await clock.sleep(delay)
                number += 1
                continue
            except BaseException:
                self.breaker.release()
                raise
            self.breaker.success()
            return result

    def _retry(self, error: ProviderError, attempt: Attempt) -> bool:
        if attempt.committed:
            return False  # the caller heard part of it: repeating would say it twice
        if not self.policy.should_retry(error, attempt.number):
            return False
        if self.retry_if is not None and not self.retry_if(error):
            return False
        return self.breaker.state is not BreakerState.OPEN

    def _check_breaker(self) -> None:
        now = self.registry.clock.now()
        if self.breaker.allow(now):
            return
        error = ProviderError(
            self.stage,
            self.provider,
            "unavailable",
            f"circuit open after {self.breaker.failures} failures in a row; "
            f"next try in {self.breaker.retry_in(now):.1f} s",
        )
        error.circuit_open = True
        raise error

    async def _attempt(
        self, request: Callable[[Attempt], Coroutine[Any, Any, T]], attempt: Attempt, clock: Clock
    ) -> T:
        timeout = self.params.first_byte_timeout_s
        if timeout is None:
            return await request(attempt)
        loop = asyncio.get_running_loop()
        work: asyncio.Task[T] = loop.create_task(request(attempt), name=f"{self.stage}-attempt")
        expired = False

        async def deadline() -> None:
            nonlocal expired
            await clock.sleep(timeout)
            if not attempt.progressed and not work.done():
                expired = True
                work.cancel()

        timer = loop.create_task(deadline(), name=f"{self.stage}-first-byte")
        try:
            return await work
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if expired and (me is None or not me.cancelling()):
                raise ProviderError(
                    self.stage,
                    self.provider,
                    "timeout",
                    f"no answer within {timeout:g} s (first_byte_timeout_s)",
                ) from None
            raise
        finally:
            timer.cancel()
            if not work.done():
                work.cancel()
