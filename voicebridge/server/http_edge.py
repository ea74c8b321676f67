"""The HTTP edge: deadlines for reading a request, and a cap on requests still being read.

uvicorn closes idle keep-alive connections but gives a client unlimited time to send a request's
head and body: a hundred slow-loris connections, each dribbling a header line, stay open for
ever. ``EdgeH11Protocol`` is uvicorn's h11 protocol with two deadlines (the head within
``header_timeout_s`` of the connection or of the first byte of the next keep-alive request, the
body within ``body_timeout_s`` of the head) and a cap on connections whose request is not read
yet, in all and per peer address. At a cap the *oldest* incomplete request is closed (once it
has had a quarter of the header deadline): a real request is read in milliseconds, so it is
never the oldest, and a flood from one address churns only its own connections.

A timed-out request gets ``408`` (when no response has started) and its connection is closed;
the route, if it was reading the body, sees the client as gone (an info line, never a
traceback: ``voicebridge.server.app``). The close lingers (RFC 9112, section 9.6): the server
half-closes after the answer and reads and drops what the client still sends for up to
``LINGER_S``. Closing at once with the client's bytes unread makes the kernel answer them with a
reset, and a client still sending its body then loses the ``408`` before it reads it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import h11
import structlog
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from voicebridge.config.service_settings import HttpSettings, ServiceSettings
from voicebridge.observe.bounded import bounded
from voicebridge.observe.throttle import LogThrottle

log = structlog.get_logger("voicebridge.server")

# uvicorn.Config attribute that carries the settings (``voicebridge.server.run``); worker
# processes of ``serve --workers N`` read them from the environment, as their app does.
CONFIG_ATTR = "voicebridge_http"
SETTINGS_ENV = "VOICEBRIDGE_SETTINGS_JSON"  # voicebridge.server.factory.SETTINGS_ENV

_HEAD, _BODY = "headers", "body"
LINGER_S = 1.0
"""How long a closed request's connection reads and drops late bytes before it really closes."""
_READ_DONE = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)


