"""Signature nonces already seen, so a captured signed request cannot be replayed.

Plivo's V3 signature covers the URL, the body and a nonce, but no time: a copy of a signed
``/answer`` stays valid for ever. Each nonce whose signature checked out is remembered for
``window_s``; a second request with it is refused. Memory is always consulted; with a shared
state store (``state: redis://…``) the store's one-winner claim makes the rule hold across
workers and hosts. A store that is down costs the cross-worker part only (logged, counted):
this process still refuses what it has seen.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import structlog

from voicebridge.state.store import StateStore, StoreError

log = structlog.get_logger("voicebridge.security")

MAX_REMEMBERED = 100_000  # local entries; past it the oldest are forgotten first
MAX_NONCE_CHARS = 256


class NonceMemory:
    """``first_use(nonce)`` is True once per nonce within ``window_s``."""

    def __init__(
        self,
        window_s: float = 3600.0,
        *,
        shared: StateStore | None = None,
        time_fn: Callable[[], float] = time.monotonic,
        max_remembered: int = MAX_REMEMBERED,
    ) -> None:
        self.window_s = window_s
        # A memory store is this process's own: the local table already answers for it.
        self.shared = shared if shared is not None and shared.name != "memory" else None
        self.time_fn = time_fn
        self.max_remembered = max_remembered
        self._seen: dict[str, float] = {}  # key -> expiry, oldest first
        self.replays = 0
        self.store_errors = 0

    def __len__(self) -> int:
        return len(self._seen)

    async def first_use(self, nonce: str) -> bool:
        """Remember ``nonce``; False when it was seen within the window (a replay)."""
        key = hashlib.sha256(nonce.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        now = self.time_fn()
        self._prune(now)
        expiry = self._seen.get(key)
        if expiry is not None and expiry > now:
            self.replays += 1
            return False
        self._seen.pop(key, None)  # re-inserted last: the table stays oldest first
        self._seen[key] = now + self.window_s
        if self.shared is not None:
            try:
                if not await self.shared.claim(f"nonce:{key}", "signature", self.window_s):
                    self.replays += 1
                    return False
            except StoreError as exc:
                self.store_errors += 1
                log.warning("nonce_store_failed", error=str(exc)[:200])
        return True

    def _prune(self, now: float) -> None:
        """Forget expired nonces from the oldest end (one window for all: oldest first)."""
        seen = self._seen
        while seen:
            key = next(iter(seen))
            if seen[key] > now and len(seen) < self.max_remembered:
                break
            del seen[key]
