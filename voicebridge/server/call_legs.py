"""One live leg per call, decided by proof, not by arrival.

Plivo streams caller media every 20 ms, so a leg that has sent nothing for ``quiet_s`` (about
2 s) is dead even when its TCP connection has not said so yet. A second ``start`` for a call
whose leg is live is refused, and the live call is left alone, unless the newcomer carries the
call's own stream token (the one the live leg holds) and the live leg has gone quiet: then it is
Plivo's retry after a silent drop and takes over at once.

Without stream tokens nobody can prove to be the call's owner, so a live call is never taken
over; its retry waits until the old socket is noticed gone (WebSocket ping timeout).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from voicebridge.session import Session

TimeFn = Callable[[], float]
DEFAULT_QUIET_S = 2.0


@dataclass(eq=False)
class Leg:
    """One socket's claim to carry a call. ``heard`` is updated on every inbound message."""

    call_id: str
    session: Session
    jti: str | None  # the stream token's id; None with stream tokens off
    heard: float = field(default=0.0)

    @property
    def live(self) -> bool:
        return not self.session.ended.is_set()


class Admission(enum.Enum):
    NEW = "new"  # no live leg: this one carries the call
    TAKE_OVER = "take_over"  # the live leg is dead and this one proved it is the call's
    REFUSED = "refused"  # the call is live elsewhere


class CallLegs:
    """The live leg of each call in this process."""

    def __init__(self, quiet_s: float = DEFAULT_QUIET_S, *, time_fn: TimeFn = time.monotonic):
        self.quiet_s = quiet_s
        self.time_fn = time_fn
        self._legs: dict[str, Leg] = {}
        self.refused = 0
        self.taken_over = 0

    def __len__(self) -> int:
        return sum(1 for leg in self._legs.values() if leg.live)

    def live(self, call_id: str) -> Leg | None:
        leg = self._legs.get(call_id)
        return leg if leg is not None and leg.live else None

    def quiet_for(self, leg: Leg) -> float:
        return self.time_fn() - leg.heard

    def may_take_over(self, call_id: str, jti: str | None) -> bool:
        """True when ``call_id``'s live leg holds token ``jti`` and has gone quiet."""
        leg = self.live(call_id)
        return (
            leg is not None
            and jti is not None
            and leg.jti == jti
            and self.quiet_for(leg) >= self.quiet_s
        )

    def heard(self, leg: Leg) -> None:
        leg.heard = self.time_fn()

    def admit(self, leg: Leg) -> tuple[Admission, Leg | None]:
        """Register ``leg`` for its call, or say why not; with TAKE_OVER, the old leg."""
        leg.heard = self.time_fn()
        old = self.live(leg.call_id)
        if old is None:
            self._legs[leg.call_id] = leg
            return Admission.NEW, None
        if self.may_take_over(leg.call_id, leg.jti):
            self._legs[leg.call_id] = leg
            self.taken_over += 1
            return Admission.TAKE_OVER, old
        self.refused += 1
        return Admission.REFUSED, old

    def remove(self, leg: Leg) -> None:
        if self._legs.get(leg.call_id) is leg:
            del self._legs[leg.call_id]
