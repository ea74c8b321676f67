"""A stream that drops mid-call and comes back for the same call resumes the conversation.

The real service on a loopback port, real WebSockets, a dropped TCP connection (no close frame),
and a new socket with a new ``start`` for the same call id, as Plivo retries. Each session runs
on its own stream clock; the dropped-call registry runs on a virtual clock, so the grace period
is exact. The speaker is ``ToneSpeaker`` (50 ms per character, a 50 ms gap after each word), so
which words the caller heard is known from the audio played.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voicebridge.clock import StreamClock, VirtualClock
from voicebridge.config import load_pipeline_text
from voicebridge.server.resume_registry import ResumeRegistry
from voicebridge.server.run import RunningService, running_service
from voicebridge.session import Session
from voicebridge.sim.signals import speech_like
from voicebridge.state.store import MemoryStore, StateStore
from voicebridge.testing.harness import ScriptedDialogue

from .conftest import settings
from .plivo_leg import Leg, Watch

GREETING = "Hello and welcome to the test line. We are glad you called today."
# piece 1: 1.8 s of audio, piece 2: 1.5 s (ToneSpeaker: 50 ms a character and a gap a word)
WORDS = GREETING.split()
RATE = 8000
CALL = "call-resume-1"


def spec(lines: list[str]) -> Any:
    return load_pipeline_text(f"""
