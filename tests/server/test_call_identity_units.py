"""The pieces behind "who may be which call", without sockets: nonce memory, the token store's
take-over and per-call answers, the leg registry."""

from __future__ import annotations

import asyncio
from typing import Any

from voicebridge.server.call_legs import Admission, CallLegs, Leg
from voicebridge.server.nonces import NonceMemory
from voicebridge.server.stream_token import Claim, MemoryTokenStore

from .conftest import WallClock


async def test_a_nonce_is_good_once_within_its_window() -> None:
    clock = WallClock(0.0)
    nonces = NonceMemory(10.0, time_fn=clock)
    assert await nonces.first_use("n1") and await nonces.first_use("n2")
    assert not await nonces.first_use("n1")
    clock.now = 10.5  # past the window: forgotten
    assert await nonces.first_use("n1") and len(nonces) == 1
    assert nonces.replays == 1


async def test_nonce_memory_is_bounded() -> None:
    nonces = NonceMemory(3600.0, time_fn=WallClock(0.0), max_remembered=3)
    for n in range(10):
        assert await nonces.first_use(str(n))
    assert len(nonces) == 3


def test_a_live_token_is_taken_over_only_as_a_counted_connection() -> None:
    clock = WallClock(0.0)
    store = MemoryTokenStore(max_connections=2, time_fn=clock)
    assert store.claim("j", "call", 60.0) is Claim.OK
    assert store.claim("j", "call", 60.0) is Claim.IN_USE
    assert store.call_active("call") and not store.call_active("other")
    assert store.take_over("j") is Claim.OK
    assert store.take_over("j") is Claim.REUSED  # the first connection and one more
    store.finish("j")
    assert not store.call_active("call")
    assert store.take_over("j") is Claim.CALL_ENDED


class _Session:
    def __init__(self) -> None:
        self.ended = asyncio.Event()


def leg(call_id: str, jti: str | None) -> Leg:
    session: Any = _Session()
    return Leg(call_id, session, jti)


def test_one_live_leg_per_call_and_takeover_only_with_proof() -> None:
    clock = WallClock(0.0)
    legs = CallLegs(2.0, time_fn=clock)
    first = leg("call", "j1")
    assert legs.admit(first) == (Admission.NEW, None)
    clock.now = 1.0
    assert legs.admit(leg("call", "j1"))[0] is Admission.REFUSED  # not quiet yet
    clock.now = 2.5
    assert legs.admit(leg("call", "j2"))[0] is Admission.REFUSED  # another token
    assert legs.admit(leg("call", None))[0] is Admission.REFUSED  # no token at all
    retry = leg("call", "j1")
    assert legs.admit(retry) == (Admission.TAKE_OVER, first)
    assert legs.live("call") is retry and legs.refused == 3
    retry.session.ended.set()
    assert legs.live("call") is None
    assert legs.admit(leg("call", None))[0] is Admission.NEW
