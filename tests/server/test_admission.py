"""Admission: a socket is no call until its ``start``; pending sockets have a deadline and caps."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from voicebridge.server.admission import AdmissionLimits, PendingStreams
from voicebridge.server.run import running_service

from .conftest import echo_spec, settings, until
from .test_limits import closed, start


async def test_silent_sockets_do_not_count_as_calls() -> None:
    """More silent sockets than max_calls: a real call still gets in."""
    async with running_service(settings(limits={"max_calls": 2}), echo_spec()) as service:
        state = service.app.state
        silent = [await connect(service.ws_url) for _ in range(5)]
        await until(lambda: len(state.pending) == 5)
        assert len(state.calls) == 0
        async with connect(service.ws_url) as real:
            await real.send(start("real"))
            await until(lambda: len(state.calls) == 1)
            assert len(state.pending) == 5  # the real call left the pending count
        for ws in silent:
            await ws.close()
        await until(lambda: len(state.pending) == 0)


async def test_a_socket_without_start_is_closed_at_the_deadline() -> None:
    limits = {"start_timeout_s": 0.2}
    async with running_service(settings(limits=limits), echo_spec()) as service:
        async with connect(service.ws_url) as ws:
            code, reason = await closed(ws)
        metrics = service.app.state.metrics
        refused = metrics.value("voicebridge_streams_refused_total", {"reason": "start_timeout"})
        assert len(service.app.state.pending) == 0
    assert (code, reason) == (1008, "no start within 0.2 s")
    assert refused == 1


async def test_events_before_start_do_not_extend_the_deadline() -> None:
    limits = {"start_timeout_s": 0.3}
    service = running_service(settings(limits=limits), echo_spec())
    async with service as svc, connect(svc.ws_url) as ws:
        await ws.send('{"event": "dtmf", "dtmf": {"digit": "1"}}')
        code, reason = await closed(ws)
    assert (code, reason) == (1008, "no start within 0.3 s")


async def test_a_call_that_started_is_not_closed_by_the_start_deadline() -> None:
    limits = {"start_timeout_s": 0.2}
    async with running_service(settings(limits=limits), echo_spec()) as service:
        calls = service.app.state.calls
        async with connect(service.ws_url) as ws:
            await ws.send(start("on-time"))
            await until(lambda: len(calls) == 1)
            # A silent socket opened after it is closed at its deadline: by then the call's own
            # deadline has passed too, and the call is still live.
            async with connect(service.ws_url) as silent:
                assert await closed(silent) == (1008, "no start within 0.2 s")
            assert len(calls) == 1 and not calls.sessions()[0].ended.is_set()


async def refused_status(url: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await connect(url)
    return refused.value.response.status_code


async def test_pending_sockets_are_capped_per_peer_and_in_total() -> None:
    limits = {"max_pending_per_peer": 2, "max_pending_streams": 3}
    async with running_service(settings(limits=limits), echo_spec()) as service:
        state = service.app.state
        first: list[ClientConnection] = [await connect(service.ws_url) for _ in range(2)]
        assert await refused_status(service.ws_url) == 503  # a third from the same address
        await first[0].send(start("one"))  # started: no longer pending
        await until(lambda: len(state.calls) == 1 and len(state.pending) == 1)
        again = await connect(service.ws_url)  # room again
        assert len(state.pending) == 2
        refused = state.metrics.value(
            "voicebridge_streams_refused_total", {"reason": "pending_per_peer"}
        )
        assert refused == 1
        for ws in [*first, again]:
            await ws.close()


def test_the_total_cap_counts_every_peer() -> None:
    pending = PendingStreams(AdmissionLimits(max_pending=3, max_pending_per_peer=2))
    holds = [pending.hold("10.0.0.1"), pending.hold("10.0.0.2"), pending.hold("10.0.0.3")]
    assert pending.refusal("10.0.0.4") == "pending_total"
    holds[0].release()
    holds[0].release()  # twice is once
    assert pending.refusal("10.0.0.4") is None and len(pending) == 2
    holds[2].release()
    pending.hold("10.0.0.2")
    assert pending.refusal("10.0.0.2") == "pending_per_peer"
    assert pending.refused == {"pending_total": 1, "pending_per_peer": 1, "start_timeout": 0}


async def test_a_start_when_the_calls_filled_up_meanwhile_gets_1013() -> None:
    async with running_service(settings(limits={"max_calls": 1}), echo_spec()) as service:
        calls = service.app.state.calls
        waiting = await connect(service.ws_url)  # pending: not a call
        async with connect(service.ws_url) as first:
            await first.send(start("first"))
            await until(lambda: len(calls) == 1)
            await waiting.send(start("second"))
            code, reason = await closed(waiting)
        assert (code, reason) == (1013, "service at capacity (1 calls)")
        assert calls.total == 1