name: resume-test
session:
  chunk_ms: 100
  max_lead_ms: 600
  barge_in: {{guard_ms: 200}}
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: {lines!r}}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: {GREETING!r}, reply: "Sure."}}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
""")


@contextlib.asynccontextmanager
async def service(
    registry: ResumeRegistry, lines: list[str] | None = None, **overrides: Any
) -> AsyncIterator[tuple[RunningService, Watch]]:
    watch = Watch()
    async with running_service(
        settings(**overrides),
        spec(lines or ["what now"]),
        clock_factory=StreamClock,
        record_events=True,
        on_session=watch,
        resumes=registry,
    ) as svc:
        yield svc, watch


def registry(store: StateStore | None = None, grace_s: float = 10.0) -> ResumeRegistry:
    return ResumeRegistry(store or MemoryStore(), grace_s=grace_s, clock=VirtualClock())


def dialogue(session: Session) -> ScriptedDialogue:
    assert session.pipeline is not None
    stage = session.pipeline.stages[3]
    assert isinstance(stage, ScriptedDialogue)
    return stage


def sent_texts(session: Session) -> list[str]:
    """The text of every agent piece the session sent whole (audio, then its checkpoint)."""
    return [
        e["text"]
        for e in (session.timeline.dicts() if session.timeline else [])
        if e["kind"] == "checkpoint"
    ]


def spoken_texts(session: Session) -> list[str]:
    """The text of every agent piece the session set out to speak, in order."""
    return [
        e["text"]
        for e in (session.timeline.dicts() if session.timeline else [])
        if e["kind"] == "agent_text"
    ]


def heard_words(leg: Leg, pieces: list[str]) -> int:
    """Whole words (tone and the gap after it) of ``pieces`` the caller heard on ``leg``."""
    samples = sum(len(seg.pcm) for seg in leg.playout.heard)
    per_char = RATE * 50 // 1000
    count = 0
    for word in " ".join(pieces).split():
        need = (len(word) + 1) * per_char
        if samples < need:
            break
        samples -= need
        count += 1
    return count


def history(session: Session) -> list[tuple[str, str, bool]]:
    assert session.ctx is not None
    return [(h.role, h.text, h.interrupted) for h in session.ctx.history]


async def test_drop_while_the_agent_speaks_resumes_from_the_first_unheard_word() -> None:
    reg = registry()
    async with service(reg) as (svc, watch):
        async with Leg(svc.ws_url, watch, CALL, "stream-a") as first:
            # Piece 1 played and acked; piece 2 is 0.5 s in ("We are"), partly sent.
            await first.idle(2.3)
            assert first.checkpoints() == ["turn-1/piece-1"]
            await first.drop()
        old = watch.session
        assert old.end_reason == "suspended" and len(reg) == 1
        assert heard_words(first, spoken_texts(old)) == 9  # "... test line. We are"

        async with Leg(svc.ws_url, watch, CALL, "stream-b") as second:
            new = watch.session
            await second.idle(1.8)  # the remainder plays: 22 characters and 4 gaps
            assert sent_texts(new) == ["glad you called today."]
            assert second.checkpoints() == ["turn-2/piece-1"]  # no greeting: turn 2
            assert history(new) == [("agent", GREETING, False)]
            await second.speak(speech_like(0.6, RATE))
            await second.idle(1.5)
            assert dialogue(new).seen == [
                [("agent", GREETING, False), ("caller", "what now", False)]
            ]
            assert second.checkpoints()[-1] == "turn-3/piece-1"
        assert new.core.reconnects == 1
        assert new.resumed_from is not None and new.resumed_from.elapsed_s >= 2.3
        assert reg.stats.suspended == 1 and reg.stats.resumed == 1 and reg.finalised == []


async def test_drop_in_the_middle_of_caller_speech() -> None:
    reg = registry()
    async with service(reg, lines=["tell me more"]) as (svc, watch):
        async with Leg(svc.ws_url, watch, CALL, "stream-a") as first:
            await first.idle(4.0)  # the greeting played out
            await first.speak(speech_like(0.5, RATE))  # mid-utterance...
            await first.drop()
        async with Leg(svc.ws_url, watch, CALL, "stream-a") as second:  # the same stream id
            new = watch.session
            await second.idle(0.5)
            assert second.checkpoints() == []  # nothing owed, no greeting again
            await second.speak(speech_like(0.8, RATE))  # the caller says it again
            await second.idle(1.5)
            assert dialogue(new).seen == [
                [("agent", GREETING, False), ("caller", "tell me more", False)]
            ]
            assert second.checkpoints() == ["turn-2/piece-1"]
            assert sent_texts(new) == ["Sure."]


async def test_drop_between_turns_keeps_history_and_turn() -> None:
    reg = registry()
    async with service(reg, lines=["first question", "second question"]) as (svc, watch):
        async with Leg(svc.ws_url, watch, CALL, "stream-a") as first:
            await first.idle(4.0)
            await first.speak(speech_like(0.6, RATE))
            await first.idle(1.5)  # "Sure." played
            assert first.checkpoints()[-1] == "turn-2/piece-1"
            await first.drop()
        async with Leg(svc.ws_url, watch, CALL, "stream-c") as second:
            new = watch.session
            await second.idle(0.3)
            assert second.checkpoints() == []
            assert history(new) == [
                ("agent", GREETING, False),
                ("caller", "first question", False),
                ("agent", "Sure.", False),
            ]
            await second.speak(speech_like(0.6, RATE))
            await second.idle(1.5)
            assert second.checkpoints() == ["turn-3/piece-1"]
            assert dialogue(new).seen[-1][-1] == ("caller", "first question", False)


async def test_drop_without_reconnect_is_finalised_after_the_grace_period() -> None:
    reg = registry()
    clock = reg.clock
    assert isinstance(clock, VirtualClock)
    async with service(reg) as (svc, watch):
        async with Leg(svc.ws_url, watch, CALL, "stream-a") as first:
            await first.idle(1.0)
            await first.drop()
        assert await reg.store.load(CALL) is not None
        timer = reg.grace_timer(CALL)
        assert timer is not None
        await clock.advance(9.9)
        assert reg.finalised == [] and len(reg) == 1 and not timer.done()
        await clock.advance(0.2)
        await timer
        assert reg.finalised == [(CALL, "socket_lost")] and len(reg) == 0
        assert await reg.store.load(CALL) is None

        # Plivo coming back after the grace period starts a new call: greeted from the top.
        async with Leg(svc.ws_url, watch, CALL, "stream-late") as late:
            await late.idle(0.5)
            assert spoken_texts(watch.session)[0] == "Hello and welcome to the test line."
            assert watch.session.resumed_from is None
            await late.drop()
        # ...which is resumable in its own right (the finalised stream's claim is not its own).
        async with Leg(svc.ws_url, watch, CALL, "stream-later"):
            assert watch.session.resumed_from is not None


async def test_a_normal_close_ends_the_call_at_once() -> None:
    reg = registry()
    async with service(reg) as (svc, watch):
        async with Leg(svc.ws_url, watch, CALL, "stream-a") as first:
            await first.idle(0.5)
        assert watch.session.end_reason == "socket_closed"
        assert len(reg) == 0 and reg.stats.suspended == 0


async def test_a_second_start_for_a_live_call_is_refused_without_proof() -> None:
    """Without a stream token nobody can prove to be the call's retry: a second ``start`` for a
    live call is refused and the live leg keeps the call (the retry with the call's own token
    after a silent drop takes over: ``tests/abuse/test_call_identity.py``)."""
    reg = registry()
    async with service(reg) as (svc, watch), Leg(svc.ws_url, watch, CALL, "stream-a") as first:
        await first.idle(1.0)
        live = watch.session
        second = Leg(svc.ws_url, None, CALL, "stream-b")
        await second.__aenter__()
        await asyncio.wait_for(second.closed.wait(), 10)
        assert second.ws is not None
        assert (second.ws.close_code, second.ws.close_reason) == (
            1008,
            "call is live on another stream",
        )
        assert not live.ended.is_set() and live.resumed_from is None
        await first.idle(3.0)  # the greeting goes on playing to the live leg, to its end
        assert first.checkpoints() == ["turn-1/piece-1", "turn-1/piece-2"]
        assert svc.app.state.legs.refused == 1


async def test_grace_zero_ends_a_dropped_call() -> None:
    reg = registry(grace_s=0)
    async with service(reg) as (svc, watch):
        async with Leg(svc.ws_url, watch, CALL, "stream-a") as first:
            await first.idle(1.0)
            await first.drop()
        assert watch.session.end_reason == "socket_closed" and len(reg) == 0
        async with Leg(svc.ws_url, watch, CALL, "stream-b") as second:
            await second.idle(0.3)
            assert spoken_texts(watch.session)[0] == "Hello and welcome to the test line."


async def test_a_goodbye_cut_off_by_the_drop_is_finished_then_the_call_hangs_up() -> None:
    reg = registry()
    async with service(reg, lines=["goodbye"]) as (svc, watch):
        async with Leg(svc.ws_url, watch, CALL, "stream-a") as first:
            await first.idle(4.0)
            await first.speak(speech_like(0.6, RATE))
            while spoken_texts(watch.session)[-1] != "Goodbye.":
                await first.frame()
            await first.idle(0.1)  # the reply "Goodbye." (0.45 s) has just begun
            await first.drop()
        snapshot = reg.snapshot(CALL)
        assert snapshot is not None and snapshot.action is not None
        assert snapshot.action.kind == "hangup" and snapshot.pending_text == "Goodbye."
        async with Leg(svc.ws_url, watch, CALL, "stream-b") as second:
            new = watch.session
            await second.idle(2.0)
            assert sent_texts(new) == ["Goodbye."]
            assert new.end_reason == "hangup:dialogue"
            await asyncio.wait_for(second.closed.wait(), 10)  # the hang-up reaches the socket


async def test_call_time_keeps_counting_across_the_drop() -> None:
    reg = registry()
    async with service(reg, limits={"max_call_seconds": 3}) as (svc, watch):
        async with Leg(svc.ws_url, watch, CALL, "stream-a") as first:
            await first.idle(2.0)
            await first.drop()
        async with Leg(svc.ws_url, watch, CALL, "stream-b") as second:
            await second.idle(2.0)
            new = watch.session
            assert new.end_reason == "max_call_duration"
            assert 0.9 <= second.t <= 1.2  # 3 s in all, not 3 s more


@pytest.mark.parametrize("seed", range(4))
async def test_random_drop_points_without_resume_start_a_new_call(seed: int) -> None:
    """Fault injection with resuming off: every drop ends its call and the retry is a new call,
    greeted from the top; the service takes each one."""
    rng = random.Random(100 + seed)
    reg = registry(grace_s=0)
    async with service(reg) as (svc, watch):
        for index in range(3):
            async with Leg(svc.ws_url, watch, CALL, f"stream-{index}") as leg:
                session = watch.session
                assert session.resumed_from is None
                await leg.idle(round(rng.uniform(0.1, 3.0) / 0.02) * 0.02)
                assert spoken_texts(session)[0] == "Hello and welcome to the test line."
                await leg.drop()
            assert session.end_reason == "socket_closed"
        assert len(reg) == 0 and reg.stats.suspended == 0


@pytest.mark.parametrize("seed", range(6))
async def test_random_drop_points_never_repeat_a_heard_word(seed: int) -> None:
    """Fault injection: drop at a random moment (one or two drops), with resume: the words the
    caller heard across every leg are the greeting, each once, in order."""
    rng = random.Random(seed)
    reg = registry()
    heard: list[str] = []
    async with service(reg) as (svc, watch):
        legs = 1 + rng.randrange(2)
        for index in range(legs + 1):
            async with Leg(svc.ws_url, watch, CALL, f"stream-{index}") as leg:
                session = watch.session
                if index < legs:
                    await leg.idle(round(rng.uniform(0.1, 3.0) / 0.02) * 0.02)
                    await leg.drop()
                else:
                    await leg.idle(4.0)
                texts = spoken_texts(session)
                heard += " ".join(texts).split()[: heard_words(leg, texts)]
        assert heard == WORDS
        assert history(watch.session) == [("agent", GREETING, False)]
