"""A socket streaming caller audio at 20x real time beside a normal call: its audio beyond real
time is dropped and counted, the sustained flood closes it (1008), the normal call is unharmed."""

from __future__ import annotations

import asyncio
import base64
import json

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voicebridge.server.run import running_service

from .conftest import (
    LATENCY_SLACK_S,
    echo_spec,
    real_time_call,
    reply_latency,
    settings,
    start_message,
)

FRAME = json.dumps(
    {
        "event": "media",
        "media": {"track": "inbound", "payload": base64.b64encode(bytes(320)).decode()},
    }
)


async def flood(url: str) -> tuple[int | None, str, int]:
    """Send 20 ms frames at about 20x real time until the service closes the socket."""
    sent = 0
    async with connect(url, compression=None) as ws:
        await ws.send(start_message("flooder"))
        try:
            while sent < 20_000:
                for _ in range(20):  # 400 ms of audio every 20 ms
                    await ws.send(FRAME)
                    sent += 1
                await asyncio.sleep(0.02)
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason or "", sent


async def test_a_media_flood_is_dropped_then_closed_beside_a_normal_call() -> None:
    async with running_service(settings(), echo_spec()) as service:
        alone = reply_latency(await real_time_call(service.ws_url))
        record, (code, reason, sent) = await asyncio.gather(
            real_time_call(service.ws_url), flood(service.ws_url)
        )
        metrics = service.app.state.metrics
        dropped = metrics.value("voicebridge_dropped_frames_total", {"reason": "flood"})
    beside = reply_latency(record)
    assert code == 1008 and reason.startswith("media_flood:")
    # Default fair share: 2 s of burst, then 5 s of dropped audio close it: about 350 frames.
    assert dropped is not None and 250 <= dropped <= 260
    assert sent < 2_000  # closed within about a second of real time, not left to run
    assert beside <= alone + LATENCY_SLACK_S, (alone, beside)
