"""Whole calls through a speech-to-speech stage, in step with its loopback fake.

``test_openai_realtime`` and ``test_gemini_live`` drive a real ``Session`` on a stream clock
(``CallHarness``: Plivo's playout and acks modelled) against a wire-level fake of the provider.
``LiveCall`` keeps the call's time and the network in step: after each 20 ms caller frame it waits
(real time) until the fake has handled everything the stage sent and the stage everything the
fake sent, so each event lands at an exact stream time and the tests' numbers are exact.

While the stage has no session (a drop, an outage) the call is quiet once the stage is asleep
until its next try (``reconnect_waiting``), or while its newest try (``tries``) waits for its
set-up (``awaiting_setup``, until its deadline) and has reached the fake (``connections``), which
holds it unanswered (``held``): call time then runs on, as it would, and the try's deadline
fires on it. A try still on its way, or unwinding, is waited for.

The fake needs ``sessions`` (the last one ``session``, with ``received`` and ``sent`` counts),
``generating``, ``connections``, ``held`` and ``wait_for(predicate)``; the stage ``link``,
``handled``, ``tries``, ``awaiting_setup`` and ``reconnect_waiting``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

import numpy as np

from voicebridge.config import load_pipeline_text
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.observe.metrics import ServiceMetrics
from voicebridge.sim.signals import speech_like
from voicebridge.stages.realtime.s2s_stage import SpeechToSpeechStage
from voicebridge.testing.harness import CallHarness

S = TypeVar("S", bound=SpeechToSpeechStage[Any])


def pipeline_spec(template: str, base_url: str, extra: str, filename: str) -> PipelineSpec:
    """``template`` with the fake's URL and ``extra`` stage params (YAML lines) filled in."""
    lines = "".join(f"      {line}\n" for line in extra.strip().splitlines())
    text = template.format(base_url=base_url, extra=lines.rstrip("\n"))
    return load_pipeline_text(text, filename, environ={})


def played(call: CallHarness) -> str:
    """Every word the caller heard played to its piece's end, in order."""
    return " ".join(e["text"] for e in call.timeline("played") if e["text"])


class LiveCall(Generic[S]):
    """A ``CallHarness`` whose every frame waits for the network to be quiet."""

    stage_type: type[S]  # set by each test module's subclass

    def __init__(self, call: CallHarness, fake: Any) -> None:
        self.call = call
        self.fake = fake

    @classmethod
    async def start(cls, call: CallHarness, fake: Any) -> Self:
        """Start ``call`` and wait for its session to settle."""
        await call.start()
        live = cls(call, fake)
        await live.settle()
        return live

    @property
    def stage(self) -> S:
        pipeline = self.call.session.pipeline
        assert pipeline is not None
        return next(s for s in pipeline.stages if isinstance(s, self.stage_type))

    def quiet(self) -> bool:
        stage, fake = self.stage, self.fake
        link = stage.link
        if link is None:
            if stage.reconnect_waiting:
                return True
            newest = fake.connections
            return stage.awaiting_setup and newest == stage.tries and newest in fake.held
        if not fake.sessions:
            return False
        session = fake.session
        return (
            link.idle
            and link.sent == session.received
            and not fake.generating
            and stage.handled == session.sent
        )

    async def settle(self) -> None:
        await self.fake.wait_for(self.quiet)
        pipeline = self.call.session.pipeline
        if pipeline is not None and not self.call.session.ended.is_set():
            await pipeline.wait_idle()

    async def frame(self, pcm: Any = None) -> None:
        await self.call.frame(pcm)
        if not self.call.session.ended.is_set():
            await self.settle()

    async def speak(self, seconds: float) -> None:
        pcm = speech_like(seconds, self.call.rate)
        step = self.call.rate // 50
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            if len(chunk) < step:
                chunk = np.pad(chunk, (0, step - len(chunk)))
            await self.frame(chunk)

    async def idle(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.02)):
            await self.frame()

    async def until(self, predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
        for _ in range(round(limit_s / 0.02)):
            if predicate() or self.call.session.ended.is_set():
                return
            await self.frame()
        raise AssertionError("the call never got there")

    def history(self) -> list[tuple[str, str, bool]]:
        ctx = self.call.session.ctx
        assert ctx is not None
        return [(h.role, h.text, h.interrupted) for h in ctx.history]


# --- the circuit breaker ------------------------------------------------------------------------

TEST_RESILIENCE = "resilience: {{retries: 1, backoff_s: 0.05, backoff_max_s: 0.05}}"
BREAKER_RESILIENCE = (
    "resilience: {{retries: 0, backoff_s: 0.05, backoff_max_s: 0.05, "
    "breaker: {{failures: 2, cooldown_s: 5}}}}"
)
COOLDOWN_S = 5.0


def breaker_template(template: str, *, give_up: bool) -> str:
    """A test pipeline whose session breaker opens after 2 failures in a row for 5 s, and
    whose call ends at once when it opens (``give_up``) or goes on."""
    assert TEST_RESILIENCE in template
    text = template.replace(TEST_RESILIENCE, BREAKER_RESILIENCE)
    flag = str(give_up).lower()
    return text.replace(
        "  fallback_text:",
        f"  replies: {{{{give_up_when_circuit_open: {flag}}}}}\n  fallback_text:",
    )


def call_metrics(call: CallHarness) -> ServiceMetrics:
    """The service metrics this call's events make (as the server's subscriber feeds them)."""
    metrics = ServiceMetrics()
    subscriber = metrics.call_subscriber()
    timeline = call.session.timeline
    assert timeline is not None
    for event in timeline.events:
        if isinstance(event, subscriber.event_types):
            subscriber.on_event(event)
    return metrics
