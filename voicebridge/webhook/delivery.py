"""The service's one webhook delivery worker: spool, sign, POST, retry, give up.

A call hands its document over with ``enqueue``: synchronous, no I/O, no waiting, so nothing
here can delay a call or its hang-up. The worker (one background task, owned by the app's
lifespan) then encodes it, writes it to the spool (in a thread), and POSTs it, signed, with an
idempotency key that is the same on every attempt. A 2xx deletes it. A network error, a timeout,
408, 425, 429 or a 5xx is retried after an exponential backoff with jitter (``Retry-After`` is
honoured, within ``backoff_max_s``); any other answer, or ``max_attempts`` failures, moves it to
the dead-letter folder. Documents still waiting when the service stops stay in the spool and are
sent by the next process to start on it: delivery is at least once.

Backoff and request timeouts run on a ``Clock``, so tests drive them with a virtual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import random
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import structlog

from voicebridge import __version__
from voicebridge.clock import Clock, MonotonicClock, wait_for
from voicebridge.config.errors import ConfigError, ConfigIssue
from voicebridge.config.service_settings import WebhookSettings
from voicebridge.observe.bounded import bounded
from voicebridge.webhook.encode import encode
from voicebridge.webhook.signing import (
    EVENT_HEADER,
    IDEMPOTENCY_HEADER,
    MIN_SECRET_CHARS,
    SECRET_ENV,
    SIGNATURE_HEADER,
    signature_header,
)
from voicebridge.webhook.spool import Spool, SpoolEntry

log = structlog.get_logger("voicebridge.webhook")

_RETRYABLE: Final = frozenset({408, 425, 429})
_MAX_RETRY_AFTER_CHARS: Final = 32
_KEY: Final = re.compile(r"[0-9a-f]{1,64}")


@dataclass(slots=True)
class DeliveryStats:
    enqueued: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    dead: int = 0
    dropped: int = 0  # documents that could not even be spooled (encoding, disk)

    def as_dict(self) -> dict[str, int]:
        return {
            "enqueued": self.enqueued,
            "delivered": self.delivered,
            "failed_attempts": self.failed_attempts,
            "dead": self.dead,
            "dropped": self.dropped,
        }


class WebhookDelivery:
    """Delivers post-call documents to ``settings.url``, at least once, in the background."""

    def __init__(
        self,
        settings: WebhookSettings,
        secret: str,
        *,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if settings.url is None:
            raise ValueError("webhook.url is not set")
        self.settings = settings
        self.url = settings.url
        self._secret = secret
        self.clock: Clock = clock or MonotonicClock()
        self.wall = wall
        self.jitter = jitter
        self._transport = transport
        self.spool = Spool(
            Path(settings.spool_dir),
            max_files=settings.max_spool_files,
            max_bytes=settings.max_spool_bytes,
            max_dead=settings.max_dead_letters,
        )
        self.stats = DeliveryStats()
        self._incoming: deque[dict[str, Any]] = deque()
        self._waiting: dict[str, SpoolEntry] = {}  # key -> a document between attempts
        self._due: list[tuple[float, int, str]] = []  # (clock time, seq, key): next attempts
        self._seq = itertools.count()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopped = False
        parts = urlsplit(self.url)
        self._target = bounded(f"{parts.scheme}://{parts.hostname}{parts.path}", 120)

    @classmethod
    def from_settings(
        cls, settings: WebhookSettings, environ: Mapping[str, str], **options: Any
    ) -> WebhookDelivery:
        """The worker for ``settings``, its secret from ``VOICEBRIDGE_WEBHOOK_SECRET``; a
        ConfigError when the URL is set without a usable secret (documents are never sent
        unsigned)."""
        secret = environ.get(SECRET_ENV, "").strip()
        if len(secret) < MIN_SECRET_CHARS:
            problem = "is not set" if not secret else f"is shorter than {MIN_SECRET_CHARS}"
            raise ConfigError(
                [
                    ConfigIssue(
                        "environment",
                        None,
                        None,
                        "webhook.url",
                        f"is set but {SECRET_ENV} {problem}: documents are always signed",
                    )
                ]
            )
        return cls(settings, secret, **options)

    # --- the call's side: cheap and synchronous -------------------------------------------
    def enqueue(self, document: dict[str, Any]) -> None:
        """Take a finished call's document. No I/O here: the worker spools it."""
        if self._stopped:  # a call that outlived the service's shutdown
            self.stats.dropped += 1
            log.error("webhook_dropped", key=str(document.get("id"))[:64], why="stopped")
            return
        limit = self.settings.max_spool_files
        if len(self._incoming) >= limit:  # the worker is far behind: keep the newest
            self._incoming.popleft()
            self.stats.dropped += 1
            log.error("webhook_dropped", why="queue_full", queued=limit)
        self._incoming.append(document)
        self.stats.enqueued += 1
        self._idle.clear()
        self._wake.set()

    # --- life ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the spool (taking over what an earlier process left) and start the worker."""
        waiting = await asyncio.to_thread(self.spool.open)
        now = self.clock.now()
        for entry in waiting:
            self._schedule(entry, now)
        if waiting:
            self._idle.clear()
            log.info("webhook_spool_resumed", documents=len(waiting), spool=str(self.spool.shard))
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(self.settings.timeout_s),
            follow_redirects=False,  # a redirect must not carry a signed document elsewhere
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-delivery")
        log.info("webhook_ready", url=self._target, waiting=len(waiting))

    async def stop(self) -> None:
        """Stop: documents not yet delivered stay in the spool for the next start."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for flight in list(self._inflight.values()):
            flight.cancel()
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()))
        self._inflight.clear()
        while self._incoming:  # handed over but not spooled yet: keep them for the next start
            await self._spool_one(self._incoming.popleft())
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        await asyncio.to_thread(self.spool.close)
        log.info("webhook_stopped", undelivered=len(self.spool.entries), **self.stats.as_dict())

    @property
    def pending(self) -> int:
        """Documents handed over and not yet delivered or given up."""
        return len(self._incoming) + len(self._waiting) + len(self._inflight)

    async def idle(self) -> None:
        """Wait until nothing is pending (tests, a drain that wants to flush)."""
        await self._idle.wait()

    # --- the worker -------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                while self._incoming:
                    await self._spool_one(self._incoming.popleft())
                delay = self._launch_due()
            except Exception as exc:  # a bug here must not end delivery for the process
                log.error("webhook_worker_failed", error=repr(exc)[:300])
                delay = self.settings.backoff_initial_s
            if not self.pending:
                self._idle.set()
            await self._sleep(delay)

    def _launch_due(self) -> float | None:
        """Start every due attempt there is room for; seconds until the next one is due."""
        now = self.clock.now()
        while self._due and len(self._inflight) < self.settings.concurrency:
            due, _, key = self._due[0]
            if due > now:
                return due - now
            heapq.heappop(self._due)
            entry = self._waiting.pop(key, None)
            if entry is None or key in self._inflight:
                continue  # superseded
            self._inflight[key] = asyncio.get_running_loop().create_task(self._attempt(entry))
        return None  # nothing waits, or a finishing attempt wakes the worker

    def _schedule(self, entry: SpoolEntry, due: float) -> None:
        self._waiting[entry.key] = entry
        heapq.heappush(self._due, (due, next(self._seq), entry.key))

    async def _sleep(self, delay: float | None) -> None:
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if delay is not None:
            waiters.append(asyncio.ensure_future(self.clock.sleep(delay)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _spool_one(self, document: dict[str, Any]) -> None:
        key = str(document.get("id") or "")
        try:
            entry = await asyncio.to_thread(self._write, key, document)
        except (OSError, ValueError) as exc:
            self.stats.dropped += 1
            log.error("webhook_dropped", key=key[:64], why=repr(exc)[:300])
            return
        self._schedule(entry, self.clock.now())

    def _write(self, key: str, document: dict[str, Any]) -> SpoolEntry:
        """Encode and spool one document (in a thread: JSON and disk stay off the loop)."""
        body = encode(document, self.settings.max_document_bytes)
        if not _KEY.fullmatch(key):  # not one of ours: a key from the bytes, as stable
            key = hashlib.sha256(body).hexdigest()[:32]
        return self.spool.write(key, body, time.time_ns())

    async def _attempt(self, entry: SpoolEntry) -> None:
        try:
            status, error, retry_after = await self._post(entry)
            await self._settle(entry, status, error, retry_after)
        except Exception as exc:  # the disk failed while settling: the file stays, try later
            log.error("webhook_attempt_failed", key=entry.key, error=repr(exc)[:300])
            self._schedule(entry, self.clock.now() + self.backoff(max(1, entry.attempts)))
        finally:
            self._inflight.pop(entry.key, None)
            self._wake.set()

    async def _post(self, entry: SpoolEntry) -> tuple[int | None, str, float | None]:
        """One attempt: the status (None when no answer came), a short error, Retry-After."""
        if self._client is None:
            return None, "not started", None
        try:
            body = await asyncio.to_thread(self.spool.read, entry)
        except OSError as exc:
            return None, f"spool read: {exc!r}"[:200], None
        stamp = int(self.wall())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"voicebridge/{__version__}",
            SIGNATURE_HEADER: signature_header(self._secret, stamp, body),
            IDEMPOTENCY_HEADER: entry.key,
            EVENT_HEADER: "call.ended",
        }
        try:
            response = await wait_for(
                self.clock,
                self._client.post(self.url, content=body, headers=headers),
                self.settings.timeout_s,
            )
        except TimeoutError:
            return None, "timeout", None
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:200], None
        return response.status_code, "", _retry_after(response.headers.get("retry-after"))

    async def _settle(
        self, entry: SpoolEntry, status: int | None, error: str, retry_after: float | None
    ) -> None:
        if status is not None and 200 <= status < 300:
            await asyncio.to_thread(self.spool.delivered, entry)
            self.stats.delivered += 1
            log.info("webhook_delivered", key=entry.key, status=status, attempts=entry.attempts + 1)
            return
        failed_at = self.clock.now()  # the backoff counts from the failure, not the disk
        retryable = status is None or status >= 500 or status in _RETRYABLE
        await asyncio.to_thread(self.spool.failed, entry)
        why = error or f"HTTP {status}"
        if not retryable or entry.attempts >= self.settings.max_attempts:
            await asyncio.to_thread(self.spool.dead, entry, why)
            self.stats.failed_attempts += 1
            self.stats.dead += 1
            return
        delay = self.backoff(entry.attempts, retry_after)
        self._schedule(entry, failed_at + delay)
        self.stats.failed_attempts += 1  # counted once the retry is scheduled
        log.warning(
            "webhook_retry",
            key=entry.key,
            attempts=entry.attempts,
            why=bounded(why, 200),
            retry_in_s=round(delay, 3),
        )

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds before attempt ``attempts + 1``: ``backoff_initial_s`` doubled per failed
        attempt, at most ``backoff_max_s``, then jittered to between half and all of it (so
        many documents failing together do not come back together); at least Retry-After."""
        s = self.settings
        ceiling = min(s.backoff_max_s, s.backoff_initial_s * 2 ** min(attempts - 1, 40))
        delay = ceiling * (0.5 + 0.5 * self.jitter())
        if retry_after is not None:
            delay = max(delay, min(retry_after, s.backoff_max_s))
        return delay


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta form only; a date is ignored)."""
    if not value or len(value) > _MAX_RETRY_AFTER_CHARS:
        return None
    text = value.strip()
    return float(text) if text.isdigit() else None
