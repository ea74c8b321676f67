"""Stream tokens: Plivo does not sign its WebSocket, so ``/answer`` hands out the right to connect.

A token names the call it was minted for, when it stops opening new connections and a random id
(``jti``), and carries an HMAC-SHA256 of all that under a service secret. It travels in the
``<Stream>`` URL, so it is compact and URL-safe: ``base64url(payload).base64url(mac)``.

The codec is stateless. Whether a valid token may still be used (once live at a time, a few
reconnections, never after its call ended) is the ``TokenStore``'s job.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

_VERSION = "1"
_DOMAIN = b"voicebridge-stream-token:"  # a MAC for this purpose only, whatever else the key signs
MAX_TOKEN_CHARS = 512
MAX_CALL_ID_CHARS = 128
MIN_SECRET_BYTES = 16

TimeFn = Callable[[], float]


class TokenError(Exception):
    """A token that cannot be trusted. ``reason`` is a short slug for logs and close reasons:
    ``missing``, ``malformed`` or ``bad_signature``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class StreamToken:
    """What a verified token says."""

    call_id: str
    expires_at: int  # unix seconds: no first connection after this
    jti: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokenCodec:
    """Mints and verifies tokens with one secret; ``time_fn`` is injectable for tests."""

    def __init__(self, secret: bytes, *, ttl_s: float = 60.0, time_fn: TimeFn = time.time) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"stream secret: expected at least {MIN_SECRET_BYTES} bytes")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s: expected a positive number of seconds, got {ttl_s!r}")
        self._secret = secret
        self.ttl_s = ttl_s
        self.time_fn = time_fn

    def __repr__(self) -> str:
        return f"StreamTokenCodec(secret='***', ttl_s={self.ttl_s})"

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._secret, _DOMAIN + payload.encode("ascii"), hashlib.sha256).digest()

    def mint(self, call_id: str) -> str:
        """A token for ``call_id``, valid for a first connection during ``ttl_s``."""
        if not call_id or len(call_id) > MAX_CALL_ID_CHARS or not call_id.isprintable():
            raise ValueError(
                f"call_id: expected 1..{MAX_CALL_ID_CHARS} printable characters, got {call_id!r}"
            )
        expires_at = int(self.time_fn() + self.ttl_s + 0.999)  # whole seconds, never shorter
        jti = _b64(secrets.token_bytes(12))
        payload = _b64(f"{_VERSION}|{expires_at}|{jti}|{call_id}".encode())
        return f"{payload}.{_b64(self._mac(payload))}"

    def verify(self, token: str | None) -> StreamToken:
        """The token's claims if its MAC is ours. Expiry is not judged here (see TokenStore):
        a reconnection of a call in progress legitimately presents an old token."""
        if not token:
            raise TokenError("missing", "no stream token")
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            raise TokenError("malformed", "stream token is not payload.mac")
        payload, mac_text = token.split(".")
        try:
            mac = _unb64(mac_text)
        except (binascii.Error, ValueError):
            raise TokenError("malformed", "stream token MAC is not base64url") from None
        try:
            expected = self._mac(payload)
        except UnicodeEncodeError:
            raise TokenError("malformed", "stream token is not ASCII") from None
        if not hmac.compare_digest(expected, mac):
            raise TokenError("bad_signature", "stream token was not signed with our secret")
        try:  # signed by us, so well formed unless the format changed
            version, expires, jti, call_id = _unb64(payload).decode().split("|", 3)
            if version != _VERSION:
                raise ValueError(version)
            return StreamToken(call_id=call_id, expires_at=int(expires), jti=jti)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise TokenError("malformed", "stream token payload is unreadable") from None


class Claim(enum.Enum):
    """The store's answer to a connection attempt; only OK lets it through."""

    OK = "ok"
    EXPIRED = "expired"  # never used, and too late for a first connection
    IN_USE = "in_use"  # another connection holds it right now
    REUSED = "reused"  # every allowed connection has been made
    CALL_ENDED = "call_ended"  # its call finished normally

    @property
    def ok(self) -> bool:
        return self is Claim.OK


