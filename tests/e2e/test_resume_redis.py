"""Resuming across workers through a real redis-server, and surviving Redis going away.

Two services in this process stand for two workers (or hosts) sharing one Redis: a call dropped
on one resumes on the other. Redis is killed and restarted mid-call: live calls go on, saving
resumes when it is back, and a call dropped while Redis is down still resumes on its own worker.
"""

from __future__ import annotations

import asyncio

from voicebridge.clock import VirtualClock
from voicebridge.server.resume_registry import ResumeRegistry
from voicebridge.sim.signals import speech_like
from voicebridge.state.store import RedisStore
from voicebridge.testing.redis_server import RedisServer

from .plivo_leg import Leg
from .test_resume import CALL, GREETING, RATE, WORDS, heard_words, history, service, spoken_texts


def worker(server: RedisServer, name: str) -> ResumeRegistry:
    # Generous: a busy test machine must not turn a slow answer into a failure.
    store = RedisStore(server.url, timeout_s=5.0, backoff_s=0.0)
    return ResumeRegistry(store, grace_s=10, clock=VirtualClock(), worker=name)


async def test_a_call_dropped_on_one_worker_resumes_on_another(redis_server: RedisServer) -> None:
    reg_a, reg_b = worker(redis_server, "a"), worker(redis_server, "b")
    async with service(reg_a) as (svc_a, watch_a), service(reg_b) as (svc_b, watch_b):
        async with Leg(svc_a.ws_url, watch_a, CALL, "stream-a") as first:
            await first.idle(2.3)
            await first.drop()
        old_texts = spoken_texts(watch_a.session)
        heard = " ".join(old_texts).split()[: heard_words(first, old_texts)]
        assert reg_a.stats.saves > 0  # live snapshots went to Redis on acks

        async with Leg(svc_b.ws_url, watch_b, CALL, "stream-b") as second:
            new = watch_b.session
            assert new.resumed_from is not None and new.resumed_from.epoch == 0
            await second.idle(2.0)
            texts = spoken_texts(new)
            heard += " ".join(texts).split()[: heard_words(second, texts)]
            assert heard == WORDS
            assert history(new) == [("agent", GREETING, False)]
            assert second.checkpoints()[0] == "turn-2/piece-1"
        assert reg_b.stats.resumed == 1
        # Worker A's grace timer finds the call claimed by B: it does not finalise it.
        assert isinstance(reg_a.clock, VirtualClock)
        timer = reg_a.grace_timer(CALL)
        assert timer is not None
        await reg_a.clock.advance(10.5)
        await asyncio.wait_for(timer, 10)  # its claim is a real round trip to Redis
        assert reg_a.finalised == [] and reg_a.stats.resumed_elsewhere == 1


async def test_only_one_worker_resumes_a_call(redis_server: RedisServer) -> None:
    reg_a, reg_b = worker(redis_server, "a"), worker(redis_server, "b")
    async with service(reg_a) as (svc_a, watch_a), service(reg_b) as (svc_b, watch_b):
        async with Leg(svc_a.ws_url, watch_a, CALL, "stream-a") as first:
            await first.idle(1.0)
            await first.drop()
        snapshot = await reg_b.store.load(CALL)
        assert snapshot is not None
        # A racing worker claimed this stream first: B must not resume it too.
        key = f"{CALL}:{snapshot.epoch}:{snapshot.stream_token}"
        assert await reg_b.store.claim(key, "racer", 60)
        async with Leg(svc_b.ws_url, watch_b, CALL, "stream-b") as second:
            await second.idle(0.3)
            assert watch_b.session.resumed_from is None
        assert reg_b.stats.claim_lost == 1


async def test_redis_going_away_and_coming_back_mid_call(redis_server: RedisServer) -> None:
    reg_a, reg_b = worker(redis_server, "a"), worker(redis_server, "b")
    async with (
        service(reg_a, lines=["one", "two"]) as (svc_a, watch_a),
        service(reg_b) as (svc_b, watch_b),
    ):
        async with Leg(svc_a.ws_url, watch_a, CALL, "stream-a") as first:
            await first.idle(1.0)
            saves = reg_a.stats.saves
            redis_server.stop()
            await first.idle(3.0)  # the greeting plays on; saving it fails
            assert first.checkpoints() == ["turn-1/piece-1", "turn-1/piece-2"]
            assert reg_a.stats.store_errors > 0 and reg_a.stats.saves == saves
            await first.speak(speech_like(0.6, RATE))
            await first.idle(1.0)  # the call answered as if nothing happened
            assert first.checkpoints()[-1] == "turn-2/piece-1"

            reg_a.saved.clear()
            redis_server.start()  # empty: nothing was persisted
            await first.speak(speech_like(0.6, RATE))
            await first.idle(1.0)
            await asyncio.wait_for(reg_a.saved.wait(), 10)  # saving resumed by itself
            assert reg_a.stats.saves > saves
            assert await reg_b.store.load(CALL) is not None
            await first.drop()
        async with Leg(svc_b.ws_url, watch_b, CALL, "stream-b") as second:
            await second.idle(0.3)
            new = watch_b.session
            assert new.resumed_from is not None
            assert [h[1] for h in history(new)] == [GREETING, "one", "Sure.", "two", "Sure."]


async def test_a_call_dropped_while_redis_is_down_resumes_on_its_own_worker(
    redis_server: RedisServer,
) -> None:
    reg_a = worker(redis_server, "a")
    async with service(reg_a) as (svc_a, watch_a):
        async with Leg(svc_a.ws_url, watch_a, CALL, "stream-a") as first:
            await first.idle(2.3)
            redis_server.stop()
            await first.drop()
        old_texts = spoken_texts(watch_a.session)
        heard = " ".join(old_texts).split()[: heard_words(first, old_texts)]
        async with Leg(svc_a.ws_url, watch_a, CALL, "stream-b") as second:
            new = watch_a.session
            assert new.resumed_from is not None
            await second.idle(2.0)
            texts = spoken_texts(new)
            heard += " ".join(texts).split()[: heard_words(second, texts)]
        assert heard == WORDS