def _timeout_response(phase: str) -> bytes:
    body = f"request timeout: {phase} not received in time".encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _overload_response() -> bytes:
    body = b"too many incomplete requests"
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"connection: close\r\nretry-after: 1\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class IncompleteRequests:
    """Connections whose request is still being read, oldest first, per server.

    At a cap the oldest is closed, but only once it has had ``min_age_s`` to send its head: a
    burst of new connections, all accepted before any has been read, is let in whole.
    """

    def __init__(
        self,
        limit: int,
        per_peer: int,
        min_age_s: float,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.per_peer = per_peer
        self.min_age_s = min_age_s
        self.time_fn = time_fn
        self.waiting: OrderedDict[EdgeH11Protocol, tuple[str, float]] = OrderedDict()
        self.by_peer: dict[str, int] = {}
        self.evicted = 0

    def add(self, conn: EdgeH11Protocol, peer: str) -> EdgeH11Protocol | None:
        """Track ``conn``; the connection to close to stay within the caps, if any."""
        if conn in self.waiting:
            return None
        now = self.time_fn()
        oldest: EdgeH11Protocol | None = None
        if self.by_peer.get(peer, 0) >= self.per_peer:
            oldest = next(c for c, (p, _) in self.waiting.items() if p == peer)
        elif len(self.waiting) >= self.limit:
            oldest = next(iter(self.waiting))
        if oldest is not None and now - self.waiting[oldest][1] < self.min_age_s:
            oldest = None  # too young to judge: a burst, not a slow client
        if oldest is not None:
            self.discard(oldest)
            self.evicted += 1
        self.waiting[conn] = (peer, now)
        self.by_peer[peer] = self.by_peer.get(peer, 0) + 1
        return oldest

    def discard(self, conn: EdgeH11Protocol) -> None:
        found = self.waiting.pop(conn, None)
        if found is None:
            return
        peer = found[0]
        left = self.by_peer[peer] - 1
        if left:
            self.by_peer[peer] = left
        else:
            del self.by_peer[peer]

    def __len__(self) -> int:
        return len(self.waiting)


_TRACKERS: weakref.WeakKeyDictionary[ServerState, IncompleteRequests] = weakref.WeakKeyDictionary()
_THROTTLE = LogThrottle()


def incomplete_requests(server_state: ServerState) -> IncompleteRequests | None:
    """The requests a server is still reading (for tests and operators); None before any."""
    return _TRACKERS.get(server_state)


def http_settings(config: Config) -> HttpSettings:
    """The edge settings of this server: set on its config, else handed down to a worker."""
    found = getattr(config, CONFIG_ATTR, None)
    return found if isinstance(found, HttpSettings) else _settings_from_environment()


@functools.cache
def _settings_from_environment() -> HttpSettings:
    raw = os.environ.get(SETTINGS_ENV)
    return ServiceSettings.model_validate_json(raw).http if raw else HttpSettings()


class EdgeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with request read deadlines and a cap on incomplete requests."""

    def __init__(self, config: Config, server_state: ServerState, *args: Any, **kw: Any) -> None:
        super().__init__(config, server_state, *args, **kw)
        self.edge = http_settings(config)
        tracker = _TRACKERS.get(server_state)
        if tracker is None:
            tracker = IncompleteRequests(
                self.edge.max_incomplete,
                self.edge.max_incomplete_per_peer,
                min_age_s=self.edge.header_timeout_s / 4,
            )
            _TRACKERS[server_state] = tracker
        self.incomplete = tracker
        self.phase: str | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.linger: asyncio.TimerHandle | None = None  # set while a closed request lingers

    # --- the phases of reading one request ------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading(_HEAD)

    def data_received(self, data: bytes) -> None:
        if self.linger is not None:
            return  # the request was answered and closed: late bytes are dropped
        if self.phase is None and self.conn.their_state is h11.IDLE:
            self._reading(_HEAD)  # the first byte of the next keep-alive request
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()  # a pipelined request may have been read just now

    def connection_lost(self, exc: Exception | None) -> None:
        self._done()
        if self.linger is not None:
            self.linger.cancel()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server stops: a lingering connection has nothing left to say."""
        if self.linger is not None:
            self.transport.close()
            return
        super().shutdown()

    def _follow(self) -> None:
        """Move the deadline along with h11's view of what the client has sent."""
        if self.phase is None:
            return
        if self.transport.get_protocol() is not self:  # upgraded to a WebSocket
            self._done()
            return
        state = self.conn.their_state
        if state in _READ_DONE:
            self._done()
        elif state is h11.SEND_BODY and self.phase == _HEAD:
            self._arm(_BODY, self.edge.body_timeout_s)

    def _reading(self, phase: str) -> None:
        peer = self.client[0] if self.client else "?"
        oldest = self.incomplete.add(self, peer)
        if oldest is not None:
            oldest.shed()
        self._arm(phase, self.edge.header_timeout_s)

    def _arm(self, phase: str, timeout_s: float) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.phase = phase
        self.deadline = self.loop.call_later(timeout_s, self.timed_out)

    def _done(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.phase = None
        self.incomplete.discard(self)

    # --- closing a request that takes too long --------------------------------------------------
    def timed_out(self) -> None:
        """The deadline of the current phase passed: 408 (if we can) and close."""
        phase = self.phase or _HEAD
        self._close(_timeout_response(phase), "http_request_timeout", phase=phase)

    def shed(self) -> None:
        """Closed to make room: the oldest incomplete request at a cap."""
        self._close(_overload_response(), "http_request_shed", phase=self.phase)

    def _close(self, response: bytes, what: str, **fields: Any) -> None:
        cycle = self.cycle if self.phase == _BODY else None  # the request being read, if any
        self._done()
        if self.transport.is_closing() or self.linger is not None:
            return
        if cycle is None or not cycle.response_started:
            self.transport.write(response)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the route reads "client gone"; its reply goes nowhere
            cycle.message_event.set()
        self._linger()
        _THROTTLE.log(
            log,
            what,
            client=bounded(self.client[0] if self.client else None, 64),
            path=bounded(cycle.scope["path"], 100) if cycle is not None else None,
            incomplete=len(self.incomplete),
            **fields,
        )

    def _linger(self) -> None:
        """Half-close after the answer, drop what still arrives, close after ``LINGER_S`` (or
        when the client closes its side, whichever is first)."""
        if not self.transport.can_write_eof():  # TLS: no half-close
            self.transport.close()
            return
        self.transport.write_eof()
        self.linger = self.loop.call_later(LINGER_S, self.transport.close)
