"""Sockets before their ``start``: capped in total and per peer, and given a deadline.

A WebSocket that completes the handshake is not a call yet. Plivo sends ``start`` at once; an
idle or hostile client may never send it. So a socket is *pending* until a valid ``start``
arrives: pending sockets never count against ``max_calls`` (idle sockets cannot lock real
calls out), there are at most ``max_pending_streams`` of them (``max_pending_per_peer`` from one
address), refused at the handshake past that, and each is closed (1008) when its ``start`` has
not come within ``start_timeout_s``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

# What ``refusal`` and the deadline count (``voicebridge_streams_refused_total``).
REFUSALS = ("pending_total", "pending_per_peer", "start_timeout")


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The caps on pending sockets (``limits:`` in ``configs/service.yaml``)."""

    start_timeout_s: float = 5.0
    max_pending: int = 64
    max_pending_per_peer: int = 16


class PendingHold:
    """One pending socket's place; ``release`` it once its ``start`` is taken (or it closed)."""

    __slots__ = ("_owner", "peer", "released")

    def __init__(self, owner: PendingStreams, peer: str) -> None:
        self._owner = owner
        self.peer = peer
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._owner.leave(self.peer)


class PendingStreams:
    """Counts the sockets that have not sent ``start`` yet, in total and by peer address."""

    def __init__(self, limits: AdmissionLimits | None = None) -> None:
        self.limits = limits or AdmissionLimits()
        self.total = 0
        self._by_peer: dict[str, int] = {}  # only peers with a pending socket: bounded by total
        self.refused: Counter[str] = Counter({reason: 0 for reason in REFUSALS})

    def __len__(self) -> int:
        return self.total

    def of(self, peer: str) -> int:
        return self._by_peer.get(peer, 0)

    def refusal(self, peer: str) -> str | None:
        """Why a new socket from ``peer`` is refused now (counted); None: let it in."""
        reason = None
        if self.total >= self.limits.max_pending:
            reason = "pending_total"
        elif self.of(peer) >= self.limits.max_pending_per_peer:
            reason = "pending_per_peer"
        if reason is not None:
            self.refused[reason] += 1
        return reason

    def hold(self, peer: str) -> PendingHold:
        self.total += 1
        self._by_peer[peer] = self.of(peer) + 1
        return PendingHold(self, peer)

    def leave(self, peer: str) -> None:
        self.total -= 1
        left = self.of(peer) - 1
        if left > 0:
            self._by_peer[peer] = left
        else:
            self._by_peer.pop(peer, None)

    def timed_out(self) -> None:
        self.refused["start_timeout"] += 1


def peer_of(ws: WebSocket) -> str:
    """The peer's address as the server saw it (a proxy's, behind one), bounded for logs."""
    client = ws.client
    return client.host[:64] if client is not None and client.host else "unknown"


async def refuse_pending(ws: WebSocket, reason: str) -> None:
    """Refuse before the WebSocket opens: HTTP 503 with a one-line reason."""
    response = PlainTextResponse(
        f"too many pending streams: {reason}", status_code=503, headers={"Retry-After": "1"}
    )
    try:
        await ws.send_denial_response(response)
    except RuntimeError:  # a server without the denial-response extension
        await ws.close(1013)