class TokenStore(Protocol):
    """Which tokens are in use. The in-memory store serves one process; a shared store (redis)
    would give the same answers across replicas behind one load balancer."""

    def claim(self, jti: str, call_id: str, expires_at: float) -> Claim: ...

    def take_over(self, jti: str) -> Claim:
        """A new connection takes a live token over from a dead one (counted as a connection)."""
        ...

    def call_active(self, call_id: str) -> bool:
        """A token of ``call_id`` is live, or may still reconnect: the call has its key."""
        ...

    def release(self, jti: str) -> None:
        """The connection ended but the call may come back (a drop Plivo will retry)."""

    def finish(self, jti: str) -> None:
        """The call ended: the token opens nothing any more."""


@dataclass
class _Entry:
    call_id: str
    expires_at: float
    connections: int = 1
    live: bool = True
    finished: bool = False
    released_at: float = 0.0


class MemoryTokenStore:
    """Token use in this process.

    A token opens its first connection before it expires; after a drop, it may open another one
    within ``reconnect_window_s`` of the drop (Plivo retries twice with the same URL, and a call
    resumed mid-way presents a token minted long ago), up to ``max_connections`` in all, one at a
    time. An entry is forgotten once it is not live and both its expiry and its reconnect window
    have passed; a forgotten token is then expired, so forgetting never lets one back in and the
    store holds only recent tokens.
    """

    def __init__(
        self,
        *,
        max_connections: int = 3,
        reconnect_window_s: float = 60.0,
        time_fn: TimeFn = time.time,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections: expected at least 1, got {max_connections}")
        self.max_connections = max_connections
        self.reconnect_window_s = reconnect_window_s
        self.time_fn = time_fn
        self._entries: dict[str, _Entry] = {}
        self._calls: dict[str, str] = {}  # call id -> the id of its newest claimed token
        self._next_prune = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def claim(self, jti: str, call_id: str, expires_at: float) -> Claim:
        now = self.time_fn()
        self._prune(now)
        entry = self._entries.get(jti)
        if entry is None:
            if now >= expires_at:
                return Claim.EXPIRED
            self._entries[jti] = _Entry(call_id, expires_at)
            self._calls[call_id] = jti
            return Claim.OK
        if entry.finished:
            return Claim.CALL_ENDED
        if entry.live:
            return Claim.IN_USE
        if entry.connections >= self.max_connections:
            return Claim.REUSED
        if now > entry.released_at + self.reconnect_window_s and now >= entry.expires_at:
            return Claim.EXPIRED
        entry.connections += 1
        entry.live = True
        return Claim.OK

    def take_over(self, jti: str) -> Claim:
        entry = self._entries.get(jti)
        if entry is None:
            return Claim.EXPIRED
        if entry.finished:
            return Claim.CALL_ENDED
        if entry.connections >= self.max_connections:
            return Claim.REUSED
        entry.connections += 1
        entry.live = True
        return Claim.OK

    def call_active(self, call_id: str) -> bool:
        jti = self._calls.get(call_id)
        entry = self._entries.get(jti) if jti is not None else None
        if entry is None or entry.finished:
            return False
        return entry.live or self.time_fn() <= entry.released_at + self.reconnect_window_s

    def release(self, jti: str) -> None:
        entry = self._entries.get(jti)
        if entry is not None and entry.live:
            entry.live = False
            entry.released_at = self.time_fn()

    def finish(self, jti: str) -> None:
        entry = self._entries.get(jti)
        if entry is not None:
            entry.live = False
            entry.finished = True
            entry.released_at = self.time_fn()

    def _prune(self, now: float) -> None:
        """Drop forgotten entries, at most once a second: O(entries) but rare."""
        if now < self._next_prune:
            return
        self._next_prune = now + 1.0
        stale = [
            jti
            for jti, e in self._entries.items()
            if not e.live
            and now >= e.expires_at
            and (e.finished or now > e.released_at + self.reconnect_window_s)
        ]
        for jti in stale:
            entry = self._entries.pop(jti)
            if self._calls.get(entry.call_id) == jti:
                del self._calls[entry.call_id]
