"""The delivery worker against a real receiver on loopback: retries, timeouts, restarts, giving
up. Backoff and request timeouts run on a virtual clock the test moves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voicebridge.clock import VirtualClock
from voicebridge.config.errors import ConfigError
from voicebridge.webhook.delivery import WebhookDelivery
from voicebridge.webhook.signing import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    idempotency_key,
    verify_signature,
)

from .conftest import SECRET, WALL, dead, receiver, spooled, until, webhook_settings


def document(call_id: str = "call-1") -> dict[str, Any]:
    return {
        "id": idempotency_key(call_id, "stream-1", 0, "call.ended"),
        "event": "call.ended",
        "call": {"call_id": call_id, "stream_id": "stream-1"},
        "history": [{"role": "caller", "text": "hello"}],
    }


def worker(url: str, spool: Path, clock: VirtualClock, **overrides: Any) -> WebhookDelivery:
    return WebhookDelivery(
        webhook_settings(url, spool, **overrides),
        SECRET,
        clock=clock,
        wall=lambda: WALL,
        jitter=lambda: 1.0,
    )


async def test_a_failure_then_a_timeout_then_success_delivers_one_document_once(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    spool = tmp_path / "spool"
    async with receiver(500, "hang", 200) as rx:
        delivery = worker(rx.url, spool, clock)
        await delivery.start()
        doc = document()
        delivery.enqueue(doc)

        first = await rx.next()  # answered 500
        await until(lambda: delivery.stats.failed_attempts == 1)
        assert spooled(spool) and spooled(spool)[0].endswith(".1.json")  # the attempt counted
        await clock.advance(1.0)  # the first backoff: backoff_initial_s (jitter 1.0)

        second = await rx.next()  # the receiver hangs: the attempt times out on the clock
        await clock.advance(5.0)
        await until(lambda: delivery.stats.failed_attempts == 2)
        await clock.advance(2.0)  # the second backoff: doubled

        third = await rx.next()  # accepted
        await delivery.idle()
        await delivery.stop()

    assert len(rx.requests) == 3
    assert delivery.stats.as_dict() == {
        "enqueued": 1,
        "delivered": 1,
        "failed_attempts": 2,
        "dead": 0,
        "dropped": 0,
    }
    bodies = {r.body for r in (first, second, third)}
    assert len(bodies) == 1  # the same bytes every time
    assert json.loads(bodies.pop()) == doc
    keys = {r.headers[IDEMPOTENCY_HEADER.lower()] for r in (first, second, third)}
    assert keys == {doc["id"]}
    for request in (first, second, third):
        header = request.headers[SIGNATURE_HEADER.lower()]
        assert header.startswith(f"t={int(WALL)},v1=")
        assert verify_signature(SECRET, header, request.body, now=WALL)
        assert not verify_signature("another-secret-0123456789", header, request.body, now=WALL)
        assert request.headers["content-type"] == "application/json"
    assert spooled(spool) == [] and dead(spool) == []  # delivered: deleted


async def test_enqueue_returns_at_once_and_the_worker_spools_before_sending(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    spool = tmp_path / "spool"
    async with receiver("hang") as rx:
        delivery = worker(rx.url, spool, clock)
        await delivery.start()
        delivery.enqueue(document())  # no await: nothing to wait for
        assert delivery.pending == 1
        await rx.next()  # in flight, unanswered: the document is on disk meanwhile
        assert len(spooled(spool)) == 1
        rx.released.set()
        await delivery.idle()
        await delivery.stop()
    assert spooled(spool) == []


async def test_many_documents_are_each_delivered_once_at_most_concurrency_at_a_time(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    async with receiver(*["hang"] * 6) as rx:
        delivery = worker(rx.url, spool, VirtualClock(), concurrency=2)
        await delivery.start()
        docs = [document(f"call-{n}") for n in range(6)]
        for doc in docs:
            delivery.enqueue(doc)
        await rx.next()
        await rx.next()  # two in flight, held
        rx.released.set()
        await delivery.idle()
        await delivery.stop()
    assert rx.most_inflight <= 2
    keys = [r.headers[IDEMPOTENCY_HEADER.lower()] for r in rx.requests]
    assert sorted(keys) == sorted(doc["id"] for doc in docs)  # each once
    assert delivery.stats.delivered == 6 and spooled(spool) == []


async def test_delivery_resumes_after_a_restart_from_what_the_last_worker_spooled(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    doc = document()
    async with receiver(503) as down:
        first = worker(down.url, spool, VirtualClock())
        await first.start()
        first.enqueue(doc)
        await down.next()
        await until(lambda: first.stats.failed_attempts == 1)
        await first.stop()  # the service stops with the document undelivered
    assert len(spooled(spool)) == 1 and spooled(spool)[0].endswith(".1.json")

    async with receiver() as up:  # a new process, a receiver that is back
        second = worker(up.url, spool, VirtualClock())
        await second.start()  # nothing enqueued: it finds the spooled document itself
        got = await up.next()
        await second.idle()
        await second.stop()
    assert json.loads(got.body) == doc
    assert got.headers[IDEMPOTENCY_HEADER.lower()] == doc["id"]
    assert verify_signature(SECRET, got.headers[SIGNATURE_HEADER.lower()], got.body, now=WALL)
    assert second.stats.delivered == 1 and len(up.requests) == 1
    assert spooled(spool) == []


async def test_a_shard_left_by_a_stopped_worker_is_adopted_and_a_held_one_is_not(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    async with receiver(503, 503) as down:
        holder = worker(down.url, spool, VirtualClock())
        await holder.start()  # shard-0, held while it runs
        other = worker(down.url, spool, VirtualClock())
        await other.start()  # shard-1
        assert (holder.spool.shard, other.spool.shard) == (spool / "shard-0", spool / "shard-1")
        other.enqueue(document("left-behind"))
        await down.next()
        await until(lambda: other.stats.failed_attempts == 1)
        await other.stop()
        third = worker(down.url, spool, VirtualClock())
        await third.start()  # shard-1 again: its own file is there, nothing else
        assert third.spool.shard == spool / "shard-1" and len(third.spool.entries) == 1
        await down.next()  # it tries at once (503 again)
        await until(lambda: third.stats.failed_attempts == 1)
        await third.stop()
        await holder.stop()
    async with receiver() as up:
        # A process that gets shard-0 adopts shard-1, whose owner is gone.
        last = worker(up.url, spool, VirtualClock())
        await last.start()
        got = await up.next()
        await last.idle()
        await last.stop()
    assert json.loads(got.body)["call"]["call_id"] == "left-behind"
    assert spooled(spool) == []


async def test_after_max_attempts_a_document_goes_to_the_dead_letters(tmp_path: Path) -> None:
    clock = VirtualClock()
    spool = tmp_path / "spool"
    async with receiver(500, 502, 503) as rx:
        delivery = worker(rx.url, spool, clock, max_attempts=3)
        await delivery.start()
        delivery.enqueue(document())
        for attempt, backoff in ((1, 1.0), (2, 2.0)):
            await rx.next()
            await until(lambda: delivery.stats.failed_attempts == attempt)  # noqa: B023
            await clock.advance(backoff)
        await rx.next()
        await delivery.idle()
        await delivery.stop()
    assert len(rx.requests) == 3  # no fourth
    assert delivery.stats.dead == 1 and delivery.stats.delivered == 0
    assert spooled(spool) == []
    (letter,) = dead(spool)
    assert letter.endswith(".3.json")
    assert json.loads((spool / "dead" / letter).read_text())["id"] == document()["id"]


async def test_a_refusal_is_not_retried_and_retry_after_is_honoured(tmp_path: Path) -> None:
    clock = VirtualClock()
    spool = tmp_path / "spool"
    async with receiver(400, 429) as rx:
        delivery = worker(rx.url, spool, clock)
        await delivery.start()
        delivery.enqueue(document("refused"))
        await rx.next()  # 400: the receiver will never take it
        await until(lambda: delivery.stats.dead == 1)
        delivery.enqueue(document("busy"))
        await rx.next()  # 429 with Retry-After: 0, then the backoff
        await until(lambda: delivery.stats.failed_attempts == 2)
        await clock.advance(1.0)
        await rx.next()
        await delivery.idle()
        await delivery.stop()
    assert delivery.stats.delivered == 1 and len(dead(spool)) == 1


def test_the_backoff_doubles_up_to_its_maximum_and_jitters_down_to_half() -> None:
    settings = webhook_settings("http://127.0.0.1:9/hook", Path("unused"))
    low = WebhookDelivery(settings, SECRET, jitter=lambda: 0.0)
    high = WebhookDelivery(settings, SECRET, jitter=lambda: 1.0)
    assert [high.backoff(n) for n in (1, 2, 3, 4, 5, 9)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert [low.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert low.backoff(1, retry_after=30.0) == 8.0  # Retry-After, within backoff_max_s


def test_a_webhook_url_needs_a_secret_from_the_environment(tmp_path: Path) -> None:
    settings = webhook_settings("https://crm.example.com/hook", tmp_path)
    with pytest.raises(ConfigError, match="VOICEBRIDGE_WEBHOOK_SECRET is not set"):
        WebhookDelivery.from_settings(settings, {})
    with pytest.raises(ConfigError, match="shorter than 16"):
        WebhookDelivery.from_settings(settings, {"VOICEBRIDGE_WEBHOOK_SECRET": "short"})
    made = WebhookDelivery.from_settings(settings, {"VOICEBRIDGE_WEBHOOK_SECRET": SECRET})
    assert made.url == "https://crm.example.com/hook"


async def test_a_document_that_cannot_be_made_to_fit_is_dropped_and_counted(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    delivery = worker("http://127.0.0.1:9/hook", spool, VirtualClock(), max_document_bytes=4096)
    await delivery.start()
    delivery.enqueue({**document(), "vars": {"blob": "x" * 10_000}})  # no list to cut
    await delivery.idle()
    await delivery.stop()
    assert delivery.stats.dropped == 1 and delivery.stats.enqueued == 1
    assert spooled(spool) == [] and dead(spool) == []
