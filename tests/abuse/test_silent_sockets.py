"""More silent sockets than ``max_calls`` beside a normal call: the call gets in and replies
as fast as alone; the silent sockets are closed at the start deadline."""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voicebridge.server.run import running_service

from .conftest import LATENCY_SLACK_S, echo_spec, real_time_call, reply_latency, settings


async def test_silent_sockets_beyond_max_calls_do_not_lock_out_a_normal_call() -> None:
    limits = {"max_calls": 4, "start_timeout_s": 3.0}
    async with running_service(settings(limits=limits), echo_spec()) as service:
        alone = reply_latency(await real_time_call(service.ws_url))
        silent = [await connect(service.ws_url) for _ in range(12)]  # 3x max_calls, never start
        assert len(service.app.state.pending) == 12 and len(service.app.state.calls) == 0
        beside = reply_latency(await real_time_call(service.ws_url))
        closes = []
        for ws in silent:  # each is closed at its deadline with a clear reason
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed:
                closes.append((ws.close_code, ws.close_reason))
        metrics = service.app.state.metrics
        timeouts = metrics.value("voicebridge_streams_refused_total", {"reason": "start_timeout"})
    assert closes == [(1008, "no start within 3 s")] * 12
    assert timeouts == 12
    assert beside <= alone + LATENCY_SLACK_S, (alone, beside)
